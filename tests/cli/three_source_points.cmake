# Included by the cross-validation tests: writes ${WORK_DIR}/points.json, the six points of
# tests/data/calibration-points/self-generated.json split over three sources, so that every fold fits on two of
# them and predicts the third.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
file(READ ${SOURCE_DIR}/tests/data/calibration-points/self-generated.json fixture)
string(JSON n LENGTH "${fixture}" points)
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  math(EXPR part "${i} % 3")
  string(JSON fixture SET "${fixture}" points ${i} source "\"https://example.org/self-generated/part-${part}\"")
endforeach()
file(WRITE ${WORK_DIR}/points.json "${fixture}")
