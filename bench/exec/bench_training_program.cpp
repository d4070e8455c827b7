// The training program of `moesys train` on the CPU runtime (one process, no mpirun): one step of a small GPT-MoE
// with the experts resident, offloaded to host memory, and offloaded to SSD files with 2D prefetch and the LFU
// cache. Counters split the step by the program's own trace spans: the expert FFN kernels, the rest of the
// compute stream, and the copy streams (expert fetches, gradients home, host optimizer, SSD traffic).
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_exec_util.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::bench_exec {
namespace {

namespace tr = policies::training;

void BM_TrainingStep(benchmark::State& state) {
  ensure_mpi();
  static const char* kOffload[] = {"none", "cpu", "nvme"};
  const nlohmann::json config = {
      {"model",
       {{"preset", "gpt-moe"}, {"experts", 4}, {"hidden", state.range(0)}, {"heads", 4}, {"layers", 2},
        {"vocab", 512}, {"seq_len", 64}, {"micro_batch", 4}, {"global_batch", 4}, {"dtype", "fp32"}}},
      {"cluster", {{"gpus", 1}, {"gpus_per_node", 1}, {"nics_per_node", 1}}},
      {"policy", {{"preset", "moesys"}, {"offload", kOffload[state.range(1)]}, {"prefetch", "2d"}}},
      {"steps", 1}};
  const tr::TrainingPlan plan = tr::make_training_plan(tr::parse_training_config(config, "bench"));
  double expert_s = 0, compute_s = 0, copy_s = 0, step_s = 0;
  for (auto _ : state) {
    std::vector<tr::RankCounters> counters(1);
    exec::cpu::CpuRuntime rt(plan.config.cluster);
    tr::training_program(plan, counters)(rt);
    for (const core::Span& s : rt.spans()) {
      if (s.kind == core::SpanKind::phase) {
        if (s.name.rfind("step", 0) == 0) step_s += s.duration_s();
        continue;
      }
      if (s.stream == std::string("compute"))
        (s.name.rfind("expert", 0) == 0 ? expert_s : compute_s) += s.duration_s();
      else if (s.kind == core::SpanKind::copy || s.name == "host optimizer")
        copy_s += s.duration_s();
    }
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["step_ms"] = step_s / n * 1e3;
  state.counters["expert_ffn_ms"] = expert_s / n * 1e3;
  state.counters["other_compute_ms"] = compute_s / n * 1e3;
  state.counters["copies_and_host_ms"] = copy_s / n * 1e3;
}
BENCHMARK(BM_TrainingStep)
    ->ArgsProduct({{128, 256}, {0, 1, 2}})
    ->ArgNames({"hidden", "offload"})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

}  // namespace
}  // namespace moesys::bench_exec
