#pragma once
// The generation program on real ranks: `moesys-exec-worker infer RUN.json OUT.json` (under mpirun, one process per
// rank; moesys-cuda-worker on GPUs) prepares the inference run ({"run": <inference config>, "cluster": <cluster>}),
// runs the very program the simulator runs, and writes from rank 0 every rank's spans, memory peaks and records
// (pass times, bytes copied, the sampled tokens); studies/real_inference.cpp reads them back.
#include "exec/tools/train_worker.hpp"

namespace moesys::exec::tools {
int run_infer_worker(int rank, int size, const char* config_path, const char* out_path,
                     const RuntimeFactory& make_runtime = {});
}
