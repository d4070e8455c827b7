// `moesys train`: a few training steps of one configuration, simulated (default) or run for real on CPU ranks,
// and the report of the last one.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/args.hpp"
#include "cli/cluster_options.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/model_zoo.hpp"
#include "core/output_files.hpp"
#include "policies/training/training_run.hpp"
#include "sim/training_simulator.hpp"
#include "studies/real_training.hpp"

namespace moesys::cli {
using namespace moesys::studies;  // study drivers and real-run launchers
namespace {

namespace tr = policies::training;
using nlohmann::json;

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

/// The human-readable report of one run.
std::string format_report(const json& s) {
  std::ostringstream o;
  const json& b = s["breakdown_s"];
  const double step = s["step_s"].get<double>();
  auto pct = [&](double x) { return fmt("%5.1f%%", step > 0 ? 100 * x / step : 0); };
  o << "# moesys train: " << s["model"]["name"].get<std::string>() << " ("
    << fmt("%.1f", s["params"].get<double>() / 1e9) << "B parameters) on " << s["gpus"].get<int>() << " x "
    << s["gpu"].get<std::string>() << " (" << s["nodes"].get<int>() << " nodes), policy "
    << s["policy_name"].get<std::string>() << ", expert parallel " << s["expert_parallel"].get<int>();
  if (s.contains("tensor_parallel")) o << ", tensor parallel " << s["tensor_parallel"].get<int>() << " (sequence parallel)";
  if (s.contains("pipeline_parallel")) {
    o << ", " << s["pipeline_parallel"].get<int>() << " pipeline stages (";
    if (s.contains("virtual_stages"))
      o << "interleaved 1F1B, " << s["virtual_stages"].get<int>() << " model chunks each)";
    else
      o << "1F1B)";
  }
  if (s.contains("recompute")) o << ", recompute " << s["recompute"].get<std::string>();
  if (s.contains("recompute_modules")) {
    std::string modules;
    for (const auto& m : s["recompute_modules"]) modules += (modules.empty() ? "" : ", ") + m.get<std::string>();
    o << " (" << modules << ")";
  }
  o << "\n";
  if (s.contains("placement")) o << "task placement (GPUs per task)  " << s["placement"].get<std::string>() << "\n";
  o << "tokens/s                 " << fmt("%.0f", s["tokens_per_s"].get<double>()) << "\n";
  o << "samples/s                " << fmt("%.2f", s["samples_per_s"].get<double>()) << "\n";
  o << "model TFLOP/s per GPU    " << fmt("%.1f", s["model_tflops_per_gpu"].get<double>()) << "\n";
  const bool simulated = s.value("runtime", "sim") == "sim";
  o << "step time                " << fmt("%.4f s", step) << "  (last of " << s["steps"].get<int>()
    << (simulated ? " simulated steps, " : " measured steps, ") << s["micro_batches"].get<int>()
    << " micro-batch(es) per step)\n";
  o << "  compute                " << fmt("%.4f s", b["compute"].get<double>()) << "  "
    << pct(b["compute"].get<double>()) << "\n";
  o << "  exposed communication  " << fmt("%.4f s", b["exposed_comm"].get<double>()) << "  "
    << pct(b["exposed_comm"].get<double>()) << "\n";
  o << "  exposed copies         " << fmt("%.4f s", b["exposed_copy"].get<double>()) << "  "
    << pct(b["exposed_copy"].get<double>()) << "\n";
  o << "  idle                   " << fmt("%.4f s", b["idle"].get<double>()) << "  " << pct(b["idle"].get<double>())
    << "\n";
  const json& m = s["memory"];
  o << "peak memory per rank     HBM " << fmt("%.1f", m["peak_hbm_gib"].get<double>()) << " of "
    << fmt("%.1f GiB", m["capacity_gib"][0].get<double>()) << ", host " << fmt("%.1f", m["peak_dram_gib"].get<double>())
    << " of " << fmt("%.1f GiB", m["capacity_gib"][1].get<double>()) << ", SSD "
    << fmt("%.1f", m["peak_ssd_gib"].get<double>()) << " of " << fmt("%.1f GiB", m["capacity_gib"][2].get<double>())
    << "\n";
  for (const char* tier : {"hbm", "dram", "ssd"}) {
    const json& uses = m["planned_by_use_gib"][tier];
    if (uses.empty()) continue;
    o << "  " << tier << " (rank " << m["planned_rank"].get<int>() << "):";
    bool first = true;
    for (const char* use : {"parameters", "gradients", "optimizer", "activations", "buffers", "expert cache"}) {
      if (!uses.contains(use)) continue;
      o << (first ? " " : " + ") << use << " " << fmt("%.2f", uses[use].get<double>());
      first = false;
    }
    o << " GiB\n";
  }
  const json& n = s["network_gb_per_step"];
  if (simulated)
    o << "network per step         intra-node " << fmt("%.1f GB", n["intra_node"].get<double>()) << ", same leaf "
      << fmt("%.1f GB", n["same_leaf"].get<double>()) << ", across the spine "
      << fmt("%.1f GB", n["cross_spine"].get<double>()) << "\n";
  if (!s["copy_gb_last_step"].empty()) {
    o << "copies in the last step ";
    for (const auto& [name, gb] : s["copy_gb_last_step"].items())
      o << " " << name << " " << fmt("%.1f GB", gb.get<double>()) << ";";
    o << "\n";
  }
  const json& g = s["gate"];
  o << "gate                     " << fmt("%.2f%%", 100 * g["dropped_fraction"].get<double>())
    << " of assignments dropped, " << fmt("%.1f%%", 100 * g["padding_fraction"].get<double>()) << " padding rows, "
    << "busiest rank computes " << fmt("%.2f", g["rank_imbalance"].get<double>()) << "x the mean expert rows (last step)\n";
  if (s.contains("offload")) {
    const json& f = s["offload"];
    o << "offload                  " << f["expert_fetches"].get<long long>() << " expert fetches ("
      << f["wasted_fetches"].get<long long>() << " unused, " << f["on_demand_fetches"].get<long long>()
      << " on demand), cache " << f["cache_hits"].get<long long>() << " hits / " << f["cache_misses"].get<long long>()
      << " misses, SSD " << fmt("%.1f GB read", f["ssd_read_gb"].get<double>()) << ", "
      << fmt("%.1f GB written", f["ssd_write_gb"].get<double>()) << "\n";
  }
  if (!simulated) {
    o << "loss per step           ";
    for (const auto& l : s["loss_per_step"]) o << " " << fmt("%.4f", l.get<double>());
    o << "\n# ran for real on " << s["gpus"].get<int>() << " " << s["runtime"].get<std::string>() << " ranks in "
      << fmt("%.2f s", s["wall_s"].get<double>()) << " wall\n";
    return o.str();
  }
  o << "# simulated in " << fmt("%.2f s", s["simulator"]["wall_s"].get<double>()) << " wall, "
    << s["simulator"]["flows"].get<long long>() << " flows (" << s["simulator"].value("solo_flows", 0LL)
    << " in closed form)\n";
  return o.str();
}

json parse_json_flag(const Args& args, const std::string& flag) {
  const json j = core::read_json_flag(flag, *args.get(flag));
  if (!j.is_object()) throw core::ConfigError("", flag, "expected a JSON object, e.g. '{\"all_to_all\": \"flat\"}'");
  return j;
}

int positive_flag(const Args& args, const std::string& flag) {
  const int v = args.get_int(flag, 0);
  if (v < 1) throw core::ConfigError("", flag, "expected a positive integer");
  return v;
}

int run_train(int argc, char** argv) {
  Args args(argc, argv, 1,
            {"--config", "--preset", "--policy", "--model", "--experts", "--gpus", "--gpu", "--ep", "--parallel", "--steps",
             "--workload", "--trace", "--calibration", "--runtime", "--ranks", "--routing-out"},
            {"--json", "--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys train [--config FILE] [--preset deepspeed|moesys|static-multitask|...] [--policy JSON]\n"
        "                    [--model NAME|JSON] [--experts E] [--gpus N] [--gpu a100-80g|a100-40g|h100|h200|h800]\n"
        "                    [--ep N] [--parallel JSON] [--steps S] [--workload JSON] [--calibration FILE]\n"
        "                    [--trace FILE] [--json]\n"
        "                    [--runtime sim|cpu|cuda] [--ranks N] [--routing-out FILE]\n"
        "Without --config: the paper's GPT-MoE with 64 experts on 64 A100-80GB, preset moesys.\n"
        "--runtime cpu runs the same per-rank program for real on N MPI ranks of this machine (default 4; fp32;\n"
        "without --config or --model a small GPT-MoE: 2 layers, hidden 256, 2 experts per rank); --runtime cuda\n"
        "runs it on N GPUs (one MPI rank each, NCCL). --routing-out writes the real gate's counts as a routing trace\n"
        "that the simulator replays with --workload '{\"kind\": \"trace\", \"file\": FILE}'.\n"
        "Flags override the config: --preset and --policy (toggles) the policy, --model (a zoo model by name, or\n"
        "fields) and --experts the model, "
        "--gpus the cluster size, --ep the expert-parallel size, --parallel the layout ({\"pp\": 16, \"ep\": 64,\n"
        "\"vpp\": 1, \"tp\": 1, \"stage_layers\": [...], \"recompute\": \"none\"|\"selective\"|\"full\",\n"
        "\"recompute_modules\": [\"layernorm\", \"moe_act\", \"mlp\"]}). Known presets: %s.\nModels: %s.\n",
        tr::known_presets().c_str(), core::zoo_model_names().c_str());
    return 0;
  }
  if (!args.positional().empty()) throw core::ConfigError("", args.positional().front(), "unexpected argument");
  const std::string runtime = args.get_or("--runtime", "sim");
  if (runtime != "sim" && runtime != "cpu" && runtime != "cuda")
    throw core::ConfigError("", "--runtime", "expected sim, cpu or cuda");
  const bool real = runtime != "sim";
  for (const char* flag : {"--trace", "--routing-out"})  // before anything runs, not after an hour of simulation
    if (auto path = args.get(flag)) core::check_output_file(*path, flag);
  if (args.has("--routing-out") && !real)
    throw core::ConfigError("", "--routing-out",
                            "applies to --runtime cpu or cuda (real runs record the gate's counts)");
  if (args.has("--ranks") && !real)
    throw core::ConfigError("", "--ranks", "applies to --runtime cpu or cuda (the simulator takes --gpus)");
  const int ranks = args.has("--ranks") ? positive_flag(args, "--ranks") : 4;
  if (real && ranks > 64) throw core::ConfigError("", "--ranks", "expected 1..64 ranks on this machine");
  std::string file;
  json config = {{"model", {{"preset", "gpt-moe"}, {"experts", 64}}}, {"cluster", {{"gpus", 64}}}};
  if (real) {
    config["model"] = small_cpu_model(ranks);
    config["cluster"]["gpus"] = ranks;
  }
  if (auto f = args.get("--config")) {
    file = *f;
    config = tr::read_json_file(file);
    if (!config.is_object()) throw core::ConfigError(file, "(root)", "expected a training config object");
  }
  // Flags are applied as a merge patch of the config, so that one validation path reports every error.
  if (args.has("--preset")) config["policy"]["preset"] = *args.get("--preset");
  if (args.has("--policy")) {
    json p = parse_json_flag(args, "--policy");
    if (!p.is_object()) throw core::ConfigError("", "--policy", "expected a JSON object of policy toggles");
    config["policy"].merge_patch(p);
  }
  if (auto name = args.get("--model"); name && core::zoo_model_json(*name)) {
    // A zoo model by name (--experts applies to the paper's family only); on real ranks, its architecture at the
    // small model's size.
    config["model"] = {{"preset", *name}};
    if (real) {
      config["model"] = reduced_zoo_model(*core::zoo_model_json(*name), ranks);
      std::fprintf(stderr, "# %s runs for real at a reduced size: %s\n", name->c_str(), config["model"].dump().c_str());
    }
  } else if (args.has("--model")) {
    std::error_code no_file;  // a name too long for the file system is no file either
    if (const std::string v = *args.get("--model"); !core::is_inline_json(v) && !std::filesystem::exists(v, no_file))
      throw core::ConfigError("", "--model",
                              "unknown model \"" + v + "\" and no such file (models: " + core::zoo_model_names() + ")");
    json m = parse_json_flag(args, "--model");
    if (!m.is_object()) throw core::ConfigError("", "--model", "expected a JSON object of model fields");
    // A named model with overrides ({"preset": "deepseek-v3", "layers": 8}) replaces the model (on real ranks: the
    // zoo model reduced, then the overrides); fields alone patch it.
    const auto zoo = m.contains("preset") && m["preset"].is_string()
                         ? core::zoo_model_json(m["preset"].get<std::string>())
                         : std::nullopt;
    if (real && zoo) {
      json reduced = reduced_zoo_model(*zoo, ranks);
      m.erase("preset");
      reduced.merge_patch(m);
      config["model"] = reduced;
      std::fprintf(stderr, "# the model runs for real at a reduced size: %s\n", reduced.dump().c_str());
    } else if (m.contains("preset")) {
      config["model"] = m;
    } else {
      config["model"].merge_patch(m);
    }
  }
  if (args.has("--experts")) {
    if (!config["model"].contains("preset"))
      throw core::ConfigError("", "--experts", "applies to a model preset (\"model\": {\"preset\": \"gpt-moe\", ...})");
    config["model"]["experts"] = positive_flag(args, "--experts");
  }
  if (args.has("--gpus")) config["cluster"]["gpus"] = positive_flag(args, "--gpus");
  if (args.has("--gpu")) config["cluster"]["gpu"] = *args.get("--gpu");
  if (args.has("--parallel")) {
    const json p = parse_json_flag(args, "--parallel");  // an object (checked there)
    if (p.contains("ep") && config.contains("parallel")) config["parallel"].erase("expert_parallel");
    config["parallel"].merge_patch(p);
  }
  if (args.has("--ep")) {
    config["parallel"]["ep"] = positive_flag(args, "--ep");
    config["parallel"].erase("expert_parallel");
  }
  if (args.has("--steps")) config["steps"] = positive_flag(args, "--steps");
  if (args.has("--workload")) config["workload"] = parse_json_flag(args, "--workload");

  if (real) {
    if (args.has("--ranks")) config["cluster"]["gpus"] = ranks;
    if (config["model"].contains("dtype") && config["model"]["dtype"] != "fp32")
      throw core::ConfigError(file, "model.dtype", "the real runtimes compute the MoE kernels in fp32");
    config["model"]["dtype"] = "fp32";
  }
  const tr::TrainingConfig c = tr::parse_training_config(config, file);
  if (real && (c.model.fp8_gemm || c.model.fp8_dispatch))
    throw core::ConfigError(file, c.model.fp8_gemm ? "model.fp8_gemm" : "model.fp8_dispatch",
                            "FP8 is a simulator option; the real runtimes compute in fp32");
  if (runtime == "cuda" && c.context_parallel > 1)
    throw core::ConfigError(file, "parallel.cp",
                            "context parallelism runs in the simulator and on CPU ranks; the CUDA runtime's attention "
                            "backward takes whole sequences only");
  const core::Calibration cal = calibration_from_args(args, c.cluster);
  const auto trace = args.get("--trace");
  tr::TrainingReport report;
  if (real) {
    const tr::TrainingPlan plan = tr::make_training_plan(c);  // every input error surfaces before launching
    RealTrainingRun measured =
        runtime == "cpu" ? run_training_on_cpu(config, c.gpus, false) : run_training_on_gpus(config, c.gpus);
    report = tr::summarize_training(plan, measured.run, measured.counters, trace.has_value());
    if (auto out = args.get("--routing-out"))
      core::write_routing_trace(*out, routing_trace(measured.counters, c.model.experts, c.model.moe_blocks()));
  } else {
    report = tr::run_training(c, tr::sim_simulator(cal, trace.has_value()), trace.has_value());
  }
  if (trace) core::write_chrome_trace(report.last_step, *trace);
  if (args.has("--json"))
    std::printf("%s\n", report.summary.dump(1).c_str());
  else
    std::printf("%s", format_report(report.summary).c_str());
  return 0;
}

const CommandRegistrar kRegistrar("train", "simulate training steps of one MoE configuration (policy presets)",
                                  run_train);

}  // namespace
}  // namespace moesys::cli
