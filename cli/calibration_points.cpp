#include "cli/calibration_points.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/args.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "sim/simulation.hpp"

namespace moesys::cli {

std::vector<CalibrationPoint> load_calibration_points(const std::string& file) {
  const nlohmann::json j = core::read_json_file(file);
  if (!j.contains("points") || !j["points"].is_array()) throw core::ConfigError(file, "points", "expected an array");
  std::vector<CalibrationPoint> points;
  for (std::size_t i = 0; i < j["points"].size(); ++i) {
    const auto& p = j["points"][i];
    const std::string path = "points[" + std::to_string(i) + "]";
    try {
      CalibrationPoint c;
      c.id = p.at("id").get<std::string>();
      c.category = p.at("category").get<std::string>();
      c.metric = p.at("metric").get<std::string>();
      c.unit = p.at("unit").get<std::string>();
      c.measured = p.at("value").get<double>();
      const auto& hw = p.at("hardware");
      if (hw.contains("nodes") && hw["nodes"].is_number()) c.nodes = hw["nodes"].get<int>();
      if (hw.contains("gpus_per_node") && hw["gpus_per_node"].is_number()) c.gpus_per_node = hw["gpus_per_node"].get<int>();
      const auto& size = p.at("size");
      if (size.contains("bytes")) {
        const auto& b = size["bytes"];
        c.size_bytes = b.is_number() ? b.get<double>() : parse_size(path + ".size.bytes", b.get<std::string>());
      } else {
        const std::string mnk = size.at("MxNxK").get<std::string>();
        c.size_bytes = std::stod(mnk.substr(0, mnk.find('x')));
      }
      points.push_back(c);
    } catch (const nlohmann::json::exception& e) {
      throw core::ConfigError(file, path, std::string("malformed calibration point: ") + e.what());
    }
  }
  return points;
}

void evaluate_calibration_points(std::vector<CalibrationPoint>& points, const core::Calibration& cal) {
  core::ClusterGeneratorOptions o;
  o.nodes = 2;
  const core::ClusterSpec spec = core::generate_cluster(o);
  sim::SimOptions options;
  options.calibration = cal;
  sim::simulate(spec, spec.total_gpus(), [&](core::Runtime& rt) {
    using namespace core;
    const Group world = Group::world(rt.world_size());
    const Group node0 = Group({0, 1, 2, 3, 4, 5, 6, 7});
    Buffer none;
    for (auto& p : points) {
      const auto bytes = static_cast<std::uint64_t>(p.size_bytes);
      const bool one_node = p.nodes == 1;
      const Group& group = one_node ? node0 : world;
      const bool member = group.index_of(rt.rank()) >= 0;
      const double t0 = rt.now_s();
      if (p.category == "allreduce" && member) {
        rt.wait(rt.all_reduce(streams::kComm, group, none, bytes, Dtype::fp32));
      } else if (p.category == "alltoall" && member) {
        std::vector<std::uint64_t> per_peer(static_cast<std::size_t>(group.size()), bytes / group.size());
        rt.wait(rt.all_to_all(streams::kComm, group, none, per_peer, none, per_peer));
      } else if (p.category == "p2p_nvlink" && member) {
        // sendrecv_perf -g 8: every GPU sends to the next and receives from the previous at once.
        const int r = rt.rank();
        auto s = rt.send(streams::kComm, (r + 1) % 8, none, bytes, 0);
        auto v = rt.recv(streams::kComm2, (r + 7) % 8, none, bytes, 0);
        rt.wait(s);
        rt.wait(v);
      } else if (p.category == "pcie_h2d" && rt.rank() == 0) {
        Buffer host{1, Tier::dram, bytes, nullptr}, dev{2, Tier::hbm, bytes, nullptr};
        rt.wait(rt.copy(streams::kH2D, dev, host, bytes));
      } else if (p.category == "gemm" && rt.rank() == 0) {
        GemmOp g;
        g.m = g.n = g.k = static_cast<std::int64_t>(p.size_bytes);
        g.dtype = Dtype::bf16;
        rt.wait(rt.compute(streams::kCompute, g, "gemm"));
      }
      const double t = rt.now_s() - t0;
      if (rt.rank() == 0) {
        const int n = group.size();
        const double algbw = p.size_bytes / t / 1e9;
        if (p.category == "allreduce") p.model = algbw * 2.0 * (n - 1) / n;
        else if (p.category == "alltoall") p.model = algbw * (n - 1) / n;
        else if (p.category == "p2p_nvlink" || p.category == "pcie_h2d") p.model = algbw;
        else if (p.category == "gemm") p.model = 2.0 * p.size_bytes * p.size_bytes * p.size_bytes / t / 1e12;
      }
      rt.wait(rt.all_reduce(streams::kComm, world, none, 4, Dtype::fp32));  // barrier between points
    }
  }, options);
}

}  // namespace moesys::cli
