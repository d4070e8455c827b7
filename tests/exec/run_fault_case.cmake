# Runs one fault program under mpirun and checks that it fails (non-zero exit) with EXPECT in its output, within
# LIMIT_S seconds: a clear error, never a hang. Variables: MPIRUN (a ;-list), PROGRAM, MODE, EXPECT, LIMIT_S.
string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${MPIRUN} -np 4 ${PROGRAM} ${MODE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT ${LIMIT_S})
string(TIMESTAMP t1 "%s")
math(EXPR elapsed "${t1} - ${t0}")
message("${out}${err}")
if(rc STREQUAL "0")
  message(FATAL_ERROR "fault '${MODE}': expected a failure, the run succeeded")
endif()
if(rc MATCHES "timeout|Process terminated")
  message(FATAL_ERROR "fault '${MODE}': hung for more than ${LIMIT_S} s")
endif()
string(FIND "${out}${err}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "fault '${MODE}': exit ${rc} after ${elapsed} s, but the output does not say '${EXPECT}'")
endif()
message("fault '${MODE}': exit ${rc} after ${elapsed} s with '${EXPECT}'")
