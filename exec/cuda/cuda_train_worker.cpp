// moesys-cuda-worker: the training program of `moesys train --runtime cuda` and the generation program of
// `moesys infer --runtime cuda` on GPUs, one MPI process per GPU (NCCL bootstrapped through MPI), with the same
// output as the CPU worker:
//   moesys-cuda-worker train CONFIG.json OUT.json
//   moesys-cuda-worker infer RUN.json OUT.json
#include <cstdio>
#include <string>

#include "exec/cpu/mpi_comms.hpp"
#include "exec/cuda/cuda_runtime.hpp"
#include "exec/tools/infer_worker.hpp"
#include "exec/tools/train_worker.hpp"

int main(int argc, char** argv) {
  using namespace moesys;
  exec::cpu::MpiSession mpi(&argc, &argv);
  try {
    const std::string mode = argc == 4 ? argv[1] : "";
    if (mode != "train" && mode != "infer")
      throw std::invalid_argument("usage: moesys-cuda-worker train|infer CONFIG.json OUT.json");
    const exec::tools::RuntimeFactory gpu = [](const core::ClusterSpec& spec) -> std::unique_ptr<core::Runtime> {
      return std::make_unique<exec::cuda::CudaRuntime>(spec);
    };
    if (mode == "infer") return exec::tools::run_infer_worker(mpi.rank(), mpi.size(), argv[2], argv[3], gpu);
    return exec::tools::run_train_worker(mpi.rank(), mpi.size(), argv[2], argv[3], false, gpu);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesys-cuda-worker: rank %d: %s\n", mpi.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
