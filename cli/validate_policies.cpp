// `moesys validate --preset NAME | --policy JSON | --compare A,B`: the training program of a policy preset runs for
// real on CPU ranks of this machine and in the simulator on a description of this machine that the same worker
// measured just before its run (one window for probe and run). Each preset runs `--repeats` times, interleaved
// with the others, so that load on a shared machine hits every preset alike; the report gives the median and the
// spread over repeats of the step time, its breakdown (compute, exposed communication and copies, idle) and the
// errors, and for
// --compare, last, the predicted and measured step-time ratio of the second preset over the first.
#include "cli/validate_policies.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

#include "cli/ranking_verdict.hpp"
#include "core/calibration.hpp"
#include "core/error.hpp"
#include "core/output_files.hpp"
#include "core/trace.hpp"
#include "policies/training/step_metrics.hpp"
#include "sim/isolated_run.hpp"
#include "sim/training_simulator.hpp"
#include "studies/real_training.hpp"
#include "studies/worker_launch.hpp"

namespace moesys::cli {
using namespace moesys::studies;  // study drivers and real-run launchers

namespace tr = policies::training;
using nlohmann::json;

namespace {

/// Mean step time and its breakdown (compute, exposed communication, exposed copies, idle; step_metrics.hpp)
/// over the measured steps (after `warmup`). Host phase spans are not compared: the simulator's host issues work
/// ahead of the streams, so its phases measure issue, not execution.
struct StepTimes {
  double step_s = 0;
  std::map<std::string, double> phase_s;
  std::map<std::string, double> op_s;  // "stream: operation" -> busy seconds per step, mean over ranks
};

/// An operation's class: its name with layer and chunk numbers folded ("L1 qkv" -> "L# qkv"), so that a layer's
/// kernels add up across layers; collectives by operation only ("all_to_all/direct" and the simulator's
/// "alltoall/direct" are both "alltoall").
std::string op_class(const core::Span& s) {
  std::string out = s.stream + ": ";
  const bool collective = s.kind == core::SpanKind::collective || s.kind == core::SpanKind::comm;
  for (std::size_t i = 0; i < s.name.size(); ++i) {
    if (collective && s.name[i] == '/') break;
    if (collective && s.name[i] == '_') continue;
    if (std::isdigit(static_cast<unsigned char>(s.name[i]))) {
      out += '#';
      while (i + 1 < s.name.size() && std::isdigit(static_cast<unsigned char>(s.name[i + 1]))) ++i;
    } else {
      out += s.name[i];
    }
  }
  return out;
}

StepTimes step_times(const tr::SimulatedRun& run, int warmup, int steps) {
  std::vector<const std::vector<core::Span>*> spans;
  for (const auto& r : run.ranks) spans.push_back(&r.spans);
  StepTimes t;
  const double n = steps - warmup;
  for (int s = warmup; s < steps; ++s) {
    const tr::StepWindow w = tr::step_window(spans, s);
    const tr::StepBreakdown b = tr::step_breakdown(spans, w);
    t.step_s += w.seconds() / n;
    t.phase_s["compute"] += b.compute_s / n;
    t.phase_s["exposed comm"] += b.exposed_comm_s / n;
    t.phase_s["exposed copies"] += b.exposed_copy_s / n;
    t.phase_s["idle"] += b.idle_s / n;
    for (const auto& r : run.ranks)
      for (const core::Span& sp : r.spans)
        if (sp.kind != core::SpanKind::phase && sp.start_s >= w.start_s && sp.end_s <= w.end_s)
          t.op_s[op_class(sp)] += sp.duration_s() / n / static_cast<double>(run.ranks.size());
  }
  return t;
}

struct Sample {
  StepTimes predicted, measured;
  std::vector<double> losses;
  json rates;  // the probe's measurements behind the prediction
};

std::vector<core::Span> all_spans(const tr::SimulatedRun& run) {
  std::vector<core::Span> spans;
  for (const auto& r : run.ranks) spans.insert(spans.end(), r.spans.begin(), r.spans.end());
  return spans;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// The machine's scheduling costs: what the operating system's threads and scheduler cost a rank (a kernel's fixed
/// cost, a worker's wake-ups, a slot's handoff, a collective call and its steps, a waiting member's polling). One
/// probe's values scatter by a third from run to run while the machine stays the same, so every run's prediction
/// takes their median over all runs of the validation; kernel and link rates, which follow the load of the
/// moment, stay the run's own.
constexpr const char* kSchedulingCosts[] = {"kernel_launch_s",      "stream_wake_s",        "busy_compute_wake_s",
                                            "slot_handoff_s",       "collective_latency_s", "step_latency_s",
                                            "ll_step_latency_s",    "ll128_step_latency_s", "progress_spin_s",
                                            "progress_core_share"};

json median_scheduling_costs(const std::vector<std::vector<RealTrainingRun>>& runs) {
  json out = json::object();
  for (const char* key : kSchedulingCosts) {
    std::vector<double> v;
    for (const auto& preset : runs)
      for (const RealTrainingRun& r : preset)
        if (r.machine.contains("calibration") && r.machine["calibration"].contains(key))
          v.push_back(r.machine["calibration"][key].get<double>());
    if (!v.empty()) out[key] = median(v);
  }
  return out;
}

/// The prediction of one real run: the same program on the machine its probe measured (with the validation's
/// scheduling costs), replaying the routing the real gate chose. With a `trace_stem`, both runs' spans are written
/// as Chrome traces `<stem>-measured.json` and `<stem>-predicted.json` (the real ranks' clocks each start after a
/// barrier, so ranks may be offset by a few milliseconds).
Sample predict(const json& config, const RealTrainingRun& real, const json& scheduling, int warmup, int steps,
               const std::string& trace_stem) {
  if (!trace_stem.empty()) core::write_chrome_trace(all_spans(real.run), trace_stem + "-measured.json");
  const std::string trace_path = worker_temp_path("moesys-validate-routing");
  struct Cleanup {
    std::string path;
    ~Cleanup() { std::remove(path.c_str()); }
  } cleanup{trace_path};
  const tr::TrainingConfig parsed = tr::parse_training_config(config, "");
  core::write_routing_trace(trace_path, routing_trace(real.counters, parsed.model.experts, parsed.model.moe_blocks()));
  json replay = config;
  replay["workload"] = {{"kind", "trace"}, {"file", trace_path}};
  tr::TrainingConfig c = tr::parse_training_config(replay, "");
  c.cluster = core::parse_cluster(real.machine.at("cluster"), "<measured machine>");
  json calibration = real.machine.at("calibration");
  calibration.merge_patch(scheduling);
  const core::Calibration cal = core::parse_calibration(calibration, "<measured machine>");
  // One SimGrid engine per process: the prediction runs in a forked child and returns its step times.
  const json predicted = sim::run_isolated([&] {
    const tr::TrainingPlan plan = tr::make_training_plan(c);
    std::vector<tr::RankCounters> counters(static_cast<std::size_t>(plan.layout.ranks));
    const tr::SimulatedRun run =
        tr::sim_simulator(cal, true)(c.cluster, plan.layout.ranks, tr::training_program(plan, counters));
    if (!trace_stem.empty()) core::write_chrome_trace(all_spans(run), trace_stem + "-predicted.json");
    const StepTimes t = step_times(run, warmup, steps);
    return json{{"step_s", t.step_s}, {"phase_s", t.phase_s}, {"op_s", t.op_s}};
  });
  Sample s;
  s.predicted.step_s = predicted.at("step_s").get<double>();
  s.predicted.phase_s = predicted.at("phase_s").get<std::map<std::string, double>>();
  s.predicted.op_s = predicted.at("op_s").get<std::map<std::string, double>>();
  s.measured = step_times(real.run, warmup, steps);
  s.losses = real.counters.empty() ? std::vector<double>{} : real.counters.front().losses;
  s.rates = real.machine.value("rates", json::object());
  for (const auto& [key, value] : scheduling.items()) s.rates["validation_" + key] = value;
  return s;
}


double pct(double predicted, double measured) {
  return measured > 0 ? (predicted - measured) / measured * 100 : 0;
}

/// The `limit` operation classes whose predicted busy time per step is furthest from the measured one (medians
/// over repeats): where the machine description or the kernel model is wrong.
void print_op_detail(const std::vector<Sample>& samples, int limit) {
  // The communication side of the machine description, median over repeats: a collective call alone and beside
  // compute, and one step inside it (exec/cpu/machine_probe.hpp).
  auto rate = [&](const char* key) {
    std::vector<double> v;
    for (const Sample& s : samples) v.push_back(s.rates.value(key, 0.0));
    return median(v);
  };
  std::printf(
      "  machine: collective call %.3f ms alone, %.3f ms beside compute; step inside it %.1f us; "
      "all-to-all %.2f GB/s per rank alone, %.2f GB/s beside compute; %g compute slots; a kernel's fixed cost %.1f us, a stream's wake-up "
      "%.1f us (%.1f us for a compute worker beside other ranks' kernels); a slot's handoff %.1f us; a waiting member spins %.0f us, then "
      "polls with %.0f%% of a core\n",
      rate("latency_s") * 1e3, rate("busy_latency_s") * 1e3, rate("message_latency_s") * 1e6,
      rate("all_to_all_bytes_per_s") / 1e9, rate("busy_all_to_all_bytes_per_s") / 1e9, rate("compute_slots"), rate("op_overhead_s") * 1e6,
      rate("stream_wake_s") * 1e6, rate("busy_compute_wake_s") * 1e6, rate("slot_handoff_s") * 1e6, rate("progress_spin_s") * 1e6,
      rate("progress_core_share") * 100);
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> ops;
  for (const Sample& s : samples) {
    for (const auto& [k, v] : s.predicted.op_s) ops[k].first.push_back(v);
    for (const auto& [k, v] : s.measured.op_s) ops[k].second.push_back(v);
  }
  std::vector<std::tuple<double, std::string, double, double>> rows;
  for (auto& [k, v] : ops) {
    v.first.resize(samples.size(), 0.0), v.second.resize(samples.size(), 0.0);
    const double a = median(v.first), b = median(v.second);
    rows.emplace_back(-std::abs(a - b), k, a, b);
  }
  std::sort(rows.begin(), rows.end());
  std::printf("  busy time per step and rank, the %d operations furthest off:\n  %-34s %14s %14s %9s\n", limit,
              "stream: operation", "predicted(ms)", "measured(ms)", "error");
  for (std::size_t i = 0; i < rows.size() && i < static_cast<std::size_t>(limit); ++i) {
    const auto& [gap, name, a, b] = rows[i];
    std::printf("  %-34s %14.3f %14.3f %+8.1f%%\n", name.c_str(), a * 1e3, b * 1e3, pct(a, b));
  }
}

}  // namespace

int validate_policies(const Args& args) {
  const int ranks = args.get_int("--ranks", 4);
  if (ranks < 1 || ranks > 64) throw core::ConfigError("", "--ranks", "expected 1..64 ranks");
  const int steps = args.get_int("--steps", 4), warmup = args.get_int("--warmup", 2);
  if (steps < 1) throw core::ConfigError("", "--steps", "expected >= 1 measured steps");
  if (warmup < 1) throw core::ConfigError("", "--warmup", "expected >= 1 warm-up step (the first step allocates)");
  const int repeats = args.get_int("--repeats", 3);
  if (repeats < 1 || repeats > 20) throw core::ConfigError("", "--repeats", "expected 1..20");
  const int detail = args.get_int("--detail", 0);
  if (detail < 0 || detail > 1000) throw core::ConfigError("", "--detail", "expected 0..1000 operations");
  const auto trace_flag = args.get("--trace");
  const std::string trace_dir = trace_flag ? *trace_flag : "";
  if (trace_flag) core::check_output_dir(trace_dir, "--trace");

  // The policies: --compare A,B (presets; the default is deepspeed,moesys), or one --preset / --policy.
  std::vector<std::pair<std::string, json>> policies;
  if (!args.has("--preset") && !args.has("--policy")) {
    std::string rest = args.get_or("--compare", "deepspeed,moesys");
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string name = rest.substr(0, comma);
      if (name.empty()) throw core::ConfigError("", "--compare", "expected preset names separated by commas");
      policies.emplace_back(name, json{{"preset", name}});
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    }
    if (policies.size() < 2)
      throw core::ConfigError("", "--compare", "expected two or more presets, e.g. deepspeed,moesys");
  } else {
    json p = {{"preset", args.get_or("--preset", "moesys")}};
    if (auto text = args.get("--policy")) {
      try {
        p.merge_patch(json::parse(*text));
      } catch (const json::parse_error&) {
        throw core::ConfigError("", "--policy", "expected a JSON object of policy toggles");
      }
    }
    policies.emplace_back(p.value("preset", std::string("moesys")), p);
  }

  json base = {{"model", small_cpu_model(ranks)}, {"cluster", {{"gpus", ranks}}}, {"steps", warmup + steps}};
  if (auto text = args.get("--model")) {
    json m;
    try {
      m = json::parse(*text);
    } catch (const json::parse_error&) {
      throw core::ConfigError("", "--model", "expected a JSON object of model fields");
    }
    if (!m.is_object()) throw core::ConfigError("", "--model", "expected a JSON object of model fields");
    base["model"].merge_patch(m);
  }
  if (base["model"].value("dtype", std::string("fp32")) != "fp32")
    throw core::ConfigError("", "--model", "dtype: the CPU runtime computes in fp32");
  std::vector<json> configs;
  for (const auto& [name, p] : policies) {
    json c = base;
    c["policy"] = p;
    tr::make_training_plan(tr::parse_training_config(c, ""));  // every input error before the first run
    configs.push_back(std::move(c));
  }

  // Interleaved repeats: A, B, A, B, ... so that a change of load shows in every preset; the predictions follow,
  // once the scheduling costs of every run are known.
  std::vector<std::vector<RealTrainingRun>> runs(configs.size());
  for (int r = 0; r < repeats; ++r)
    for (std::size_t i = 0; i < configs.size(); ++i) {
      std::fprintf(stderr, "validate: %s, repeat %d of %d\n", policies[i].first.c_str(), r + 1, repeats);
      runs[i].push_back(run_training_on_cpu(configs[i], ranks, true));
    }
  const json scheduling = median_scheduling_costs(runs);
  std::vector<std::vector<Sample>> samples(configs.size());
  for (std::size_t i = 0; i < configs.size(); ++i)
    for (int r = 0; r < repeats; ++r) {
      std::string stem;  // the last repeat's traces
      if (!trace_dir.empty() && r == repeats - 1) {
        std::filesystem::create_directories(trace_dir);
        stem = (std::filesystem::path(trace_dir) / policies[i].first).string();
      }
      samples[i].push_back(predict(configs[i], runs[i][std::size_t(r)], scheduling, warmup, warmup + steps, stem));
    }

  std::printf(
      "# moesys validate: %d rank(s) on this machine, model %s, %d measured steps after %d warm-up, "
      "%d interleaved repeats (medians; errors paired per repeat; spread = (max - min) / median of the measured "
      "step)\n",
      ranks, base["model"].dump().c_str(), steps, warmup, repeats);
  json report = {{"ranks", ranks}, {"repeats", repeats}, {"presets", json::array()}};
  for (std::size_t i = 0; i < configs.size(); ++i) {
    std::vector<double> p, m;
    std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> phases;
    for (const Sample& s : samples[i]) {
      p.push_back(s.predicted.step_s);
      m.push_back(s.measured.step_s);
      for (const auto& [k, v] : s.predicted.phase_s) phases[k].first.push_back(v);
      for (const auto& [k, v] : s.measured.phase_s) phases[k].second.push_back(v);
    }
    const double pm = median(p), mm = median(m);
    // The error is paired per repeat (each prediction runs on the rates probed in its own run's window, so a load
    // change moves both), then the median over repeats is taken.
    std::vector<double> paired;
    for (std::size_t r = 0; r < p.size(); ++r) paired.push_back(pct(p[r], m[r]));
    const double error = median(paired);
    const double spread =
        mm > 0 ? (*std::max_element(m.begin(), m.end()) - *std::min_element(m.begin(), m.end())) / mm : 0;
    std::printf("\n%s (%s)\n%-12s %14s %14s %9s\n", policies[i].first.c_str(), policies[i].second.dump().c_str(),
                "phase", "predicted(ms)", "measured(ms)", "error");
    json pj = {{"name", policies[i].first}, {"policy", policies[i].second}, {"phases", json::object()}};
    for (const char* name : {"compute", "exposed comm", "exposed copies", "idle"}) {
      const double a = median(phases[name].first), b = median(phases[name].second);
      std::printf("%-12s %14.3f %14.3f %+8.1f%%\n", name, a * 1e3, b * 1e3, pct(a, b));
      pj["phases"][name] = {{"predicted_s", a}, {"measured_s", b}};
    }
    std::printf("%-12s %14.3f %14.3f %+8.1f%%   (measured spread %.1f%%)\n", "step", pm * 1e3, mm * 1e3, error,
                100 * spread);
    std::printf("%s step-time error: %+.1f%%\n", policies[i].first.c_str(), error);
    if (detail > 0) print_op_detail(samples[i], detail);
    pj["predicted_step_s"] = pm, pj["measured_step_s"] = mm, pj["step_error_pct"] = error;
    pj["measured_spread"] = spread;
    pj["losses"] = samples[i].back().losses;
    report["presets"].push_back(pj);
  }
  if (configs.size() >= 2) {
    // Ratios within each repeat (the two presets ran back to back), then medians over repeats.
    std::vector<double> predicted, measured, errors;
    for (int r = 0; r < repeats; ++r) {
      const Sample &a = samples[0][static_cast<std::size_t>(r)], &b = samples[1][static_cast<std::size_t>(r)];
      predicted.push_back(a.predicted.step_s / b.predicted.step_s);
      measured.push_back(a.measured.step_s / b.measured.step_s);
      errors.push_back(pct(predicted.back(), measured.back()));
    }
    const double pr = median(predicted), mr = median(measured), error = median(errors);
    report["ratio"] = {{"predicted", pr}, {"measured", mr}, {"error_pct", error}};
    report["ranking"] = ranking_verdict(policies[0].first, policies[1].first, pr, measured);
    std::printf("\nranking: %s\n", report["ranking"].get<std::string>().c_str());
    std::printf(
        "%s vs %s speed-up (step time of %s / step time of %s): predicted %.3f, measured %.3f, "
        "error %+.1f%%\n",
        policies[1].first.c_str(), policies[0].first.c_str(), policies[0].first.c_str(), policies[1].first.c_str(), pr,
        mr, error);
  }
  if (auto path = args.get("--json")) {
    const std::string tmp = *path + ".tmp";
    {
      std::ofstream out(tmp);
      if (!(out << report.dump(2) << "\n")) throw core::RuntimeFailure("cannot write " + *path);
    }
    if (std::rename(tmp.c_str(), path->c_str()) != 0) throw core::RuntimeFailure("cannot write " + *path);
  }
  return 0;
}

}  // namespace moesys::cli
