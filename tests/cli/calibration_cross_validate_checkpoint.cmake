# `moesys calibration --cross-validate --checkpoint FILE` writes each fold's errors as it ends and, run again, takes
# the folds FILE holds instead of fitting them again: the table is the same, a fold removed from the file is the
# only one fitted, a file written for other points is not reused, and a fold with the wrong number of errors is an
# exit-2 line. Three sources of tests/data/calibration-points/self-generated.json, as in the parallel test.
include(${CMAKE_CURRENT_LIST_DIR}/three_source_points.cmake)
set(checkpoint ${WORK_DIR}/folds.json)

function(cross_validate out_var err_var expected_rc)
  execute_process(COMMAND ${MOESYS} calibration --points ${WORK_DIR}/points.json --cross-validate --json
                          --checkpoint ${checkpoint}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc)
    message(FATAL_ERROR "--checkpoint: exit ${rc}, expected ${expected_rc}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${err_var} "${err}" PARENT_SCOPE)
endfunction()

function(expect_fits err count)
  string(REGEX MATCHALL "done: without" fitted "${err}")
  list(LENGTH fitted fits)
  if(NOT fits EQUAL count)
    message(FATAL_ERROR "expected ${count} fold(s) fitted, got ${fits}:\n${err}")
  endif()
endfunction()

cross_validate(first err 0)
expect_fits("${err}" 3)
file(READ ${checkpoint} saved)
string(JSON folds LENGTH "${saved}" families a100 folds)
if(NOT folds EQUAL 3)
  message(FATAL_ERROR "expected 3 folds in the checkpoint, got ${folds}:\n${saved}")
endif()

cross_validate(again err 0)
expect_fits("${err}" 0)
if(NOT again STREQUAL first)
  message(FATAL_ERROR "the table from the checkpoint differs:\n${first}\n---\n${again}")
endif()

string(JSON one_removed REMOVE "${saved}" families a100 folds "https://example.org/self-generated/part-1")
file(WRITE ${checkpoint} "${one_removed}")
cross_validate(resumed err 0)
expect_fits("${err}" 1)
if(NOT resumed STREQUAL first)
  message(FATAL_ERROR "the resumed table differs:\n${first}\n---\n${resumed}")
endif()

string(JSON other SET "${saved}" families a100 fingerprint "\"0000000000000000\"")
file(WRITE ${checkpoint} "${other}")
cross_validate(redone err 0)
expect_fits("${err}" 3)
if(NOT err MATCHES "not reused")
  message(FATAL_ERROR "a checkpoint of other inputs was not reported:\n${err}")
endif()

string(JSON short SET "${saved}" families a100 folds "https://example.org/self-generated/part-2" "[0.1]")
file(WRITE ${checkpoint} "${short}")
cross_validate(ignored err 2)
if(NOT err MATCHES "folds\\[\"https://example.org/self-generated/part-2\"\\]: expected 2 errors, one per held-out point")
  message(FATAL_ERROR "a fold with the wrong number of errors gave:\n${err}")
endif()
message(STATUS "3 folds checkpointed; reused, resumed (1 fitted), redone for other inputs")
