// The fitted parameter table of each GPU family: `moesys calibration --fit --family F` on
// calibration/F-measured.json, rounded to three digits. The A100 table is Calibration's defaults. A parameter that no
// point of a family moves by more than 1% keeps the A100 value (README "Calibration" lists what each family fits).
#include "core/calibration.hpp"

namespace moesys::core {

namespace {

// H100 and H800 (the same chip; H800 with less NVLink): DGX Cloud and InfiniBand nccl-tests sweeps on 1, 2 and 4
// nodes, AWS p5 (EFA) on 2 nodes, mamf-finder and DeepGEMM GEMMs, nvbandwidth, one all-to-all. The two ep_
// parameters were fitted later, on DeepEP's dispatch/combine tables, with the rest held (`--fit --free`); the copy
// parameters (pcie_, ce_) on an H800 nvbandwidth run the same way; alltoall_net_peer_latency_s and
// framework_call_latency_s on pplx-kernels' torch all-to-all on 1 to 16 nodes (a proxy posts a network peer in
// 0.6 us there; the A100 value, 2.7 us, comes from two NDv4 points of an older NCCL); the point-to-point path's ramp
// and rate (p2p_half_bandwidth_bytes, p2p_efficiency, p2p_channel_bytes_per_s) on two 2026 single-node all-to-all and
// sendrecv sweeps (NCCL 2.28 and 2.29),
// host_launch_s on the -g 8 floors of Together's sweeps, each with the rest held.
Calibration h100_table() {
  Calibration c;
  c.nvlink_efficiency = 0.797;
  c.nic_efficiency = 0.897;
  // No H100 point moves it (the p5 points on EFA are latency-bound): p5's EFA, under NCCL 2.18 and later, is taken at
  // the H100's InfiniBand rate, not p4d's first generation under NCCL 2.8.3 (the A100 table's).
  c.efa_efficiency = 0.897;
  c.pcie_efficiency = 0.865;
  c.pcie_duplex_efficiency = 0.8;
  c.ce_nvlink_efficiency = 0.873;
  c.gemm_efficiency = 0.786;
  c.gemm_fp8_efficiency = 0.718;
  c.gemm_tile_overhead_k = 233;
  c.hbm_efficiency = 0.822;
  c.kernel_launch_s = 3.2e-6;
  c.nvls_efficiency = 0.743;
  c.tree_half_bandwidth_bytes = 9.5e6;
  c.collective_latency_s = 0;
  c.step_latency_s = 3.49e-6;
  c.ll_step_latency_s = 1.1e-6;
  c.ll128_step_latency_s = 1.5e-6;
  c.net_step_latency_s = 4.08e-6;
  c.nvls_latency_s = 89.1e-6;
  c.half_bandwidth_bytes = 1.41e5;
  c.p2p_half_bandwidth_bytes = 3.64e5;
  c.p2p_efficiency = 1;
  c.p2p_channel_bytes_per_s = 20e9;
  c.nic_half_bandwidth_bytes = 8.07e4;
  c.efa_step_latency_s = 37.1e-6;
  c.ep_ll_latency_s = 15.9e-6;
  c.ep_nvlink_efficiency = 0.698;
  c.alltoall_net_peer_latency_s = 0.623e-6;
  c.framework_call_latency_s = 23.2e-6;
  c.host_launch_s = 4.53e-6;
  return c;
}

// H200: the H100's chip with more and faster HBM, on the same NVLink 4 / NVSwitch gen3 and the same NICs, so it
// starts from the H100 table: NCCL's per-step and per-call latencies and the message ramps are the interconnect's and
// NCCL's, and the H200 points cannot separate them (its small-size points are torch.distributed all-reduces, whose
// framework cost and NCCL's call cost add up). Its own points refit, with those held (`--fit --free`): the
// bandwidth efficiencies (ml-engineering's all_reduce_bench.py and nccl-tests sweeps on one node, AWS p5en (EFA) on
// 4 nodes, nvbandwidth copies, mamf-finder fp8, DeepEP's intranode kernels on p5en) and the framework's call cost.
Calibration h200_table() {
  Calibration c = h100_table();
  c.nvlink_efficiency = 0.825;
  c.efa_efficiency = 0.887;
  c.pcie_efficiency = 0.879;
  c.ce_nvlink_efficiency = 0.88;
  c.gemm_fp8_efficiency = 0.965;
  c.hbm_efficiency = 0.614;
  c.nvls_efficiency = 0.731;
  c.framework_call_latency_s = 18.1e-6;
  c.ep_nvlink_efficiency = 0.678;
  return c;
}

}  // namespace

FamilyRecipe family_recipe(const std::string& family) {
  if (family == "h200")
    return {"h100",
            {"nvlink_efficiency", "efa_efficiency", "pcie_efficiency", "ce_nvlink_efficiency", "gemm_fp8_efficiency",
             "nvls_efficiency", "framework_call_latency_s", "ep_nvlink_efficiency", "hbm_efficiency"}};
  return {};
}

Calibration prior_calibration() {
  Calibration c;
  c.nvlink_efficiency = c.pcie_efficiency = c.gemm_efficiency = c.gemm_fp8_efficiency = c.hbm_efficiency = 0.8;
  c.ep_nvlink_efficiency = c.ce_nvlink_efficiency = c.pcie_duplex_efficiency = 0.8;
  c.nic_efficiency = c.efa_efficiency = c.nvls_efficiency = 0.8;
  c.p2p_efficiency = 1;
  c.gemm_tile_overhead_k = 0;
  c.kernel_launch_s = c.copy_setup_s = 4e-6;
  c.collective_latency_s = c.framework_call_latency_s = 0;
  c.host_launch_s = 5e-6;
  c.host_p2p_op_s = 0.5e-6;
  c.step_latency_s = 3e-6;
  c.ll128_step_latency_s = 1.5e-6;
  c.ll_step_latency_s = 1e-6;
  c.net_step_latency_s = c.efa_step_latency_s = 4e-6;
  c.nvls_latency_s = 20e-6;
  c.alltoall_net_peer_latency_s = 1e-6;
  c.ep_ll_latency_s = 20e-6;
  c.half_bandwidth_bytes = c.nic_half_bandwidth_bytes = c.efa_half_bandwidth_bytes = 1e5;
  c.p2p_half_bandwidth_bytes = 1e6;  // two of NCCL's 512 KiB point-to-point chunks
  c.p2p_channel_bytes_per_s = 14e9;   // what NCCL assumes of one channel (NCCL_P2P_PER_CHANNEL_NET_BW)
  c.tree_half_bandwidth_bytes = 1e6;
  c.tree_efficiency = Calibration{}.tree_efficiency;  // not fitted (NCCL's rating of its trees)
  return c;
}

Calibration default_calibration_for(const std::string& family) {
  if (family == "h100") return h100_table();
  if (family == "h200") return h200_table();
  return default_calibration();
}

}  // namespace moesys::core
