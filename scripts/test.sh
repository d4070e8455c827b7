#!/usr/bin/env bash
# The test suite: install dependencies, build with warnings as errors, run every test through CTest, then
# rebuild the program with address and undefined-behaviour sanitizers and run its core, simulator and
# command-line tests and the fuzz suite's fixed seed set again (the MPI tests stay out: OpenMPI's own allocations
# drown the sanitizer's reports).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
jobs="$(nproc)"
cmake -S . -B build-ci -DMOESYS_WERROR=ON >/dev/null
cmake --build build-ci -j"$jobs"
(cd build-ci && ctest -j"$jobs" --output-on-failure)
# Warnings are enforced by the build above; GCC's flow analysis under the sanitizers reports false positives
# inside Boost headers, so this build does not turn warnings into errors.
cmake -S . -B build-asan -DMOESYS_WERROR=OFF -DMOESYS_SANITIZE=ON -DMOESYS_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs" --target moesys_core_tests moesys_sim_tests moesys
# The fuzz suite's fixed seed set runs here too, so that a sanitizer report on generated input fails CI.
(cd build-asan && ASAN_OPTIONS=detect_leaks=0 ctest -j"$jobs" -L "core|sim|cli|fuzz" --output-on-failure)
