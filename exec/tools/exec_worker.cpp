// moesys-exec-worker: the MPI half of real runs on CPU ranks. SimGrid's library exports the MPI symbols too (SMPI),
// so a process that links both resolves MPI_Init to SimGrid's: the real run therefore lives in this separate
// program, which links MPI but not SimGrid.
//   moesys-exec-worker train CONFIG.json OUT.json            the training program (`moesys train --runtime cpu`)
//   moesys-exec-worker validate-train CONFIG.json OUT.json   the same after measuring this machine (`validate`)
//   moesys-exec-worker infer RUN.json OUT.json               the generation program (`moesys infer --runtime cpu`)
#include <cstdio>
#include <stdexcept>
#include <string>

#include "exec/cpu/mpi_comms.hpp"
#include "exec/tools/infer_worker.hpp"
#include "exec/tools/train_worker.hpp"

int main(int argc, char** argv) {
  using namespace moesys;
  exec::cpu::MpiSession mpi(&argc, &argv);
  try {
    const std::string mode = argc == 4 ? argv[1] : "";
    if (mode == "infer") return exec::tools::run_infer_worker(mpi.rank(), mpi.size(), argv[2], argv[3]);
    if (mode != "train" && mode != "validate-train")
      throw std::invalid_argument("usage: moesys-exec-worker train|validate-train|infer CONFIG.json OUT.json");
    return exec::tools::run_train_worker(mpi.rank(), mpi.size(), argv[2], argv[3], mode == "validate-train");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesys-exec-worker: rank %d: %s\n", mpi.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
