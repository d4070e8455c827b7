// moesys-cuda-worker: the training program of `moesys train --runtime cuda` on GPUs, one MPI process per GPU
// (NCCL bootstrapped through MPI), with the same output as the CPU worker:
//   moesys-cuda-worker train CONFIG.json OUT.json
#include <cstdio>
#include <string>

#include "exec/cpu/mpi_comms.hpp"
#include "exec/cuda/cuda_runtime.hpp"
#include "exec/tools/train_worker.hpp"

int main(int argc, char** argv) {
  using namespace moesys;
  exec::cpu::MpiSession mpi(&argc, &argv);
  try {
    if (argc != 4 || std::string(argv[1]) != "train")
      throw std::invalid_argument("usage: moesys-cuda-worker train CONFIG.json OUT.json");
    return exec::tools::run_train_worker(mpi.rank(), mpi.size(), argv[2], argv[3], false,
                                         [](const core::ClusterSpec& spec) -> std::unique_ptr<core::Runtime> {
                                           return std::make_unique<exec::cuda::CudaRuntime>(spec);
                                         });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesys-cuda-worker: rank %d: %s\n", mpi.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
