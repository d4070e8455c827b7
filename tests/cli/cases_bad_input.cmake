# Regression cases of the hostile-input campaign (issue 13): each failing input, now refused with exit 2, one line
# that names the file or flag, and no file left behind; or accepted by a documented rule.
set(bad @SRC@/tests/data/bad-input)

# Class 2 and 4: integer overflow in derived sizes, refused before any simulation.
moesys_cli_test(infer_context_overflow 2 "--output: expected at most 65536 tokens"
                infer --prompt 2147483647 --output 2147483647)
moesys_cli_test(infer_prompt_beyond_positions 2 "--prompt: 2147483647 tokens exceeds the model's 1024 learned positions"
                infer --prompt 2147483647 --output 4)
moesys_cli_test(train_ffn_multiplier_overflow 2 "model.ffn_multiplier: expected an integer in [1, 64], got 2147483647"
                train --model "{\"layers\": 2, \"ffn_multiplier\": 2147483647}")
moesys_cli_test(infer_task_batch_overflow 2 "tasks[0].batch: expected an integer in [1, 1073741824], got 4611686018427387904"
                infer --workload "{\"kind\": \"multitask\", \"tasks\": [{\"name\": \"a\", \"batch\": 4611686018427387904}]}")
moesys_cli_test(infer_task_batch_huge_float 2 "tasks[0].batch: expected an integer in [1, 1073741824]"
                infer --workload "{\"kind\": \"multitask\", \"tasks\": [{\"name\": \"a\", \"batch\": 1e18}]}")
moesys_cli_test(infer_batch_too_large 2 "--batch: expected at most 1048576 sequences per GPU"
                infer --batch 2000000000)

# Class 5: absurd sizes refused up front with the numbers.
moesys_cli_test(collective_infinite_size 2 "-e: expected a positive size" collective -b 1 -e inf)
moesys_cli_test(collective_size_beyond_limit 2 "-e: expected a size from 1 byte to 1P" collective -b 1 -e 1e30)
moesys_cli_test(collective_factor_too_close_to_one 2 "-f: the sweep from -b to -e by -f has 207944136974 sizes"
                collective -b 1 -e 1G -f 1.0000000001)
moesys_cli_test(train_million_experts 2 "model.experts: expected an integer in [1, 16384], got 100000"
                train --experts 100000 --gpus 8)
moesys_cli_test(train_huge_global_batch 2 "model.global_batch: expected an integer in [1, 1048576], got 128000000"
                train --model "{\"global_batch\": 128000000}")
# Found by the seed-4 campaign: 6250 micro-batches per step ran for minutes.
moesys_cli_test(train_thousands_of_micro_batches 2 "6250 micro-batches per step (12500 sequences per rank in micro-batches of 2) exceed the cap of 1024"
                train --gpus 8 --steps 1 --model "{\"layers\": 2, \"hidden\": 256, \"heads\": 4, \"vocab\": 1000, \"seq_len\": 128, \"micro_batch\": 2, \"global_batch\": 100000, \"experts\": 8}")
moesys_cli_test(train_hundreds_of_thousands_of_gpus 2 "expected at most 16384 GPUs in total, got 25000 nodes of 8 GPUs"
                train --gpus 200000)
moesys_cli_test(collective_too_many_nodes 2 "--nodes: expected at most 16384 GPUs in total, got 100000 nodes"
                collective --nodes 100000)
moesys_cli_test(collective_huge_node 2 "--gpus-per-node: expected at most 4096 GPUs per node, got 100000000"
                collective --gpus-per-node 100000000)
moesys_cli_test(cluster_file_too_many_gpus 2 "nodes: expected at most 16384 GPUs in total"
                collective --cluster ${bad}/too-many-gpus.json)
moesys_cli_test(study_grid_of_a_hundred_million_runs 2 "grid: the grid expands to 1e+08 runs; a study runs at most 10000"
                experiment ${bad}/study-huge-grid.json --no-plots --quiet --results @WORK@/results)
moesys_cli_test(inference_study_too_many_runs 2 "the study expands to 19701 runs; a study runs at most 10000"
                experiment ${bad}/inference-study-too-many-runs.json --no-plots --quiet --results @WORK@/results)

# Class 6: finite but absurd values that reached SimGrid and aborted it; zero sizes.
moesys_cli_test(calibration_subnormal_efficiency 2 "gemm_efficiency: expected an efficiency in [0.001, 1], got 5e-324"
                collective --calibration ${bad}/tiny-efficiency.json)
moesys_cli_test(cluster_pxn_not_boolean 2 "node.nics.pxn: expected true or false, got \"yes\""
                collective --cluster ${bad}/pxn-not-bool.json)
moesys_cli_test(train_pxn_not_boolean 2 "cluster.pxn: expected true or false, got 0"
                train --config ${bad}/train-pxn-not-bool.json)
moesys_cli_test(calibration_duplex_below_half 2 "pcie_duplex_efficiency: expected a duplex efficiency in [0.5, 1], got 0.3"
                collective --calibration ${bad}/low-duplex.json)
moesys_cli_test(calibration_huge_latency 2 "step_latency_s: expected a number in [0, 1.0], got 1e+308"
                collective --calibration ${bad}/huge-latency.json)
moesys_cli_test(cluster_huge_link 2 "gbytes_per_s_per_gpu: expected a number in [0.001, 10000000], got 1e+308"
                collective --cluster ${bad}/huge-link.json)
moesys_cli_test(validate_zero_vocab 2 "model.vocab: expected an integer in [1, 16777216], got 0"
                validate --ranks 1 --model "{\"vocab\": 0}")
moesys_cli_test(validate_negative_vocab 2 "model.vocab: expected an integer in [1, 16777216], got -5"
                validate --ranks 1 --model "{\"vocab\": -5}")
moesys_cli_test(validate_zero_seq 2 "model.seq_len: expected an integer in [1, 1048576], got 0"
                validate --ranks 1 --model "{\"seq_len\": 0}")
moesys_cli_test(validate_zero_layers 2 "model.layers: expected an integer in [1, 4096], got 0"
                validate --ranks 1 --model "{\"layers\": 0}")

# Class 7: output paths checked before the first simulation; study names that escape the results folder.
moesys_cli_test(train_trace_into_missing_folder 2 "--trace: no folder"
                train --experts 8 --gpus 8 --steps 1 --trace @WORK@/missing/trace.json)
moesys_cli_test(train_trace_is_a_folder 2 "is a folder; expected a file name"
                train --experts 8 --gpus 8 --steps 1 --trace @WORK@)
moesys_cli_test(infer_trace_into_missing_folder 2 "--trace: no folder" infer --trace @WORK@/missing/trace.json)
moesys_cli_test(validate_json_into_missing_folder 2 "--json: no folder" validate --json @WORK@/missing/v.json)
moesys_cli_test(experiment_results_is_a_file 2 "README.md' is not a folder"
                experiment ${bad}/study-small.json --no-plots --quiet --results @SRC@/README.md)
moesys_cli_test(study_named_dotdot 2 "name: expected a name of letters, digits"
                experiment ${bad}/study-dotdot.json --no-plots --quiet --results @WORK@/results)
moesys_cli_test(inference_study_named_dotdot 2 "name: expected a name of letters, digits"
                experiment ${bad}/inference-study-dotdot.json --no-plots --quiet --results @WORK@/results)
moesys_cli_test(study_description_not_a_string 2 "description: expected a string, got 42"
                experiment ${bad}/study-description-number.json --no-plots --quiet --results @WORK@/results)

# Class 8: JSON read by one set of rules (core/json_input.hpp), errors in our words, always one line.
moesys_cli_test(json_number_overflow 2 "number-overflow.json: a number is outside the range of a double"
                collective --calibration ${bad}/number-overflow.json)
moesys_cli_test(json_directory_as_file 2 "tests/data: is a directory; expected a JSON file"
                collective --calibration @SRC@/tests/data)
moesys_cli_test(json_duplicate_key 2 "duplicate-key.json: gemm_efficiency: duplicate key"
                collective --calibration ${bad}/duplicate-key.json)
moesys_cli_test(json_utf16 2 "utf16.json: UTF-16 or UTF-32 text; expected UTF-8"
                collective --calibration ${bad}/utf16.json)
moesys_cli_test(json_nul_byte 2 "nul-byte.json: NUL byte at line 1" collective --calibration ${bad}/nul-byte.json)
moesys_cli_test(json_invalid_utf8 2 "invalid-utf8.json: (root): invalid UTF-8 at byte"
                collective --calibration ${bad}/invalid-utf8.json)
moesys_cli_test(json_deep_nesting 2 "nesting deeper than 64 levels" collective --cluster ${bad}/deep-nesting.json)
moesys_cli_test(json_key_with_newline_one_line 2 "gemm\\x0aefficiency: unknown calibration parameter"
                collective --calibration ${bad}/newline-key.json)
moesys_cli_test(json_bom_accepted 0 "" collective --nodes 1 -e 1K --calibration ${bad}/bom.json)
moesys_cli_test(json_inline_flag_named_as_flag 2 "<flags>: --model: malformed JSON at byte 11 (line 1, column 11): unexpected end of input"
                infer --model "{\"layers\": ")
moesys_cli_test(json_flag_neither_json_nor_file 2 "--policy: expected inline JSON or the name of a JSON file, got 'foo'"
                train --policy foo)
moesys_cli_test(experiment_without_file 2 "FILE: expected exactly one study file" experiment)
moesys_cli_test(experiment_given_a_search_space 2 "this file is a search space (base, space): run it with"
                experiment @SRC@/experiments/tune-skewed-16e.json)
moesys_cli_test(experiment_zero_jobs 2 "-j: expected 1..256 simulations at once"
                experiment @SRC@/experiments/training-smoke.json -j 0 --no-plots --quiet --results @WORK@/results)

# Sharded studies (--shard I/N, --merge): bad shard specs and sets of shards that are not one study's, whole.
moesys_cli_test(experiment_shard_out_of_range 2 "--shard: expected I/N with 0 <= I < N <= 10000 (e.g. 0/4), got '2/2'"
                experiment @SRC@/experiments/training-smoke.json --shard 2/2 --quiet --results @WORK@/results)
moesys_cli_test(experiment_merge_nothing 2 "--merge: expected shard files or folders to merge" experiment --merge)
moesys_cli_test(experiment_merge_missing_shard 2 "--merge: shard 1 of 2 is missing"
                experiment --merge ${bad}/shards/shard-0-of-2.json --quiet --results @WORK@/results)
moesys_cli_test(experiment_merge_changed_study 2 "is a shard of another study, or of a changed study file"
                experiment --merge ${bad}/shards/shard-0-of-2.json ${bad}/shards/changed/shard-1-of-2.json --quiet
                --results @WORK@/results)
moesys_cli_test(experiment_merge_shard_twice 2 "shard_index: shard 0 given twice"
                experiment --merge ${bad}/shards/shard-0-of-2.json ${bad}/shards/shard-0-of-2.json --quiet
                --results @WORK@/results)
moesys_cli_test(experiment_merge_not_a_shard 2 "moesys_shard: expected a shard file written by moesys experiment --shard"
                experiment --merge ${bad}/study-small.json --quiet --results @WORK@/results)
moesys_cli_test(experiment_merge_shard_and_merge 2 "--shard: a merge runs nothing"
                experiment --merge ${bad}/shards --shard 0/2 --quiet --results @WORK@/results)
moesys_cli_test(experiment_merge_folder 0 "" experiment --merge ${bad}/shards --no-plots --quiet --results @WORK@/results)
moesys_cli_env_test(exec_timeout_zero 2 "MOESYS_EXEC_TIMEOUT_S: expected a number of seconds in (0, 86400], got '0'"
                    "MOESYS_EXEC_TIMEOUT_S=0" validate --ranks 1)
moesys_cli_env_test(exec_timeout_negative 2 "MOESYS_EXEC_TIMEOUT_S: expected a number of seconds in (0, 86400], got '-1'"
                    "MOESYS_EXEC_TIMEOUT_S=-1" validate --ranks 1)
moesys_cli_env_test(exec_timeout_not_a_number 2 "got 'abc'" "MOESYS_EXEC_TIMEOUT_S=abc" train --runtime cpu --ranks 1)

# Found by the fuzz suite: a file name longer than the file system allows is no file (not a failure); a long study
# name is refused by length (std::regex overflowed its recursion on a 100 KB name).
string(REPEAT x 5000 long_name)
moesys_cli_test(infer_model_name_too_long 2 "--model: unknown model" infer --model ${long_name})
moesys_cli_test(study_name_too_long 2 "name: expected a name of letters, digits"
                experiment ${bad}/study-long-name.json --no-plots --quiet --results @WORK@/results)
moesys_cli_test(inference_study_infeasible_names_itself 2 "infeasible: "
                train --experts 64 --gpus 64 --gpu a100-40g --preset deepspeed)
moesys_cli_test(inference_study_missing_topology 2 "study-missing-topology.json: cluster: no cluster description at"
                experiment ${bad}/study-missing-topology.json --no-plots --quiet --results @WORK@/results)

# An unknown --gpu names the five presets, from every subcommand that takes one.
moesys_cli_test(train_unknown_gpu 2 "cluster.gpu: expected one of a100-80g, a100-40g, h100, h200, h800, got \"v100\""
                train --gpu v100 --gpus 16)
moesys_cli_test(collective_unknown_gpu 2 "--gpu: expected one of a100-80g, a100-40g, h100, h200, h800, got \"v100\""
                collective --gpu v100)
moesys_cli_test(infer_unknown_gpu 2 "--gpu: expected one of a100-80g, a100-40g, h100, h200, h800, got \"v100\""
                infer --gpu v100)
moesys_cli_test(experiment_bad_calibration_file 2 "calibration-bad.json: nvlink_efficiency: expected an efficiency"
                experiment ${bad}/study-bad-calibration.json --no-plots --quiet --results @WORK@/results)
moesys_cli_test(experiment_calibration_not_a_name 2 "study-calibration-number.json: calibration: expected a file name"
                experiment ${bad}/study-calibration-number.json --no-plots --quiet --results @WORK@/results)
