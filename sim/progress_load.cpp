#include "sim/progress_load.hpp"

#include "sim/profile.hpp"

namespace moesys::sim {

namespace sg4 = simgrid::s4u;

namespace {
// Long enough for any wait a run can have; the load ends with its operation long before.
constexpr double kLongestWaitS = 1e6;
}  // namespace

ProgressLoad::ProgressLoad(sg4::Host* slots, sg4::Host* gpu, const core::Calibration& cal) {
  if (!slots && gpu && cal.comm_sm_share > 0) {  // the communication kernel's SMs and memory traffic
    profile::InSimgrid in;
    kernel_ = sg4::this_actor::exec_init(kLongestWaitS * cal.comm_sm_share * gpu->get_speed());
    kernel_->set_host(gpu);
    kernel_->set_bound(cal.comm_sm_share * gpu->get_speed());
    kernel_->start();
  }
  if (!slots) return;
  profile::InSimgrid in;
  if (cal.progress_spin_s > 0) {  // a core's worth of polling for the first spin_s, or until the wait ends
    spin_ = sg4::this_actor::exec_init(cal.progress_spin_s * slots->get_speed());
    spin_->set_host(slots);
    spin_->start();
  }
  if (cal.progress_core_share > 0) {  // then polls between sleeps: a steady share of a core
    poll_ = sg4::this_actor::exec_init(kLongestWaitS * cal.progress_core_share * slots->get_speed());
    poll_->set_host(slots);
    poll_->set_bound(cal.progress_core_share * slots->get_speed());
    poll_->start();
  }
}

ProgressLoad::~ProgressLoad() {
  profile::InSimgrid in;
  for (const sg4::ExecPtr& e : {spin_, poll_, kernel_})
    if (e && !e->test()) e->cancel();
}

}  // namespace moesys::sim
