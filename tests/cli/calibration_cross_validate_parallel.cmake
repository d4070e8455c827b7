# `moesys calibration --cross-validate -j 3` prints the same table, byte for byte, as `-j 1`: the folds run in
# their own processes and finish in another order, but each fold's fit is the same and the rows keep the sources'
# order. The six points of tests/data/calibration-points/self-generated.json are split over three sources, so that
# every fold fits on two of them and predicts the third.
include(${CMAKE_CURRENT_LIST_DIR}/three_source_points.cmake)
foreach(jobs 1 3)
  execute_process(COMMAND ${MOESYS} calibration --points ${WORK_DIR}/points.json --cross-validate --json -j ${jobs}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out_${jobs} ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "--cross-validate -j ${jobs}: exit ${rc}\n${err}")
  endif()
endforeach()
string(JSON folds LENGTH "${out_1}" 0 cross_validation sources)
if(NOT folds EQUAL 3)
  message(FATAL_ERROR "expected 3 folds, got ${folds}:\n${out_1}")
endif()
if(NOT out_1 STREQUAL out_3)
  message(FATAL_ERROR "-j 3 differs from -j 1:\n${out_1}\n---\n${out_3}")
endif()
message(STATUS "3 folds, the same table with -j 1 and -j 3")
