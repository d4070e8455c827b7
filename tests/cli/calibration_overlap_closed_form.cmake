# An overlap point (tests/data/calibration-points/overlap.json: a GEMM and an all-gather on one H100 node, each alone,
# one after the other and side by side) against the closed forms of the interference model (sim/progress_load.hpp):
# sequential = GEMM + all-gather; without interference, side by side = the longer of the two; with the communication
# kernel taking a fixed share s of the GPU (the GEMM, slowed, outlasts the all-gather here), side by side = GEMM + s x
# all-gather: the GEMM loses s of its speed for as long as the all-gather runs. Each within 0.1%.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(points ${SOURCE_DIR}/tests/data/calibration-points/overlap.json)

# Model values of the four points, in nanoseconds (CMake's arithmetic is on integers).
function(model_ns prefix calibration_json)
  file(WRITE ${WORK_DIR}/calibration.json "${calibration_json}")
  execute_process(COMMAND ${MOESYS} calibration --points ${points} --calibration ${WORK_DIR}/calibration.json --json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "moesys calibration: exit ${rc}\n${err}")
  endif()
  foreach(i RANGE 3)
    string(JSON id GET "${out}" 0 points ${i} id)
    string(JSON us GET "${out}" 0 points ${i} model)
    if(NOT us MATCHES "^([0-9]+)(\\.([0-9]*))?$")
      message(FATAL_ERROR "${id}: model value \"${us}\" is not a plain decimal")
    endif()
    set(whole ${CMAKE_MATCH_1})
    string(SUBSTRING "${CMAKE_MATCH_3}000" 0 3 thousandths)
    math(EXPR ns "${whole} * 1000 + 1${thousandths} - 1000")
    set(${prefix}_${id} ${ns} PARENT_SCOPE)
  endforeach()
endfunction()

function(expect_near what got expected)
  math(EXPR tolerance "${expected} / 1000")
  math(EXPR diff "${got} - ${expected}")
  if(diff LESS -${tolerance} OR diff GREATER ${tolerance})
    message(FATAL_ERROR "${what}: ${got} ns, expected ${expected} ns (within 0.1%)")
  endif()
endfunction()

model_ns(off "{\"comm_kernel_sms\": 0, \"comm_hbm_traffic\": 0}")
math(EXPR sum "${off_gemm-alone} + ${off_allgather-alone}")
expect_near("sequential" ${off_overlap-sequential} ${sum})
set(longer ${off_gemm-alone})
if(off_allgather-alone GREATER longer)
  set(longer ${off_allgather-alone})
endif()
expect_near("side by side without interference" ${off_overlap-overlapped} ${longer})

model_ns(fixed "{\"comm_sm_share\": 0.2}")
math(EXPR gemm_at_0_8 "${fixed_gemm-alone} * 5 / 4")
if(NOT gemm_at_0_8 GREATER fixed_allgather-alone)
  message(FATAL_ERROR "the fixture's GEMM at 0.8 of its speed (${gemm_at_0_8} ns) must outlast its all-gather "
                      "(${fixed_allgather-alone} ns) for the closed form")
endif()
math(EXPR slowed "${fixed_gemm-alone} + ${fixed_allgather-alone} / 5")
expect_near("side by side, the communication kernel taking 0.2 of the GPU" ${fixed_overlap-overlapped} ${slowed})
expect_near("sequential with a fixed share" ${fixed_overlap-sequential} ${sum})
