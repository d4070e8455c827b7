# One training step of the same run on two GPU presets (FAST, SLOW: --gpu names) that differ in NVLink only: the
# compute time is the same, the all-to-all moves bytes over NVLink, and the step on SLOW takes longer because its
# exposed communication does. ARGS is the rest of the `moesys train` command line (a ;-list).
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
function(train_step gpu prefix)
  execute_process(COMMAND ${MOESYS} train ${ARGS} --gpu ${gpu} --json WORKING_DIRECTORY ${WORK_DIR}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "--gpu ${gpu}: exit code ${rc}\n${err}")
  endif()
  string(JSON step GET "${out}" step_s)
  string(JSON compute GET "${out}" breakdown_s compute)
  string(JSON comm GET "${out}" breakdown_s exposed_comm)
  string(JSON nvlink GET "${out}" network_gb_per_step intra_node)
  message(STATUS "--gpu ${gpu}: step ${step} s, compute ${compute} s, exposed communication ${comm} s, "
                 "${nvlink} GB over NVLink")
  set(${prefix}_step ${step} PARENT_SCOPE)
  set(${prefix}_compute ${compute} PARENT_SCOPE)
  set(${prefix}_comm ${comm} PARENT_SCOPE)
  set(${prefix}_nvlink ${nvlink} PARENT_SCOPE)
endfunction()
train_step(${FAST} fast)
train_step(${SLOW} slow)
if(NOT fast_nvlink GREATER 0 OR NOT slow_nvlink EQUAL fast_nvlink)
  message(FATAL_ERROR "expected the same NVLink traffic, more than none: ${fast_nvlink} and ${slow_nvlink} GB")
endif()
# The same to the microsecond (the sums of the kernel times may differ in the last bit).
string(REGEX MATCH "^[0-9]+\\.[0-9][0-9][0-9][0-9][0-9][0-9]" fast_compute_us "${fast_compute}")
string(REGEX MATCH "^[0-9]+\\.[0-9][0-9][0-9][0-9][0-9][0-9]" slow_compute_us "${slow_compute}")
if(fast_compute_us STREQUAL "" OR NOT slow_compute_us STREQUAL fast_compute_us)
  message(FATAL_ERROR "expected the same compute time on ${FAST} and ${SLOW}: ${fast_compute} and ${slow_compute} s")
endif()
if(NOT slow_comm GREATER fast_comm OR NOT slow_step GREATER fast_step)
  message(FATAL_ERROR "expected ${SLOW} slower than ${FAST}: step ${slow_step} s against ${fast_step} s, exposed "
                      "communication ${slow_comm} s against ${fast_comm} s")
endif()
