#include "studies/real_inference.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>

#include "core/error.hpp"
#include "studies/worker_launch.hpp"

namespace moesys::studies {

namespace inf = policies::inference;
using nlohmann::json;

json small_cpu_inference_model(int ranks) {
  return {{"name", "small-cpu-moe"}, {"layers", 2},          {"hidden", 256}, {"heads", 4},     {"vocab", 512},
          {"seq_len", 64},           {"experts", 2 * ranks}, {"top_k", 2},    {"dtype", "fp32"}};
}

RealInferenceRun run_inference_for_real(const inf::InferenceConfig& c, const core::ClusterSpec& spec,
                                        const std::string& runtime) {
  const std::string config_path = worker_temp_path("moesys-infer-run"), out_path = worker_temp_path("moesys-infer");
  struct Cleanup {  // the worker's files go, whatever happens
    std::vector<std::string> paths;
    ~Cleanup() {
      for (const auto& p : paths) std::remove(p.c_str());
    }
  } cleanup{{config_path, out_path}};
  {
    std::ofstream out(config_path);
    const json doc = {{"run", inf::to_json(c)}, {"cluster", core::cluster_to_json(spec)}};
    if (!(out << doc.dump() << "\n")) throw core::RuntimeFailure("cannot write " + config_path);
  }
  const auto start = std::chrono::steady_clock::now();
  run_exec_worker(c.gpus, {"infer", config_path, out_path},
                  runtime == "cuda" ? "moesys-cuda-worker" : "moesys-exec-worker");
  RealInferenceRun r;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ifstream in(out_path);
  const json doc = json::parse(in);
  for (const json& d : doc.at("ranks")) {
    inf::RankRecord rec;
    rec.pass_end_s = d.at("pass_end_s").get<std::vector<double>>();
    rec.h2d_bytes = d.at("h2d_bytes").get<std::uint64_t>();
    rec.pass_h2d_bytes = d.at("pass_h2d_bytes").get<std::vector<double>>();
    rec.tokens = d.at("tokens").get<std::vector<std::vector<std::int32_t>>>();
    r.records.push_back(std::move(rec));
    r.outcome.peak_hbm_bytes.push_back(d.at("peak_bytes").at(0).get<std::uint64_t>());
    if (r.outcome.peak_hbm_by_tag.empty())
      r.outcome.peak_hbm_by_tag = d.at("peak_hbm_by_tag").get<std::map<std::string, std::uint64_t>>();
  }
  return r;
}

}  // namespace moesys::studies
