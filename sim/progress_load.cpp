#include "sim/progress_load.hpp"

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>

#include "sim/profile.hpp"

namespace moesys::sim {

namespace sg4 = simgrid::s4u;

namespace {
// Long enough for any wait a run can have; the load ends with its operation long before.
constexpr double kLongestWaitS = 1e6;
// At most half, as comm_sm_share: beyond it a kernel beside communication is limited by more than SMs and HBM
// bandwidth (L2, issue slots), which the two bounds do not describe.
constexpr double kMaxShare = 0.5;

double share_of_group(const core::ClusterSpec& spec, const core::Calibration& cal, bool in_node, bool off_node) {
  const core::NodeSpec& n = spec.node;
  if (n.compute_slots > 0) return 0;
  if (cal.comm_sm_share > 0) return std::min(cal.comm_sm_share, kMaxShare);
  const double sm_share = n.gpu.sms > 0 ? cal.comm_kernel_sms / n.gpu.sms : 0;
  double link_bytes_per_s = 0;
  if (in_node)
    link_bytes_per_s += n.intra_node.kind == core::IntraNodeKind::nvswitch
                            ? n.intra_node.bytes_per_s_per_gpu * cal.nvlink_efficiency
                            : n.pcie.bytes_per_s() * cal.pcie_efficiency;
  if (off_node && n.gpus > 0) link_bytes_per_s += n.nics.bytes_per_s * n.nics.count / n.gpus * cal.nic_efficiency;
  const double hbm = n.gpu.hbm_bytes_per_s * cal.hbm_efficiency;
  const double hbm_share = hbm > 0 ? cal.comm_hbm_traffic * link_bytes_per_s / hbm : 0;
  return std::min(std::max(sm_share, hbm_share), kMaxShare);
}
}  // namespace

double copy_engine_share(const core::ClusterSpec& spec, const core::Calibration& cal) {
  const core::NodeSpec& n = spec.node;
  if (n.compute_slots > 0) return 0;
  if (cal.comm_sm_share > 0) return std::min(cal.comm_sm_share, kMaxShare);
  const double hbm = n.gpu.hbm_bytes_per_s * cal.hbm_efficiency;
  const double copies = n.intra_node.bytes_per_s_per_gpu * cal.ce_nvlink_efficiency;
  return hbm > 0 ? std::min(cal.ce_hbm_traffic * copies / hbm, kMaxShare) : 0;
}

double communication_share(const core::ClusterSpec& spec, const core::Calibration& cal, const std::vector<int>& members,
                           int rank) {
  const int node = spec.node_of(rank);
  bool in_node = false, off_node = false;
  for (int m : members) {
    if (m == rank) continue;
    (spec.node_of(m) == node ? in_node : off_node) = true;
  }
  return share_of_group(spec, cal, in_node, off_node);
}

std::vector<double> communication_share_levels(const core::ClusterSpec& spec, const core::Calibration& cal) {
  std::vector<double> levels = {0};
  for (bool in_node : {false, true})
    for (bool off_node : {false, true}) levels.push_back(share_of_group(spec, cal, in_node, off_node));
  if (spec.node.intra_node.kind == core::IntraNodeKind::nvswitch) levels.push_back(copy_engine_share(spec, cal));
  std::sort(levels.begin(), levels.end());
  levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
  return levels;
}

GpuLoad::GpuLoad(sg4::Host* gpu, std::vector<double> levels)
    : gpu_(gpu), levels_(std::move(levels)), operations_(levels_.size(), 0) {}

void GpuLoad::add_communication(double share) {
  const auto it = std::find(levels_.begin(), levels_.end(), share);
  if (it == levels_.end()) throw std::logic_error("communication share " + std::to_string(share) + " is no level");
  ++operations_[static_cast<std::size_t>(it - levels_.begin())];
  reconcile();
}

void GpuLoad::remove_communication(double share) {
  const auto it = std::find(levels_.begin(), levels_.end(), share);
  --operations_[static_cast<std::size_t>(it - levels_.begin())];
  reconcile();
}

void GpuLoad::reconcile() {
  changed_ = true;
  if (reconciling_) return;  // the actor reconciling makes another pass
  reconciling_ = true;
  while (changed_) {
    changed_ = false;
    unsigned long top = 0;
    for (std::size_t i = 0; i < levels_.size(); ++i)
      if (operations_[i] > 0) top = i;
    if (top == pstate_) continue;
    pstate_ = top;
    profile::InSimgrid in;
    gpu_->set_pstate(top);
  }
  reconciling_ = false;
}

ProgressLoad::ProgressLoad(sg4::Host* slots, GpuLoad* gpu, const core::Calibration& cal, double gpu_share) {
  if (!slots && gpu && gpu_share > 0) {  // the communication kernel's SMs and memory traffic
    gpu_ = gpu;
    gpu_share_ = gpu_share;
    gpu_->add_communication(gpu_share);
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
  // Not while the actor unwinds (SimGrid ends it, or its operation failed and the run ends): a simcall from a dying
  // actor hangs SimGrid's thread contexts (the sanitizer build), and no kernel runs after it.
  if (gpu_ && std::uncaught_exceptions() == 0) gpu_->remove_communication(gpu_share_);
  profile::InSimgrid in;
  for (const sg4::ExecPtr& e : {spin_, poll_})
    if (e && !e->test()) e->cancel();
}

}  // namespace moesys::sim
