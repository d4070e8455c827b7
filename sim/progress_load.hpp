#pragma once
// The cores that waiting for communication takes on a node of CPU ranks (NodeSpec::compute_slots): a member of a
// collective or message is a thread that polls MPI until the operation completes, spinning at first and then
// sleeping between polls. Either way it takes a share of a core from the node's kernels, which the ranks' kernels
// then run without. A ProgressLoad puts that work on the node's compute slots for as long as it lives (the span
// of the operation on its stream). GPUs progress communication on their own engines: no slots, no load.
#include <simgrid/s4u/Exec.hpp>
#include <simgrid/s4u/Host.hpp>

#include "core/calibration.hpp"

namespace moesys::sim {

class ProgressLoad {
 public:
  /// `slots`: the node's compute slots, or nullptr where kernels do not share cores with communication.
  ProgressLoad(simgrid::s4u::Host* slots, const core::Calibration& cal);
  /// Cancels what is still running: the poller stops when its operation completes.
  ~ProgressLoad();
  ProgressLoad(const ProgressLoad&) = delete;
  ProgressLoad& operator=(const ProgressLoad&) = delete;

 private:
  simgrid::s4u::ExecPtr spin_, poll_;
};

}  // namespace moesys::sim
