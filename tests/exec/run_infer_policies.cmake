# `moesys infer --runtime cpu`: every inference policy runs the one generation program on real MPI ranks and must
# sample the same tokens. Runs moesys once per policy (ARGS is a ;-list common to all) and compares the tokens line.
set(policies "all-in-gpu" "moesys,--ring-slots,1" "moesys,--ring-slots,2" "deepspeed,--host-memory,pinned"
             "deepspeed,--host-memory,pageable")
set(reference "")
foreach(policy IN LISTS policies)
  string(REPLACE "," ";" policy_args "${policy}")
  execute_process(COMMAND ${MOESYS} infer --runtime cpu ${ARGS} --policy ${policy_args}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "--policy ${policy}: exit ${rc}\n${out}\n${err}")
  endif()
  string(REGEX MATCH "tokens \\(rank 0\\)[ 0-9|]+" tokens "${out}")
  if(tokens STREQUAL "")
    message(FATAL_ERROR "--policy ${policy}: no tokens line in\n${out}")
  endif()
  message(STATUS "${policy}: ${tokens}")
  if(reference STREQUAL "")
    set(reference "${tokens}")
  elseif(NOT tokens STREQUAL reference)
    message(FATAL_ERROR "--policy ${policy} sampled '${tokens}', all-in-gpu '${reference}'")
  endif()
endforeach()
