#include "exec/tools/train_worker.hpp"

#include <cblas.h>
#include <mpi.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.hpp"
#include "core/calibration.hpp"
#include "core/kernel_class.hpp"
#include "core/ledger_runtime.hpp"
#include "exec/cpu/cpu_runtime.hpp"
#include "exec/cpu/machine_probe.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::exec::tools {

namespace tr = moesys::policies::training;
using nlohmann::json;

namespace {
/// The shapes the machine probe measures: the expert FFN's GEMM and the dispatch all-to-all of one micro-batch.
cpu::ProbeShape probe_shape(const tr::TrainingConfig& c) {
  const core::ModelConfig& m = c.model;
  const std::int64_t tokens = m.tokens_per_micro_batch();
  cpu::ProbeShape s;
  s.gemm_m = std::max<std::int64_t>(1, tokens * m.top_k / std::max(1, m.experts / c.gpus));
  s.gemm_n = m.ffn_hidden(), s.gemm_k = m.hidden;
  s.all_to_all_bytes = static_cast<std::uint64_t>(tokens * m.top_k * m.hidden * 4);
  return s;
}

/// The program's kernels at a few sizes per class, as rank 0's program issues them (run on a ledger runtime:
/// sizes only, token counts from the routing plan). Every rank computes the same list.
std::vector<core::Kernel> kernel_samples(const tr::TrainingConfig& c) {
  const tr::TrainingPlan plan = tr::make_training_plan(c);
  std::map<std::string, std::map<double, core::Kernel>> by_size;  // class -> work -> one kernel of that size
  core::LedgerRuntime ledger(c.cluster, 0, plan.layout.ranks);
  ledger.observe_kernels([&](const core::Kernel& k, std::string_view) {
    by_size[core::kernel_class(k)].emplace(core::kernel_work(k), k);
  });
  std::vector<tr::RankCounters> counters(static_cast<std::size_t>(plan.layout.ranks));
  tr::training_program(plan, counters)(ledger);
  // Up to kPerClass sizes per class, spread evenly over the sizes the program runs (the smallest and the largest
  // always): the simulator interpolates between them (core::rate_at).
  constexpr std::size_t kPerClass = 5;
  std::vector<core::Kernel> out;
  for (auto& [name, sizes] : by_size) {
    std::vector<const core::Kernel*> all;
    for (const auto& [work, k] : sizes) all.push_back(&k);
    const std::size_t n = std::min(kPerClass, all.size());
    for (std::size_t i = 0; i < n; ++i) out.push_back(*all[n == 1 ? all.size() - 1 : i * (all.size() - 1) / (n - 1)]);
  }
  return out;
}

json rank_result(const core::Runtime& rt, const tr::RankCounters& k) {
  json spans = json::array();
  for (const core::Span& s : rt.spans())
    spans.push_back({s.stream, static_cast<int>(s.kind), s.name, s.start_s, s.end_s, s.bytes, s.flop});
  json peaks = json::array();
  for (int t = 0; t < core::kTierCount; ++t) peaks.push_back(rt.memory().peak_bytes(static_cast<core::Tier>(t)));
  return {{"spans", spans},
          {"peak_bytes", peaks},
          {"losses", k.losses},
          {"routing", k.routing},
          {"expert_rows", k.expert_rows},
          {"counters",
           {k.expert_fetches, k.wasted_fetches, k.on_demand_fetches, k.cache_hits, k.cache_misses, k.cache_evictions,
            k.ssd_read_bytes, k.ssd_write_bytes}}};
}

}  // namespace

std::vector<std::string> gather_text(const std::string& mine, int rank, int size) {
  int n = static_cast<int>(mine.size());
  std::vector<int> sizes(static_cast<std::size_t>(size)), offsets(sizes.size());
  MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string all;
  if (rank == 0) {
    for (int i = 1; i < size; ++i) offsets[static_cast<std::size_t>(i)] = offsets[static_cast<std::size_t>(i - 1)] + sizes[static_cast<std::size_t>(i - 1)];
    all.resize(static_cast<std::size_t>(offsets.back() + sizes.back()));
  }
  MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> out;
  if (rank == 0)
    for (int i = 0; i < size; ++i)
      out.push_back(all.substr(static_cast<std::size_t>(offsets[static_cast<std::size_t>(i)]),
                               static_cast<std::size_t>(sizes[static_cast<std::size_t>(i)])));
  return out;
}

void write_json_file(const std::string& path, const nlohmann::json& doc) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!(out << doc.dump() << "\n")) throw core::RuntimeFailure("cannot write " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw core::RuntimeFailure("cannot write " + path);
}

int run_train_worker(int rank, int size, const char* config_path, const char* out_path, bool probe,
                     const RuntimeFactory& make_runtime) {
  tr::TrainingConfig c = tr::parse_training_config(tr::read_json_file(config_path), config_path);
  if (c.gpus != size)
    throw core::ConfigError(config_path, "cluster.gpus",
                            "the config has " + std::to_string(c.gpus) + " ranks but mpirun started " +
                                std::to_string(size));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  openblas_set_num_threads(std::max(1, cores / size));  // ranks share the cores
  json measured_machine;
  if (probe) {
    const cpu::ProbeShape shape = probe_shape(c);
    cpu::MachineRates rates = cpu::probe_machine(shape);
    rates.kernels = cpu::probe_kernel_rates(kernel_samples(c), rates.op_overhead_s);
    core::Calibration cal;
    c.cluster = cpu::cluster_from_rates(rates, shape, cal);
    measured_machine = {{"cluster", core::cluster_to_json(c.cluster)},
                        {"calibration", core::calibration_to_json(cal)},
                        {"rates",
                         {{"gemm_flop_per_s", rates.gemm_flop_per_s},
                          {"copy_bytes_per_s", rates.copy_bytes_per_s},
                          {"all_to_all_bytes_per_s", rates.all_to_all_bytes_per_s},
                          {"message_latency_s", rates.message_latency_s},
                          {"latency_s", rates.latency_s},
                          {"busy_latency_s", rates.busy_latency_s},
                          {"busy_all_to_all_bytes_per_s", rates.busy_all_to_all_bytes_per_s},
                          {"progress_spin_s", rates.progress_spin_s},
                          {"progress_core_share", rates.progress_core_share},
                          {"op_overhead_s", rates.op_overhead_s},
                          {"stream_wake_s", rates.stream_wake_s},
                          {"busy_compute_wake_s", rates.busy_compute_wake_s},
                          {"slot_handoff_s", rates.slot_handoff_s},
                          {"kernel_rates", rates.kernels.rates},
                          {"kernel_hot_rates", rates.kernels.hot_rates},
                          {"kernel_cache_bytes", rates.kernels.cache_bytes},
                          {"compute_slots", rates.kernels.compute_slots}}}};
  }
  const tr::TrainingPlan plan = tr::make_training_plan(c);
  std::vector<tr::RankCounters> counters(static_cast<std::size_t>(size));
  json mine;
  {
    cpu::CpuOptions options;
    // Validation measures the modelled step: without the safety all-reduce that checks every collective's
    // signature first (it doubles the latency of small collectives, which the simulator does not model).
    options.check_collectives = !probe;
    std::unique_ptr<core::Runtime> rt =
        make_runtime ? make_runtime(c.cluster) : std::make_unique<cpu::CpuRuntime>(c.cluster, options);
    tr::training_program(plan, counters)(*rt);
    rt->synchronize();
    mine = rank_result(*rt, counters[static_cast<std::size_t>(rank)]);
  }
  const auto all = gather_text(mine.dump(), rank, size);
  if (rank == 0) {
    json doc = measured_machine.is_object() ? measured_machine : json::object();
    doc["ranks"] = json::array();
    for (const auto& text : all) doc["ranks"].push_back(json::parse(text));
    write_json_file(out_path, doc);
  }
  return 0;
}

}  // namespace moesys::exec::tools
