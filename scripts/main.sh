#!/usr/bin/env bash
# The main job: install dependencies, build, and run the default demonstration (the paper reproduction when
# the training study is present, otherwise the collective benchmark on the paper's 6 x 8 A100 cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target moesys
if [ -f experiments/paper-training.json ]; then
  build/moesys experiment experiments/paper-training.json
else
  build/moesys collective --op alltoall -b 1M -e 1G -f 4
fi
