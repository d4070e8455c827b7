#!/usr/bin/env bash
# The main job: install dependencies, build, and run the paper's training reproduction
# (experiments/paper-training.json), which writes results/paper-training/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target moesys
build/moesys experiment experiments/paper-training.json
