#pragma once
// The training program on real CPU ranks: `moesys-exec-worker train CONFIG.json OUT.json` (under mpirun, one
// process per rank) plans the training config, runs the very program the simulator runs on the CPU runtime, and
// writes from rank 0 every rank's spans, memory peaks and counters (see cli/cmd_train.cpp for the reader).
namespace moesys::exec::tools {
int run_train_worker(int rank, int size, const char* config_path, const char* out_path);
}
