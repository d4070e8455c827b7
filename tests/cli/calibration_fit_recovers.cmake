# `moesys calibration --fit` recovers the parameters that produced its points, under either loss: the points of
# tests/data/calibration-points/self-generated.json get the model's own values under TRUTH (a calibration file),
# and a fit from the A100 table (0.78, 0.89 us, 0.96: outside the bounds), with the parameters of TRUTH free, must
# land within 2% of each. Two machines (one
# node, and two nodes over NICs), so that the fit's re-simulation of only the machines a parameter moves is tested
# with a parameter that moves one machine (nic_efficiency) and parameters that move both.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(points ${SOURCE_DIR}/tests/data/calibration-points/self-generated.json)
set(truth_json "{\"nvlink_efficiency\": 0.7, \"ll_step_latency_s\": 0.7e-6, \"nic_efficiency\": 0.9}")
file(WRITE ${WORK_DIR}/truth.json "${truth_json}")

function(run_moesys out_var)
  execute_process(COMMAND ${MOESYS} ${ARGN} WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "moesys ${ARGN}: exit ${rc}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

run_moesys(generated calibration --points ${points} --calibration ${WORK_DIR}/truth.json --json)
file(READ ${points} fixture)
string(JSON n LENGTH "${fixture}" points)
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  string(JSON model GET "${generated}" 0 points ${i} model)
  string(JSON fixture SET "${fixture}" points ${i} value "${model}")
endforeach()
file(WRITE ${WORK_DIR}/points.json "${fixture}")

# LOSS (optional): the fit's --loss.
set(loss_flags "")
if(DEFINED LOSS)
  set(loss_flags --loss ${LOSS})
endif()
run_moesys(fitted calibration --points ${WORK_DIR}/points.json --fit
           --free nvlink_efficiency,ll_step_latency_s,nic_efficiency ${loss_flags} --json)
# Each parameter with the bounds 2% either side of TRUTH's value (CMake compares decimals but cannot multiply them).
foreach(check "nvlink_efficiency;0.686;0.714" "ll_step_latency_s;0.686e-6;0.714e-6" "nic_efficiency;0.882;0.918")
  list(GET check 0 parameter)
  list(GET check 1 lower)
  list(GET check 2 upper)
  string(JSON got GET "${fitted}" 0 parameters ${parameter})
  if(NOT got MATCHES "^[0-9.eE+-]+$" OR got LESS lower OR got GREATER upper)
    message(FATAL_ERROR "${parameter}: fitted ${got}, expected within [${lower}, ${upper}] (the value that produced "
                        "the points)")
  endif()
endforeach()
