# Registered before the top level calls enable_testing(), so enable it here too.
enable_testing()
# Tests of the real runtimes (label "exec"), registered from here because they need MPI: each runs under
# mpirun with 4 ranks (as root in CI: --allow-run-as-root; 2 cores: --oversubscribe).
set(MOESYS_MPIRUN ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe)
set(MOESYS_EXEC_TEST_ENV "OPENBLAS_NUM_THREADS=1;MOESYS_EXEC_TIMEOUT_S=60")
set(MOESYS_EXEC_TESTS ${PROJECT_SOURCE_DIR}/tests/exec)

add_executable(moesys_exec_tests ${MOESYS_EXEC_TESTS}/mpi_main.cpp ${MOESYS_EXEC_TESTS}/test_cpu_collectives.cpp
                                 ${MOESYS_EXEC_TESTS}/test_cpu_streams.cpp ${MOESYS_EXEC_TESTS}/test_cpu_kernels.cpp
                                 ${MOESYS_EXEC_TESTS}/test_cpu_architecture_kernels.cpp
                                 ${MOESYS_EXEC_TESTS}/test_compute_slots.cpp)
target_link_libraries(moesys_exec_tests PRIVATE moesys_exec GTest::gtest)
foreach(suite CpuCollectives CpuStreamsAcrossRanks ComputeSlotsAcrossRanks)
  add_test(NAME exec.mpi4.${suite}
           COMMAND ${MOESYS_MPIRUN} -np 4 $<TARGET_FILE:moesys_exec_tests> --gtest_filter=${suite}.*)
  set_tests_properties(exec.mpi4.${suite} PROPERTIES LABELS exec TIMEOUT 300 ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")
endforeach()
# The training program of `moesys train` on real ranks: every policy computes the same losses.
add_executable(moesys_training_program_tests ${MOESYS_EXEC_TESTS}/mpi_main.cpp
                                             ${MOESYS_EXEC_TESTS}/test_training_program.cpp
                                             ${MOESYS_EXEC_TESTS}/test_generation_program.cpp)
target_link_libraries(moesys_training_program_tests PRIVATE moesys_exec moesys_policies GTest::gtest)
add_test(NAME exec.mpi4.TrainingProgram COMMAND ${MOESYS_MPIRUN} -np 4 $<TARGET_FILE:moesys_training_program_tests>)
add_test(NAME exec.single.TrainingProgram COMMAND moesys_training_program_tests)
set_tests_properties(exec.mpi4.TrainingProgram exec.single.TrainingProgram PROPERTIES LABELS exec TIMEOUT 300
                     ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")

# Kernels against naive references, one rank without mpirun.
add_test(NAME exec.single.CpuKernels COMMAND moesys_exec_tests --gtest_filter=CpuKernels.*)
set_tests_properties(exec.single.CpuKernels PROPERTIES LABELS exec TIMEOUT 60 ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")

# One rank without mpirun: the single-process mode (an MPI singleton).
# Streams on one rank, alone in its process: the overlap test compares wall times, so no other rank may compete
# for the cores.
add_test(NAME exec.single.CpuStreams COMMAND moesys_exec_tests --gtest_filter=CpuStreams.*)
# Alone on the machine: its overlap case compares two timings of the same run (and skips without two free cores).
set_tests_properties(exec.single.CpuStreams PROPERTIES LABELS exec TIMEOUT 120 RUN_SERIAL TRUE
                     ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")

# The stream engine alone: when an operation becomes ready (where a kernel queues for a compute slot).
add_test(NAME exec.single.StreamEngine COMMAND moesys_exec_tests --gtest_filter=StreamEngine.*)
set_tests_properties(exec.single.StreamEngine PROPERTIES LABELS exec TIMEOUT 60 ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")

# The runtime conformance suite (tests/conformance) on the CPU runtime: 2 ranks, and one rank without mpirun.
set(MOESYS_CONFORMANCE_TESTS ${PROJECT_SOURCE_DIR}/tests/conformance)
add_executable(moesys_conformance_cpu ${MOESYS_CONFORMANCE_TESTS}/cpu_driver.cpp
               ${MOESYS_CONFORMANCE_TESTS}/contract_ordering.cpp ${MOESYS_CONFORMANCE_TESTS}/contract_collectives.cpp
               ${MOESYS_CONFORMANCE_TESTS}/contract_memory.cpp ${MOESYS_CONFORMANCE_TESTS}/contract_spans.cpp
               ${MOESYS_EXEC_TESTS}/mpi_main.cpp)
target_link_libraries(moesys_conformance_cpu PRIVATE moesys_exec GTest::gtest)
target_include_directories(moesys_conformance_cpu PRIVATE ${MOESYS_EXEC_TESTS})
add_test(NAME conformance.cpu.mpi2 COMMAND ${MOESYS_MPIRUN} -np 2 $<TARGET_FILE:moesys_conformance_cpu>)
add_test(NAME conformance.cpu.single COMMAND moesys_conformance_cpu)
set_tests_properties(conformance.cpu.mpi2 conformance.cpu.single PROPERTIES LABELS "conformance;exec" TIMEOUT 120
                     ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")

# Faults end with a clear error within a deadline (MOESYS_EXEC_TIMEOUT_S=5), never a hang.
add_executable(moesys_exec_fault ${MOESYS_EXEC_TESTS}/fault_main.cpp)
target_link_libraries(moesys_exec_fault PRIVATE moesys_exec)
target_include_directories(moesys_exec_fault PRIVATE ${MOESYS_EXEC_TESTS})
foreach(case "extra|did not complete within 5 s" "mismatch|members disagree on the collective"
             "dead|exited" "bad_group|names rank 5 but the run has 4 ranks"
             "stalled_probe|the machine probe's barrier did not complete within 5 s")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 mode)
  list(GET parts 1 expect)
  add_test(NAME exec.fault.${mode}
           COMMAND ${CMAKE_COMMAND} "-DMPIRUN=${MOESYS_MPIRUN}" -DPROGRAM=$<TARGET_FILE:moesys_exec_fault>
                   -DMODE=${mode} "-DEXPECT=${expect}" -DLIMIT_S=60 -P ${MOESYS_EXEC_TESTS}/run_fault_case.cmake)
  set_tests_properties(exec.fault.${mode} PROPERTIES LABELS exec TIMEOUT 90
                       ENVIRONMENT "OPENBLAS_NUM_THREADS=1;MOESYS_EXEC_TIMEOUT_S=5")
endforeach()

# `moesys train --runtime cpu`: the presets' program on 2 MPI ranks, reported like a simulation with its losses.
add_test(NAME exec.train.cpu_ranks
         COMMAND moesys train --runtime cpu --ranks 2 --preset deepspeed --steps 3
                 --model "{\"hidden\": 64, \"layers\": 2, \"vocab\": 128, \"seq_len\": 16}")
set_tests_properties(exec.train.cpu_ranks PROPERTIES LABELS exec TIMEOUT 300 ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}"
                     PASS_REGULAR_EXPRESSION "loss per step +[0-9.]+ [0-9.]+ [0-9.]+")
# Zoo models on real ranks run their architecture reduced (with the overrides on top): DeepSeek-V3's shape without
# its MTP module (MLA, sigmoid gate, shared expert, dense first layer) trains, Qwen3's (GQA with QK norms) generates.
add_test(NAME exec.train.zoo_model_reduced
         COMMAND moesys train --runtime cpu --ranks 2 --steps 3 --model "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0}")
set_tests_properties(exec.train.zoo_model_reduced PROPERTIES LABELS exec TIMEOUT 300
                     ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}" PASS_REGULAR_EXPRESSION "loss per step +[0-9.]+ [0-9.]+ [0-9.]+")
# Layouts and dispatchers that must compute the same model as a reference run (tests/exec/run_<name>.cmake, each
# comparing the losses of CPU runs step by step).
foreach(name pipeline_layouts tensor_parallel selective_recompute dispatchers expert_tensor_parallel context_parallel)
  add_test(NAME exec.train.${name}
           COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> -P ${MOESYS_EXEC_TESTS}/run_${name}.cmake)
  set_tests_properties(exec.train.${name} PROPERTIES LABELS exec TIMEOUT 300 ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")
endforeach()
add_test(NAME exec.infer.zoo_model_reduced COMMAND moesys infer --runtime cpu --ranks 2 --model qwen3-30b-a3b --output 3)
set_tests_properties(exec.infer.zoo_model_reduced PROPERTIES LABELS exec TIMEOUT 300
                     ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}" PASS_REGULAR_EXPRESSION "tokens \\(rank 0\\)")
# `moesys validate --compare`: both presets for real and predicted, per-operation detail (kernel classes of the
# measured machine, by name on both sides); the last line is the speed-up comparison.
add_test(NAME exec.validate.compare
         COMMAND moesys validate --compare deepspeed,moesys --ranks 2 --repeats 1 --steps 2 --warmup 1 --detail 3
                 --model "{\"hidden\": 64, \"layers\": 2, \"vocab\": 128, \"seq_len\": 16}")
set_tests_properties(exec.validate.compare PROPERTIES LABELS exec TIMEOUT 300 ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}"
                     PASS_REGULAR_EXPRESSION
                     "furthest off:.*stream: operation.*speed-up .*: predicted [0-9.]+, measured [0-9.]+, error [-+][0-9.]+%")
# `moesys infer --runtime cpu`: the three inference policies (ring with K = 1 and 2, ZeRO-Inference with pinned and
# pageable memory) run the one generation program on 1 and 2 MPI ranks and sample the same tokens.
foreach(ranks 1 2)
  add_test(NAME exec.infer.cpu_ranks${ranks}
           COMMAND ${CMAKE_COMMAND} -DMOESYS=$<TARGET_FILE:moesys> "-DARGS=--ranks;${ranks}"
                   -P ${MOESYS_EXEC_TESTS}/run_infer_policies.cmake)
  set_tests_properties(exec.infer.cpu_ranks${ranks} PROPERTIES LABELS exec TIMEOUT 300
                       ENVIRONMENT "${MOESYS_EXEC_TEST_ENV}")
endforeach()
