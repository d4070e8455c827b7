// NCCL's copy-engine collectives (NCCL 2.28 and later, src/ce_coll.cc): on a communicator with NCCL_CTA_POLICY_ZERO
// and buffers registered as symmetric windows, an all-gather or all-to-all inside an NVLink node runs without a
// kernel. Every GPU waits at a barrier (flags written into its peers' memory by stream memory operations), hands
// one batch of DMA copies to its copy engines (its chunk, or its row of the all-to-all, straight into each peer's
// receive buffer), and waits at a second barrier for its peers' copies to have landed.
//
// So the copies move at a copy engine's rate over NVLink (Calibration::ce_nvlink_efficiency, the rate
// nvbandwidth's *_memcpy_ce copies reach), without NCCL's protocol ramp, after one DMA setup
// (Calibration::copy_setup_s); each barrier costs a Simple step. The out-of-place copy of a GPU's own chunk runs in
// the same batch over HBM, beside the NVLink copies, and is not simulated. No SMs are held: the operation takes
// only HBM bandwidth from concurrent kernels (Calibration::ce_hbm_traffic, sim/progress_load.hpp).
#include <stdexcept>
#include <string>

#include "sim/collectives.hpp"

namespace moesys::sim {

void check_copy_engine(const core::ClusterSpec& spec, const std::vector<int>& members) {
  if (spec.node.intra_node.kind != core::IntraNodeKind::nvswitch)
    throw std::invalid_argument("algorithm 'ce' needs NVLink between the node's GPUs (copy engines over NVSwitch)");
  if (nodes_spanned(spec, members) > 1)
    throw std::invalid_argument("algorithm 'ce' serves a group inside one node (NCCL's copy-engine collectives "
                                "are intra-node), not one across " + std::to_string(nodes_spanned(spec, members)) +
                                " nodes");
}

CollectivePlan plan_copy_engine(const core::ClusterSpec& spec, const core::Calibration& cal,
                                const CollectiveCall& call) {
  check_copy_engine(spec, call.members);
  const std::size_t n = call.members.size();
  if (n <= 1) return {};
  Stage stage;
  stage.latency_steps = 2;  // the barriers before and after the copies
  stage.fixed_latency_s = cal.copy_setup_s;
  const double engine = cal.ce_nvlink_efficiency / cal.nvlink_efficiency;  // the links hold nvlink_efficiency
  auto copy = [&](std::size_t i, std::size_t j, double bytes) {
    if (i == j || bytes <= 0) return;
    Transfer t{call.members[i], call.members[j], bytes, bytes, engine};
    t.copy_engine = true;
    stage.transfers.push_back(t);
  };
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      copy(i, j, call.op == CollectiveOp::all_to_all ? call.matrix[i][j] : call.bytes / static_cast<double>(n));
  return single_stage(std::move(stage));
}

}  // namespace moesys::sim
