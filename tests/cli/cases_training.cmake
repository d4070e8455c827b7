# `moesys train` and training studies: bad input exits 2 with one line naming the problem, before any simulation.
moesys_cli_test(train_unknown_preset 2 "unknown preset 'tutel' (known: deepspeed, megatron, moesys, static-multitask"
                train --preset tutel)
moesys_cli_test(train_unknown_toggle 2 "policy.fusion: unknown policy toggle"
                train --policy "{\"fusion\": 1}")
moesys_cli_test(train_bad_toggle_value 2 "policy.all_to_all: expected one of flat, hierarchical"
                train --policy "{\"all_to_all\": \"ring\"}")
moesys_cli_test(train_experts_not_divisible 2 "12 experts cannot be divided evenly over an expert-parallel group of 8 ranks"
                train --experts 12 --gpus 8 --ep 8)
moesys_cli_test(train_batch_not_divisible 2 "global batch of 100 sequences does not divide evenly over 8 ranks"
                train --experts 8 --gpus 8 --model "{\"global_batch\": 100, \"micro_batch\": 4}")
moesys_cli_test(train_micro_batch_not_divisible 2 "12 sequences per rank (global batch 96 over 8 ranks) do not divide into micro-batches of 8"
                train --experts 8 --gpus 8 --model "{\"global_batch\": 96}")
moesys_cli_test(train_out_of_memory 2 "GiB of HBM for parameters"
                train --experts 64 --gpus 64 --gpu a100-40g --preset deepspeed)
moesys_cli_test(train_out_of_memory_names_capacity 2 ", has 40.0 GiB"
                train --experts 64 --gpus 64 --gpu a100-40g --preset deepspeed)
moesys_cli_test(train_static_placement_needs_a_rank_per_task 2 "static placement needs a rank per task: 4 tasks on 2 ranks"
                train --experts 8 --gpus 2 --preset static-multitask --workload "{\"kind\": \"multitask\", \"tasks\": [{\"name\": \"a\", \"sequences\": 8}, {\"name\": \"b\", \"sequences\": 8}, {\"name\": \"c\", \"sequences\": 8}, {\"name\": \"d\", \"sequences\": 8}]}")
moesys_cli_test(train_unknown_flag 2 "--nodes: unknown option"
                train --nodes 2)
moesys_cli_test(train_unknown_workload 2 "workload.kind: expected one of uniform, zipf, drift, multitask, trace"
                train --experts 8 --gpus 8 --workload "{\"kind\": \"poisson\"}")
moesys_cli_test(train_bad_gpus 2 "cluster.gpus: expected whole nodes"
                train --experts 4 --gpus 12)
moesys_cli_test(train_missing_config 2 "cannot open file"
                train --config @WORK@/missing.json)
moesys_cli_test(train_parallel_not_an_object 2 "--parallel: expected a JSON object"
                train --parallel "[3]")
moesys_cli_test(train_parallel_shared_table_zero2 2 "2 pipeline stages with dense zero2 and a token table on the first and the last stage"
                train --experts 8 --gpus 16 --parallel "{\"pp\": 2}" --preset deepspeed)
moesys_cli_test(train_parallel_stage_layers_negative 2 "parallel.stage_layers[1]: expected an integer in [0, 12], got -1"
                train --parallel "{\"pp\": 2, \"stage_layers\": [12, -1]}" --preset megatron)
moesys_cli_test(train_parallel_stage_layers_sum 2 "parallel.stage_layers: expected counts that sum to the model's 12 layers, got 8"
                train --experts 8 --gpus 16 --parallel "{\"pp\": 2, \"stage_layers\": [4, 4]}")
moesys_cli_test(train_parallel_recompute_module_unknown 2 "parallel.recompute_modules[0]: expected \"layernorm\", \"moe_act\", \"mlp\" or \"mla_up_proj\", got \"core_attn\""
                train --parallel "{\"recompute\": \"selective\", \"recompute_modules\": [\"core_attn\"]}")
moesys_cli_test(train_parallel_recompute_modules_without_selective 2 "parallel.recompute_modules: only with \"recompute\": \"selective\""
                train --parallel "{\"recompute\": \"full\", \"recompute_modules\": [\"mlp\"]}")
moesys_cli_test(train_parallel_context_zero 2 "parallel.cp: expected an integer in [1, 64], got 0"
                train --parallel "{\"cp\": 0}")
moesys_cli_test(train_parallel_context_not_on_cuda 2 "parallel.cp: context parallelism runs in the simulator and on CPU ranks"
                train --runtime cuda --ranks 2 --model "{\"hidden\": 64, \"layers\": 2}" --parallel "{\"cp\": 2}")
moesys_cli_test(train_parallel_context_learned_positions 2 "context-parallel size 2: a learned position table is not modelled with it"
                train --parallel "{\"cp\": 2}" --preset deepspeed)
moesys_cli_test(train_parallel_context_sequence 2 "context-parallel size 3: the sequence length 4096 does not divide into 6 zigzag blocks (two per member)"
                train --gpus 48 --gpu h100 --model "{\"preset\": \"qwen3-30b-a3b\", \"layers\": 4}" --parallel "{\"cp\": 3, \"ep\": 16}" --preset megatron)
moesys_cli_test(train_parallel_expert_tensor_needs_all_gather 2 "expert-tensor-parallel size 2: runs with the all-gather dispatcher only"
                train --parallel "{\"etp\": 2, \"ep\": 8}")
moesys_cli_test(train_parallel_expert_tensor_groups 2 "expert-tensor-parallel size 3: 64 ranks do not divide into expert groups of 8 x 3"
                train --parallel "{\"etp\": 3, \"ep\": 8}" --policy "{\"preset\": \"deepspeed\", \"dispatcher\": \"all_gather\"}")
moesys_cli_test(train_parallel_tensor_zero 2 "parallel.tp: expected an integer in [1, 64], got 0"
                train --parallel "{\"tp\": 0}")
moesys_cli_test(train_parallel_tensor_ranks 2 "tensor-parallel size 3: 64 ranks do not divide into tensor-parallel groups of 3"
                train --parallel "{\"tp\": 3}" --preset deepspeed)
moesys_cli_test(train_parallel_tensor_heads 2 "tensor-parallel size 8: the model's 4 attention heads do not divide over it"
                train --parallel "{\"tp\": 8}" --preset deepspeed --model "{\"heads\": 4}")
moesys_cli_test(train_parallel_tensor_zero3 2 "tensor-parallel size 2: dense zero3 is not modelled with it"
                train --parallel "{\"tp\": 2}")
moesys_cli_test(train_bad_dispatcher 2 "policy.dispatcher: expected one of all_to_all, all_gather, deepep, got \"deep\""
                train --policy "{\"dispatcher\": \"deep\"}")
moesys_cli_test(train_deepep_needs_counts 2 "DeepEP's dispatch is dropless and sends the routed rows only; with \"dispatcher\": \"deepep\" set \"dispatch\": \"counts\""
                train --policy "{\"preset\": \"deepspeed\", \"dispatcher\": \"deepep\"}")
moesys_cli_test(train_deepep_flat 2 "\"all_to_all\": \"hierarchical\" is another all-to-all algorithm; with \"dispatcher\": \"deepep\" set \"all_to_all\": \"flat\""
                train --policy "{\"preset\": \"moesys\", \"dispatcher\": \"deepep\", \"all_to_all\": \"hierarchical\"}")
moesys_cli_test(train_deepep_needs_rails 2 "an expert-parallel group must lie inside one node or hold whole nodes (expert-parallel size 12, 8 GPUs per node)"
                train --gpus 24 --experts 24 --ep 12 --policy "{\"preset\": \"deepspeed\", \"dispatch\": \"counts\", \"dispatcher\": \"deepep\"}")
moesys_cli_test(train_all_gather_overlap_chunks 2 "overlap_chunks 4 pipelines the all-to-all dispatcher's chunks; with \"dispatcher\": \"all_gather\" set \"overlap_chunks\": 1"
                train --policy "{\"preset\": \"deepspeed\", \"dispatcher\": \"all_gather\", \"overlap_chunks\": 4}")
moesys_cli_test(train_all_gather_hierarchical 2 "\"all_to_all\": \"hierarchical\" is an algorithm of the all-to-all dispatcher"
                train --policy "{\"preset\": \"deepspeed\", \"dispatcher\": \"all_gather\", \"all_to_all\": \"hierarchical\"}")
moesys_cli_test(train_all_gather_replicas 2 "expert replicas split an expert's rows between its copies, which needs the all-to-all dispatcher"
                train --policy "{\"preset\": \"deepspeed\", \"dispatch\": \"counts\", \"dispatcher\": \"all_gather\", \"replicas\": {\"kind\": \"eplb\", \"slots\": 1}}")
moesys_cli_test(train_all_gather_multitask 2 "the all-gather dispatcher gathers equal token shards"
                train --experts 8 --gpus 8 --policy "{\"preset\": \"deepspeed\", \"dispatcher\": \"all_gather\"}" --workload "{\"kind\": \"multitask\", \"tasks\": [{\"name\": \"a\", \"sequences\": 32}, {\"name\": \"b\", \"sequences\": 32}]}")
moesys_cli_test(train_parallel_layers_not_divisible 2 "12 layers cannot be divided evenly over 8 pipeline stages"
                train --gpus 64 --gpu h100 --model "{\"preset\": \"qwen3-30b-a3b\", \"layers\": 12}" --parallel "{\"pp\": 8, \"ep\": 8}")
moesys_cli_test(train_pipeline_interleaved 0 ""
                train --gpus 16 --gpu h100 --preset megatron --steps 1 --parallel "{\"pp\": 2, \"vpp\": 2, \"ep\": 8, \"recompute\": \"full\"}"
                      --model "{\"preset\": \"qwen3-30b-a3b\", \"layers\": 4, \"seq_len\": 1024, \"global_batch\": 32, \"micro_batch\": 1}")
moesys_cli_test(train_small_run 0 ""
                train --experts 8 --gpus 8 --steps 1)
moesys_cli_test(train_small_run_json_and_trace 0 ""
                train --experts 8 --gpus 8 --steps 1 --preset deepspeed --json --trace @WORK@/trace.json)
# Every GPU preset trains, and a step on h800 (H100 compute, 400 GB/s NVLink) is slower than on h100 (900 GB/s) when
# the all-to-all crosses NVLink, everything else equal (2 nodes of 8, 200 Gb/s NICs). Interference is off: with it,
# a communication kernel's HBM traffic follows its NVLink rate, and the compute time differs too.
moesys_cli_test(train_gpu_h200 0 "" train --gpu h200 --gpus 16 --experts 16 --steps 1)
moesys_cli_test(train_gpu_h800 0 "" train --gpu h800 --gpus 16 --experts 16 --steps 1)
add_test(NAME cli.train_h800_nvlink_slower_than_h100
         COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> -DFAST=h100 -DSLOW=h800
                 "-DARGS=--gpus;16;--experts;16;--steps;1;--calibration;${PROJECT_SOURCE_DIR}/experiments/overrides/no-interference.json"
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-work/train_h800_nvlink_slower_than_h100
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/gpu_step_compare.cmake)
set_tests_properties(cli.train_h800_nvlink_slower_than_h100 PROPERTIES LABELS cli)
moesys_cli_test(experiment_training_smoke 0 ""
                experiment @SRC@/experiments/training-smoke.json --no-plots --quiet --results @WORK@/results)
# Progress: each finished run says how many are left, about how long they take, and the best run so far.
add_test(NAME cli.experiment_progress
         COMMAND $<TARGET_FILE:moesys> experiment ${PROJECT_SOURCE_DIR}/experiments/training-smoke.json --no-plots
                 --results ${CMAKE_CURRENT_BINARY_DIR}/cli-work/experiment_progress)
set_tests_properties(cli.experiment_progress PROPERTIES LABELS cli
                     PASS_REGULAR_EXPRESSION "\\[1/2\\] [^\n]*tokens/s[^\n]*; 1 left, about [0-9]+ s; best so far [^\n]*tokens/s\\)\n\\[2/2\\] [^\n]*; best so far")
# Where the training program runs: flags are checked before anything is launched.
moesys_cli_test(train_unknown_runtime 2 "--runtime: expected sim, cpu or cuda" train --runtime tpu)
moesys_cli_test(train_ranks_without_real_runtime 2 "--ranks: applies to --runtime cpu" train --ranks 4)
moesys_cli_test(train_cpu_needs_fp32 2 "model.dtype: the real runtimes compute the MoE kernels in fp32"
                train --runtime cpu --ranks 2 --model "{\"dtype\": \"bf16\"}")
moesys_cli_test(train_cpu_infeasible_before_launch 2 "cannot be divided evenly over an expert-parallel group"
                train --runtime cpu --ranks 4 --model "{\"experts\": 6}")
moesys_cli_test(validate_compare_needs_two 2 "--compare: expected two or more presets"
                validate --compare moesys)
moesys_cli_test(validate_unknown_preset 2 "unknown preset 'tutel'" validate --preset tutel --ranks 2)
moesys_cli_test(validate_bad_repeats 2 "--repeats: expected 1..20" validate --compare deepspeed,moesys --repeats 0)
moesys_cli_test(validate_bad_detail 2 "--detail: expected 0..1000 operations" validate --detail -1)
moesys_cli_test(validate_trace_under_a_file 2 "--trace: cannot create '/dev/null/traces'"
                validate --ranks 1 --trace /dev/null/traces)
moesys_cli_test(train_routing_out_needs_real_runtime 2 "--routing-out: applies to --runtime cpu or cuda"
                train --routing-out x.json)

# Expert replicas: malformed settings, and the combinations the program does not model.
moesys_cli_test(train_replicas_not_object 2 "policy.replicas: expected an object"
                train --policy "{\"replicas\": 2}")
moesys_cli_test(train_replicas_bad_kind 2 "policy.replicas.kind: expected one of none, eplb, hot"
                train --policy "{\"replicas\": {\"kind\": \"all\"}}")
moesys_cli_test(train_replicas_bad_slots 2 "policy.replicas.slots: expected an integer in [1, 1024]"
                train --policy "{\"replicas\": {\"kind\": \"eplb\", \"slots\": 0}}")
moesys_cli_test(train_replicas_unknown_key 2 "policy.replicas.budget: unknown key (valid keys: every, kind, scope, slots)"
                train --policy "{\"replicas\": {\"budget\": 1}}")
moesys_cli_test(train_replicas_padded 2 "expert replicas split an expert's rows between its copies, which needs counted dispatch"
                train --preset deepspeed --policy "{\"replicas\": {\"kind\": \"eplb\"}}")
moesys_cli_test(train_replicas_offload 2 "expert replicas with offloaded experts are not modelled"
                train --policy "{\"offload\": \"cpu\", \"replicas\": {\"kind\": \"hot\"}}")
moesys_cli_test(train_replicas_eplb 0 "busiest rank computes"
                train --experts 16 --gpus 16 --steps 2 --policy "{\"gate\": \"dropless\", \"replicas\": {\"kind\": \"eplb\", \"slots\": 1}}"
                --model "{\"global_batch\": 128}" --workload "{\"kind\": \"zipf\", \"exponent\": 1.0}")

# moesys tune: a malformed or contradictory search space is one line and exit 2 before anything is simulated, a
# space where nothing fits the cluster the same after simulating, and nothing is written either way.
set(tune_bad @SRC@/tests/data/bad-input)
moesys_cli_test(tune_empty_space 2 "tune-empty-space.json: space: expected an object of at least one dimension"
                tune ${tune_bad}/tune-empty-space.json --quiet --results @WORK@/results)
moesys_cli_test(tune_empty_values 2 "space.policy.dense: expected a non-empty array of values to try"
                tune ${tune_bad}/tune-empty-values.json --quiet --results @WORK@/results)
moesys_cli_test(tune_repeated_value 2 "space.policy.overlap_chunks: the value 1 is listed twice"
                tune ${tune_bad}/tune-repeated-value.json --quiet --results @WORK@/results)
moesys_cli_test(tune_bad_path 2 "space.policy..overlap_chunks: expected a dotted path of config names"
                tune ${tune_bad}/tune-bad-path.json --quiet --results @WORK@/results)
moesys_cli_test(tune_wrong_kind 2 "tune-wrong-kind.json: policy.overlap_chunks: expected an integer in [1, 64], got \"four\""
                tune ${tune_bad}/tune-wrong-kind.json --quiet --results @WORK@/results)
moesys_cli_test(tune_nothing_fits 2 "infeasible: no point of the space fits the cluster (rank 0 needs"
                tune ${tune_bad}/tune-nothing-fits.json --quiet --results @WORK@/results)
moesys_cli_test(tune_bad_strategy 2 "--strategy: expected descent or grid, got \"random\""
                tune @SRC@/tests/data/tune-small.json --strategy random --quiet --results @WORK@/results)
moesys_cli_test(tune_small 0 "the best is x"
                tune @SRC@/tests/data/tune-small.json --quiet --results @WORK@/results)
# A recorded routing trace replayed on a larger run (tiled over its ranks and MoE layers), and what it refuses.
set(gpt16_trace @SRC@/experiments/traces/gpt-moe-16e-4cpu.json)
moesys_cli_test(train_trace_tiled 0 "busiest rank computes"
                train --experts 16 --gpus 16 --steps 1 --model "{\"global_batch\": 128}" --policy "{\"gate\": \"dropless\"}"
                --workload "{\"kind\": \"trace\", \"file\": \"${gpt16_trace}\", \"fit\": \"tile\", \"first_step\": 32}")
moesys_cli_test(train_trace_tiled_first_step 2 "workload.first_step: expected a step of the trace (it has 96)"
                train --experts 16 --gpus 16 --steps 1 --model "{\"global_batch\": 128}"
                --workload "{\"kind\": \"trace\", \"file\": \"${gpt16_trace}\", \"fit\": \"tile\", \"first_step\": 96}")
moesys_cli_test(train_trace_tiled_experts 2 "experts: expected 32 (the run's experts), got 16"
                train --experts 32 --gpus 16 --steps 1 --model "{\"global_batch\": 128}"
                --workload "{\"kind\": \"trace\", \"file\": \"${gpt16_trace}\", \"fit\": \"tile\"}")
moesys_cli_test(train_trace_exact_shape 2 "ranks: expected 16 (the run's ranks), got 4"
                train --experts 16 --gpus 16 --steps 1 --model "{\"global_batch\": 128}"
                --workload "{\"kind\": \"trace\", \"file\": \"${gpt16_trace}\"}")
moesys_cli_test(train_replicas_scope_hot 2 "policy.replicas.scope: applies to kind \"eplb\""
                train --policy "{\"dispatch\": \"counts\", \"replicas\": {\"kind\": \"hot\", \"scope\": \"node\"}}")
# moesys tune --shard and --merge: only a grid shards, a merge runs nothing, and shards of a changed search do not mix.
moesys_cli_test(tune_descent_shard 2 "--shard: applies to --strategy grid"
                tune @SRC@/tests/data/tune-small.json --shard 0/2 --quiet --results @WORK@/results)
moesys_cli_test(tune_merge_and_strategy 2 "--strategy: a merge runs the strategy its shards ran"
                tune --merge @WORK@/results --strategy grid --quiet --results @WORK@/results)
moesys_cli_test(tune_merge_changed_search 2 "is a shard of another study, or of a changed study file"
                tune --merge @SRC@/tests/data/bad-input/tune-shards/shard-0-of-2.json
                @SRC@/tests/data/bad-input/tune-shards/changed/shard-1-of-2.json --quiet --results @WORK@/results)
moesys_cli_test(train_replicas_node_scope_one_gpu_per_node 2 "node-scoped expert replicas need two or more GPUs"
                train --config @SRC@/tests/data/bad-input/train-replicas-node-one-gpu.json)
moesys_cli_test(train_deepep_needs_nvlink 2 "DeepEP's kernels share a node's rows over NVLink; the nodes of pcie-h100"
                train --config @SRC@/tests/data/bad-input/train-deepep-pcie-only.json)
moesys_cli_test(train_copy_engine_one_node 0 "" train --gpus 8 --experts 8 --steps 1
                --policy "{\"preset\": \"moesys\", \"all_to_all\": \"copy_engine\"}")
moesys_cli_test(train_copy_engine_needs_nvlink 2 "\"all_to_all\": \"copy_engine\" copies over NVLink; the nodes of pcie-h100"
                train --config @SRC@/tests/data/bad-input/train-copy-engine-pcie-only.json)
moesys_cli_test(train_copy_engine_inside_a_node 2 "is NCCL's intra-node all-to-all, so an expert group (16 ranks) must lie inside one node of 8 GPUs"
                train --gpus 16 --experts 16 --policy "{\"preset\": \"moesys\", \"all_to_all\": \"copy_engine\"}")
moesys_cli_test(train_copy_engine_with_deepep 2 "\"all_to_all\": \"copy_engine\" is another all-to-all algorithm"
                train --policy "{\"preset\": \"deepspeed\", \"dispatch\": \"counts\", \"dispatcher\": \"deepep\", \"all_to_all\": \"copy_engine\"}")
moesys_cli_test(train_deepep_replicas 2 "expert replicas with the DeepEP dispatcher are not modelled"
                train --policy "{\"preset\": \"deepspeed\", \"dispatch\": \"counts\", \"dispatcher\": \"deepep\", \"replicas\": {\"kind\": \"eplb\", \"slots\": 1}}")
