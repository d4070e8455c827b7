# `moesys calibration`: the shipped files load and evaluate, and every kind of malformed point is one exit-2 line.
set(points @SRC@/tests/data/calibration-points)

moesys_cli_test(calibration_every_family_loads 0 "" calibration)
# The tables each family's parameters were fitted on stay within 20%: the A100's CUDA-graph latency table (its worst
# points are all-to-all and all-reduce at 1 KiB, +16% / +17%), AWS's two p4d EFA ring sweeps (one cost per network
# crossing serves both: 8 B +11% / +17%) and the H200 family (README "Calibration"). Other tables disagree for causes
# the README lists (the -g 8 middle sizes).
moesys_cli_test(calibration_a100_within_tolerance 0 "" calibration --family a100 --source mscclpp --check --tolerance 0.2)
moesys_cli_test(calibration_a100_efa_within_tolerance 0 "" calibration --family a100 --source aws --check --tolerance 0.2)
moesys_cli_test(calibration_h200_within_tolerance 0 "" calibration --family h200 --check --tolerance 0.2)
# li-plus's sendrecv sweep of 8 A100s: 128 MiB on NCCL's 8 point-to-point channels, then the link.
moesys_cli_test(calibration_a100_sendrecv_channels 0 "" calibration --family a100 --source li-plus --check --tolerance 0.1)
moesys_cli_test(calibration_source_matches_nothing 2 "--source: no point's source contains \"nowhere\""
                calibration --family a100 --source nowhere)
moesys_cli_test(calibration_points_file 0 "" calibration --points ${points}/good.json --json)
moesys_cli_test(calibration_excluded_point_is_listed 0 "" calibration --points ${points}/excluded.json)
moesys_cli_test(calibration_check_fails_outside_tolerance 1 "calibration check failed"
                calibration --points ${points}/good.json --check --tolerance 0.0001)
moesys_cli_test(calibration_unknown_family 2 "--family: expected one of a100, h100, h200" calibration --family v100)
moesys_cli_test(calibration_point_missing_source 2 "points[1].source: point ar-test-1n8g-1m: expected the URL"
                calibration --points ${points}/missing-source.json)
moesys_cli_test(calibration_point_unknown_preset 2 "hardware.gpu_preset: point ar-test-1n8g-1m: expected one of"
                calibration --points ${points}/unknown-preset.json)
moesys_cli_test(calibration_point_unknown_category 2 "points[0].category: point ar-test-1n8g-1m: unknown category"
                calibration --points ${points}/unknown-category.json)
moesys_cli_test(calibration_point_metric_unit 2 "metric busbw is given in GB/s"
                calibration --points ${points}/metric-unit-mismatch.json)
moesys_cli_test(calibration_point_multinode_without_nic 2 "a multi-node point needs hardware.nics_per_node"
                calibration --points ${points}/multinode-without-nic.json)
moesys_cli_test(calibration_point_size_not_stated 2 "size.bytes: point ar-test-1n8g-1m: expected the message size"
                calibration --points ${points}/size-not-stated.json)
moesys_cli_test(calibration_point_duplicate_id 2 "appears twice" calibration --points ${points}/duplicate-id.json)
moesys_cli_test(calibration_points_mixed_families 2 "one file per family"
                calibration --points ${points}/mixed-families.json)
moesys_cli_test(calibration_point_bad_gemm_shape 2 "size.MxNxK: point gemm-test: expected"
                calibration --points ${points}/bad-shape.json)
moesys_cli_test(collective_nvls_needs_sharp 2 "--algo: nvls needs NVLink SHARP" collective --op allreduce --algo nvls)
moesys_cli_test(collective_nvls_on_h100 0 "" collective --gpu h100 --nodes 1 --algo nvls -b 1M -e 1M)
moesys_cli_test(collective_tree_two_nodes 0 "" collective --nodes 2 --algo tree -b 8 -e 1M -f 32)
moesys_cli_test(collective_tree_not_for_alltoall 2 "does not implement" collective --op alltoall --algo tree)
# sendrecv_perf's ring of messages (tests/sim/test_p2p_channels.cpp checks its times).
moesys_cli_test(collective_sendrecv 0 "" collective --gpu h100 --op sendrecv -b 64M -e 512M --json)
moesys_cli_test(collective_sendrecv_no_algo 2 "--algo: sendrecv takes NCCL's point-to-point path only"
                collective --op sendrecv --algo ring)
moesys_cli_test(calibration_point_nvls_on_a100 2 "software.algorithm: point ar-test-1n8g-1m: NVLS needs NVLink SHARP"
                calibration --points ${points}/nvls-on-a100.json)
moesys_cli_test(calibration_point_algorithm_for_operation 2 "software.algorithm: point ar-test-1n8g-1m: algorithm 'tree' does not implement reducescatter"
                calibration --points ${points}/tree-reduce-scatter.json)
moesys_cli_test(collective_nvls_irregular_ranks 2 "--ranks: nvlstree needs the same two or more GPUs on every node"
                collective --gpu h100 --nodes 4 --algo nvlstree --ranks 25 -b 1M -e 1M)
moesys_cli_test(calibration_ep_points 0 "ep-ll-dispatch-2n" calibration --points ${points}/ep-good.json)
moesys_cli_test(calibration_ep_point_missing_tokens 2
                "points[0].size.tokens_per_batch: point ep-normal-dispatch-2n: expected a positive integer"
                calibration --points ${points}/ep-missing-tokens.json)
moesys_cli_test(calibration_ep_point_kernels_missing 2
                "points[2].software.ep_kernels: point ep-ll-dispatch-2n: expected \"normal\" or \"low_latency\""
                calibration --points ${points}/ep-kernels-missing.json)
moesys_cli_test(calibration_ep_point_ranks_mismatch 2 "size.ep_ranks: point ep-normal-dispatch-2n: expected the point's GPUs (16), got 32"
                calibration --points ${points}/ep-ranks-mismatch.json)
moesys_cli_test(calibration_ep_point_latency_unit 2 "points[2].unit: point ep-ll-dispatch-2n: metric latency is given in us"
                calibration --points ${points}/ep-latency-unit.json)
moesys_cli_test(collective_deepep_two_nodes 0 "" collective --gpu h800 --nodes 2 --op alltoall --algo deepep -b 1M -e 64M -f 8)
moesys_cli_test(collective_deepep_ll_two_nodes 0 "" collective --gpu h800 --nodes 2 --op alltoall --algo deepep-ll -b 1M -e 1M)
moesys_cli_test(collective_deepep_not_for_allreduce 2 "does not implement" collective --op allreduce --algo deepep)
moesys_cli_test(collective_deepep_needs_nvlink 2 "--algo: deepep needs NVLink between a node's GPUs"
                collective --cluster @SRC@/tests/data/clusters/pcie-only-h100.json --op alltoall --algo deepep -b 1M -e 1M)
moesys_cli_test(calibration_fit_free_unknown 2 "--free: \"nope\" is not a fitted parameter"
                calibration --points ${points}/ep-good.json --fit --free nope)
moesys_cli_test(calibration_free_without_fit 2 "--free: only applies with --fit"
                calibration --points ${points}/ep-good.json --free ep_ll_latency_s)
moesys_cli_test(calibration_loss_without_fit 2 "--loss: only applies with --fit or --cross-validate"
                calibration --points ${points}/ep-good.json --loss abs)
moesys_cli_test(calibration_jobs_without_cross_validate 2 "-j: only applies with --cross-validate"
                calibration --points ${points}/ep-good.json -j 2)
moesys_cli_test(calibration_jobs_zero 2 "-j: expected 1..256 fits at once"
                calibration --points ${points}/ep-good.json --cross-validate -j 0)
moesys_cli_test(calibration_loss_unknown 2 "--loss: expected squared or abs, got \"l2\""
                calibration --points ${points}/ep-good.json --fit --loss l2)
# The benchmark harness: nccl-tests' loop of launches runs at max(GPU time, host launch x GPUs per thread), a CUDA
# graph at the GPU time. Closed form: 8 GPUs from one thread at 10 us each is 80 us per call.
moesys_cli_test(calibration_launch_loop_floor 0 "" calibration --points ${points}/launch-loop-floor.json
                --calibration ${points}/launch-10us.json --check --tolerance 0.0001)
# An all-to-all posts a send and a receive to each of its 8 ranks on every GPU: (10 us + 16 x 1 us) x 8 = 208 us.
moesys_cli_test(calibration_launch_loop_floor_alltoall 0 "" calibration --points ${points}/alltoall-launch-floor.json
                --calibration ${points}/launch-10us-p2p-1us.json --check --tolerance 0.0001)
moesys_cli_test(calibration_cuda_graph_has_no_host_floor 1 "calibration check failed"
                calibration --points ${points}/cuda-graph.json --calibration ${points}/launch-10us.json --check
                --tolerance 0.0001)
moesys_cli_test(calibration_point_unknown_harness 2
                "points[0].software.harness: point ar-test-1n8g-8b: expected \"cuda_graph\" or \"torch.distributed\""
                calibration --points ${points}/unknown-harness.json)
moesys_cli_test(calibration_point_gpus_per_thread 2
                "points[0].software.gpus_per_thread: point ar-test-1n8g-8b: expected the GPUs one host thread drives, 1..8, got 16"
                calibration --points ${points}/gpus-per-thread.json)
moesys_cli_test(collective_ce_one_node 0 "" collective --gpu h100 --nodes 1 --op allgather --algo ce -b 1K -e 1G -f 32)
moesys_cli_test(collective_ce_across_nodes 2 "--algo: algorithm 'ce' serves a group inside one node"
                collective --gpu h100 --nodes 2 --op allgather --algo ce -b 1M -e 1M)
moesys_cli_test(collective_ce_not_for_allreduce 2 "--algo: algorithm 'ce' does not implement allreduce"
                collective --gpu h100 --nodes 1 --algo ce -b 1M -e 1M)
moesys_cli_test(calibration_point_ce_across_nodes 2
                "points[0].software.algorithm: point ag-test-2n8g-ce: algorithm 'ce' serves a group inside one node"
                calibration --points ${points}/ce-across-nodes.json)
moesys_cli_test(calibration_overlap_unknown_schedule 2
                "points[0].software.schedule: point overlap-test: expected \"overlapped\""
                calibration --points ${points}/overlap-unknown-schedule.json)
moesys_cli_test(calibration_overlap_unknown_collective 2
                "points[0].size.collective: point overlap-test: expected allreduce, allgather, reduce_scatter or alltoall"
                calibration --points ${points}/overlap-unknown-collective.json)
# An overlap point's model against the interference model's closed forms (tests/cli/calibration_overlap_closed_form.cmake).
add_test(NAME cli.calibration_overlap_closed_form
         COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-work/calibration_overlap_closed_form
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/calibration_overlap_closed_form.cmake)
set_tests_properties(cli.calibration_overlap_closed_form PROPERTIES LABELS cli)
# Cross-validation's folds run in parallel with the same result (tests/cli/calibration_cross_validate_parallel.cmake).
# Six fits from the prior: about a minute here, ten under the sanitizers, so its label keeps it out of that pass
# (scripts/test.sh runs the labels core, sim, cli and fuzz there; the forked runs it drives are the studies' too).
add_test(NAME cli.calibration_cross_validate_parallel_identical
         COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-work/calibration-cross-validate-parallel
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/calibration_cross_validate_parallel.cmake)
set_tests_properties(cli.calibration_cross_validate_parallel_identical PROPERTIES LABELS calibration-fit)
# A checkpoint of cross-validation's folds is reused, resumed and redone for other inputs
# (tests/cli/calibration_cross_validate_checkpoint.cmake); seven fits from the prior, so the same label as above.
add_test(NAME cli.calibration_cross_validate_checkpoint
         COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-work/calibration-cross-validate-checkpoint
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/calibration_cross_validate_checkpoint.cmake)
set_tests_properties(cli.calibration_cross_validate_checkpoint PROPERTIES LABELS calibration-fit)
set(checkpoints @SRC@/tests/data/calibration-checkpoints)
moesys_cli_test(calibration_checkpoint_not_a_checkpoint 2
                "not-a-checkpoint.json: families: expected an object of families"
                calibration --points ${points}/good.json --cross-validate --checkpoint ${checkpoints}/not-a-checkpoint.json)
moesys_cli_test(calibration_checkpoint_fold_not_errors 2
                "expected an array of |errors|"
                calibration --points ${points}/good.json --cross-validate --checkpoint ${checkpoints}/fold-not-errors.json)
moesys_cli_test(calibration_checkpoint_without_cross_validate 2 "--checkpoint: only applies with --cross-validate"
                calibration --points ${points}/good.json --checkpoint ${checkpoints}/unused.json)
moesys_cli_test(calibration_checkpoint_is_a_folder 2 "is a folder; expected a file name"
                calibration --points ${points}/good.json --cross-validate --checkpoint @SRC@/tests/data)
# The fit recovers the parameters that produced its points (tests/cli/calibration_fit_recovers.cmake).
add_test(NAME cli.calibration_fit_recovers_its_parameters
         COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-work/calibration-fit-recovers
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/calibration_fit_recovers.cmake)
set_tests_properties(cli.calibration_fit_recovers_its_parameters PROPERTIES LABELS cli)
add_test(NAME cli.calibration_fit_abs_loss_recovers_its_parameters
         COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DLOSS=abs
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-work/calibration-fit-abs-recovers
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/calibration_fit_recovers.cmake)
set_tests_properties(cli.calibration_fit_abs_loss_recovers_its_parameters PROPERTIES LABELS cli)
