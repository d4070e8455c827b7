// GoogleTest for the CUDA runtime, under mpirun or as one process. Without a usable GPU for every rank of a node,
// every rank exits 77 (CTest SKIP_RETURN_CODE), so the tests report "Skipped" on machines without GPUs.
#include <gtest/gtest.h>

#include <cstdio>

#include "exec/cpu/mpi_comms.hpp"
#include "exec/cuda/tests/cuda_test_util.hpp"

int main(int argc, char** argv) {
  moesys::exec::cpu::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  MPI_Comm local;
  int local_size = 1;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, mpi.rank(), MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  const int devices = moesys::exec::cuda::cuda_device_count();
  int ok = devices >= local_size ? 1 : 0, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all_ok) {
    if (mpi.rank() == 0)
      std::printf("SKIP: the CUDA tests need one GPU per rank (%d rank(s) on this node; %s)\n", local_size,
                  moesys::exec::cuda::cuda_device_summary().c_str());
    return 77;
  }
  if (mpi.rank() == 0) std::printf("%s\n", moesys::exec::cuda::cuda_device_summary().c_str());
  if (mpi.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  moesys::exec::cuda::testing::runtimes() = {};  // NCCL and MPI communicators go before MPI_Finalize
  if (failed) std::fprintf(stderr, "rank %d: tests failed\n", mpi.rank());
  return any;
}
