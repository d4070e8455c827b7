#!/usr/bin/env bash
# libFuzzer campaign of the JSON readers (tests/fuzz/libfuzzer/json_readers_fuzzer.cpp), built with clang's
# -fsanitize=fuzzer,address,undefined from core/ alone. Usage: scripts/fuzz-json.sh [SECONDS] [extra libFuzzer flags]
# The corpus starts from the project's own JSON files; new interesting inputs are kept in build-fuzz/corpus and
# crashes written to build-fuzz/ (crash-*, timeout-*).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
command -v clang++ >/dev/null || { echo "fuzz-json: clang++ not found (apt-get install clang)" >&2; exit 2; }
mkdir -p build-fuzz/corpus
if [ ! -x build-fuzz/json_readers_fuzzer ] || [ -n "$(find core tests/fuzz/libfuzzer -newer build-fuzz/json_readers_fuzzer -name '*.[ch]pp')" ]; then
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. \
    tests/fuzz/libfuzzer/json_readers_fuzzer.cpp core/json_input.cpp core/json_reader.cpp core/cluster.cpp \
    core/calibration.cpp core/model_config.cpp core/workload.cpp core/interrupts.cpp core/output_files.cpp \
    -lpthread -o build-fuzz/json_readers_fuzzer
fi
cp -n topologies/*.json calibration/*.json experiments/*.json tests/data/clusters/*.json build-fuzz/corpus/ 2>/dev/null || true
cd build-fuzz
ASAN_OPTIONS=detect_leaks=0 ./json_readers_fuzzer -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 "$@" corpus
