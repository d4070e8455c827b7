// Fault programs for the CPU runtime, run under mpirun by tests/exec/run_fault_case.cmake, which expects a
// non-zero exit with a clear message well before the test's timeout:
//   extra       rank 0 issues one all-reduce more than the others (ranks disagree on the number of collectives)
//   mismatch    rank 1 issues an all-to-all where the others issue an all-reduce
//   dead        rank 2 dies before a collective the others wait in
//   bad_group   a group names a rank the run does not have (a mismatched rank count)
//   stalled_probe  rank 3 stalls while the others measure the machine (validate's probe)
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "exec/cpu/machine_probe.hpp"
#include "exec_test_util.hpp"

int main(int argc, char** argv) {
  using namespace moesys;
  exec::cpu::MpiSession mpi(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    auto rt = exec::testing::make_runtime();
    const auto world = core::Group::world(rt->world_size());
    auto buf = rt->alloc(core::Tier::hbm, 4096, "t");
    const auto ar = [&] {
      rt->wait(rt->all_reduce(core::streams::kComm, world, buf, 4096, core::Dtype::fp32, core::CollectiveAlgo::automatic));
    };
    ar();  // every rank agrees on the first one
    if (mode == "extra") {
      if (rt->rank() == 0) ar();
    } else if (mode == "mismatch") {
      if (rt->rank() == 1) {
        std::vector<std::uint64_t> sizes(std::size_t(rt->world_size()), 4096 / std::uint64_t(rt->world_size()));
        auto out = rt->alloc(core::Tier::hbm, 4096, "t");
        rt->wait(rt->all_to_all(core::streams::kComm, world, buf, sizes, out, sizes, core::CollectiveAlgo::direct));
      } else {
        ar();
      }
    } else if (mode == "dead") {
      if (rt->rank() == 2) ::_exit(3);
      ar();
    } else if (mode == "bad_group") {
      core::Group g({0, 1, rt->world_size() + 1});
      rt->wait(rt->all_reduce(core::streams::kComm, g, buf, 4096, core::Dtype::fp32, core::CollectiveAlgo::automatic));
    } else if (mode == "stalled_probe") {
      if (rt->rank() == 3) ::sleep(600);
      exec::cpu::ProbeShape shape;
      shape.gemm_m = shape.gemm_n = shape.gemm_k = 64;
      shape.all_to_all_bytes = 4096;
      exec::cpu::probe_machine(shape);
    } else {
      std::fprintf(stderr, "usage: moesys_exec_fault extra|mismatch|dead|bad_group|stalled_probe\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesys: failure: %s\n", e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);  // end every rank now, rather than leave peers waiting for their own timeout
  }
  return 0;
}
