#pragma once
// Published measurements the hardware model is calibrated on (calibration/<family>-measured.json), and the
// model's prediction of each: every point is simulated on a cluster built like the machine it was measured on
// (the GPU preset, nodes, GPUs per node and NICs the point states), one simulation per distinct machine.
#include <string>
#include <vector>

#include "cli/ep_points.hpp"
#include "core/calibration.hpp"

namespace moesys::cli {

struct CalibrationPoint {
  std::string id;
  std::string category;  // allreduce, allgather, reduce_scatter, alltoall, p2p_nvlink, pcie_h2d, pcie_d2h, gemm,
                         // gemm_grouped, ep_dispatch, ep_combine, overlap (a GEMM beside or after a collective)
  std::string source;    // the table the point was read from (URL and locator), the unit of cross-validation
  std::string gpu_preset;
  int nodes = 1;
  int gpus_per_node = 8;
  int nics_per_node = 0;  // 0: one node, no NIC involved
  double nic_gbps = 0;
  bool efa = false;       // hardware.nic_transport "efa" (AWS), else InfiniBand/RoCE RDMA
  std::string algorithm;  // forced NCCL algorithm ("" = NCCL's choice)
  std::string tool;
  /// How the call was timed (software.harness): nccl-tests' loop of launches (the default), the same loop captured
  /// in a CUDA graph (-G), or a framework's collective call (torch.distributed).
  enum class Harness { launch_loop, cuda_graph, framework };
  Harness harness = Harness::launch_loop;
  int gpus_per_thread = 1;  // software.gpus_per_thread: GPUs one host thread launches on (nccl-tests -g)
  double size_bytes = 0;   // collectives and copies
  long long m = 0, n = 0, k = 0, groups = 1;  // GEMMs
  EpSetting ep;                               // ep_dispatch, ep_combine
  std::string overlap_collective;             // overlap: the collective's category (size.collective)
  bool overlapped = false;                    // overlap: software.schedule "overlapped" (else "sequential")
  std::string dtype;
  std::string metric;  // busbw, time, bandwidth, TFLOPS
  std::string unit;
  double measured = 0;
  double model = 0;
  std::string excluded;  // why the point is not simulated: the file's "excluded", or a category with no model yet
  double error() const { return (model - measured) / measured; }
  bool evaluated() const { return excluded.empty(); }
  /// Machine key: points with equal keys share a simulation.
  std::string machine() const;
};

/// Reads the points; malformed entries (missing source, unknown GPU preset, category, metric or unit, a size the
/// model cannot express) are ConfigErrors naming the point and its JSON path.
std::vector<CalibrationPoint> load_calibration_points(const std::string& file);
/// Fills `model` for every evaluated point, one forked simulation per machine (`jobs` at a time).
void evaluate_calibration_points(std::vector<CalibrationPoint>& points, const core::Calibration& cal, int jobs = 2);

}  // namespace moesys::cli
