#include "exec/tools/infer_worker.hpp"

#include <cblas.h>

#include <algorithm>
#include <thread>

#include "core/error.hpp"
#include "exec/cpu/cpu_runtime.hpp"
#include "policies/inference/program.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::exec::tools {

namespace inf = moesys::policies::inference;
using nlohmann::json;

int run_infer_worker(int rank, int size, const char* config_path, const char* out_path,
                     const RuntimeFactory& make_runtime) {
  const json doc = policies::training::read_json_file(config_path);
  if (!doc.is_object() || !doc.contains("run") || !doc.contains("cluster"))
    throw core::ConfigError(config_path, "(root)", "expected {\"run\": ..., \"cluster\": ...}");
  const inf::InferenceConfig c = inf::inference_config_from_json(doc["run"], config_path);
  const core::ClusterSpec spec = core::parse_cluster(doc["cluster"], config_path);
  if (c.gpus != size)
    throw core::ConfigError(
        config_path, "run.gpus",
        "the run has " + std::to_string(c.gpus) + " ranks but mpirun started " + std::to_string(size));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  openblas_set_num_threads(std::max(1, cores / size));  // ranks share the cores
  const inf::PreparedRun run = inf::prepare_run(c, spec, inf::json_namer(config_path, "run"));
  std::vector<inf::RankRecord> records(static_cast<std::size_t>(size));
  json mine;
  {
    std::unique_ptr<core::Runtime> rt = make_runtime ? make_runtime(spec) : std::make_unique<cpu::CpuRuntime>(spec);
    inf::generation_program(run, records)(*rt);
    rt->synchronize();
    json spans = json::array();
    for (const core::Span& s : rt->spans())
      spans.push_back({s.stream, static_cast<int>(s.kind), s.name, s.start_s, s.end_s, s.bytes, s.flop});
    json peaks = json::array();
    for (int t = 0; t < core::kTierCount; ++t) peaks.push_back(rt->memory().peak_bytes(static_cast<core::Tier>(t)));
    const inf::RankRecord& r = records[static_cast<std::size_t>(rank)];
    mine = {{"spans", spans},
            {"peak_bytes", peaks},
            {"peak_hbm_by_tag", rt->memory().peak_by_tag(core::Tier::hbm)},
            {"pass_end_s", r.pass_end_s},
            {"h2d_bytes", r.h2d_bytes},
            {"pass_h2d_bytes", r.pass_h2d_bytes},
            {"tokens", r.tokens}};
  }
  const auto all = gather_text(mine.dump(), rank, size);
  if (rank == 0) {
    json out = {{"ranks", json::array()}};
    for (const auto& text : all) out["ranks"].push_back(json::parse(text));
    write_json_file(out_path, out);
  }
  return 0;
}

}  // namespace moesys::exec::tools
