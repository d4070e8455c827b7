// GoogleTest under mpirun: every rank runs every test (the tests are SPMD programs); rank 0 prints, and the
// process exits non-zero on every rank when a test failed on any rank.
#include <gtest/gtest.h>

#include "exec/cpu/mpi_comms.hpp"

int main(int argc, char** argv) {
  moesys::exec::cpu::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) std::fprintf(stderr, "rank %d: tests failed\n", mpi.rank());
  return any;
}
