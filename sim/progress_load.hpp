#pragma once
// The cores that waiting for communication takes on a node of CPU ranks (NodeSpec::compute_slots): a member of a
// collective or message is a thread that polls MPI until the operation completes, spinning at first and then
// sleeping between polls. Either way it takes a share of a core from the node's kernels, which the ranks' kernels
// then run without. A ProgressLoad puts that work on the node's compute slots for as long as it lives (the span
// of the operation on its stream).
//
// On a GPU, NCCL's kernels progress communication: each channel is a thread block that holds an SM, and their
// loads and stores take HBM bandwidth, so a concurrent GEMM runs on what is left. With Calibration::comm_sm_share
// > 0 (the interference toggle), a ProgressLoad holds that share of its GPU while the operation runs; 0 leaves
// the GPU's compute untouched, as the model did before.
#include <simgrid/s4u/Exec.hpp>
#include <simgrid/s4u/Host.hpp>

#include "core/calibration.hpp"

namespace moesys::sim {

class ProgressLoad {
 public:
  /// `slots`: the node's compute slots, or nullptr where kernels do not share cores with communication; `gpu`: the
  /// rank's GPU, whose compute a communication kernel shares (nullptr on CPU ranks).
  ProgressLoad(simgrid::s4u::Host* slots, simgrid::s4u::Host* gpu, const core::Calibration& cal);
  /// Cancels what is still running: the poller stops when its operation completes.
  ~ProgressLoad();
  ProgressLoad(const ProgressLoad&) = delete;
  ProgressLoad& operator=(const ProgressLoad&) = delete;

 private:
  simgrid::s4u::ExecPtr spin_, poll_, kernel_;
};

}  // namespace moesys::sim
