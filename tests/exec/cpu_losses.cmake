# Helpers of the exec scripts that compare the losses of two layouts or policies of one model on CPU ranks.

# The losses of `steps` steps of `moesys train --runtime cpu` (a list), extra arguments after `out`.
function(cpu_losses ranks steps model parallel policy out)
  execute_process(COMMAND ${MOESYS} train --runtime cpu --ranks ${ranks} --steps ${steps} ${ARGN} --model ${model}
                          --parallel ${parallel} --policy ${policy} --json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE json ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ranks} ranks ${parallel} ${policy}: exit ${rc}\n${json}\n${err}")
  endif()
  string(JSON n LENGTH "${json}" loss_per_step)
  if(NOT n EQUAL steps)
    message(FATAL_ERROR "${ranks} ranks ${parallel} ${policy}: ${n} losses in\n${json}")
  endif()
  set(values "")
  math(EXPR last "${steps} - 1")
  foreach(i RANGE ${last})
    string(JSON v GET "${json}" loss_per_step ${i})
    list(APPEND values "${v}")
  endforeach()
  set(${out} "${values}" PARENT_SCOPE)
endfunction()

# A loss in millionths, as an integer (CMake's math has no floating point).
function(millionths value out)
  if(NOT value MATCHES "^([0-9]+)\\.?([0-9]*)")
    message(FATAL_ERROR "not a loss: ${value}")
  endif()
  set(whole "${CMAKE_MATCH_1}")
  string(SUBSTRING "${CMAKE_MATCH_2}000000" 0 6 fraction)
  string(REGEX REPLACE "^0+([0-9])" "\\1" fraction "${fraction}")
  math(EXPR m "${whole} * 1000000 + ${fraction}")
  set(${out} ${m} PARENT_SCOPE)
endfunction()

# Fails unless the two loss lists agree step by step within 2e-5 (float rounding on losses of about 5, not a
# different model); `what` names the pair in the message.
function(expect_same_losses what reference other)
  list(LENGTH reference n)
  math(EXPR last "${n} - 1")
  foreach(i RANGE ${last})
    list(GET reference ${i} a)
    list(GET other ${i} b)
    millionths(${a} ma)
    millionths(${b} mb)
    math(EXPR diff "${ma} - ${mb}")
    if(diff LESS -20 OR diff GREATER 20)
      message(FATAL_ERROR "${what}: step ${i} loss ${b}, reference ${a}")
    endif()
  endforeach()
endfunction()
