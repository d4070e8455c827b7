// The exec benchmarks' main (its own executable: the simulator's library exports MPI symbols too).
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
