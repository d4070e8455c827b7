// `moesys infer`: text generation (prefill + decode with a KV cache) of an MoE model under a memory policy, simulated
// (default) or run for real on CPU ranks or GPUs by the same per-rank program; reports throughput, time per output
// token, peak GPU memory and PCIe use.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/cluster_options.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/model_zoo.hpp"
#include "core/output_files.hpp"
#include "core/units.hpp"
#include "policies/training/policy.hpp"
#include "studies/inference_study.hpp"
#include "studies/real_inference.hpp"
#include "studies/real_training.hpp"

namespace moesys::cli {
using namespace moesys::studies;  // study drivers and real-run launchers
namespace {

namespace inf = policies::inference;

const char* kUsage =
    "usage: moesys infer [--model gpt-moe-<E>e|FILE] [--policy all-in-gpu|deepspeed|moesys] [--ring-slots K]\n"
    "                    [--host-memory pinned|pageable] [--gpus N] [--batch B] [--prompt P] [--output O]\n"
    "                    [--all-to-all flat|hierarchical|deepep] [--workload FILE|JSON] [--replicas JSON] [--preset LABEL]\n"
    "                    [--cluster FILE | --nodes N --gpus-per-node G --nics-per-node K --nic-gbps B --gpu ...]\n"
    "                    [--calibration FILE] [--trace FILE] [--json] [--runtime sim|cpu|cuda] [--ranks N]\n"
    "Without cluster flags: one A100-SXM4-40GB. Defaults: gpt-moe-16e, moesys with K = 2, batch 8 per GPU,\n"
    "prompt 128, output 32, hierarchical all-to-all, uniform routing. deepspeed defaults to pageable memory.\n"
    "--runtime cpu runs the same per-rank program for real on N MPI ranks of this machine (default 2; fp32), cuda\n"
    "on N GPUs; without --model a small GPT-MoE (2 layers, hidden 256, 2 experts per rank) with batch 4, prompt 16,\n"
    "output 8; the ranks are one node of N GPUs of the cluster flags' kind. The report is the simulator's.\n"
    "--replicas {\"kind\": \"eplb\"|\"hot\", \"slots\": K, \"every\": N, \"scope\": \"global\"|\"node\"}: spare\n"
    "expert slots copying loaded experts (all-in-gpu only).\n";

core::ClusterSpec infer_cluster(const Args& args) {
  for (const auto& flag : cluster_flags())
    if (flag != "--calibration" && args.has(flag)) return cluster_from_args(args);
  // Offloaded inference is a single-GPU problem first: default to one A100-40GB server.
  core::ClusterGeneratorOptions o;
  o.nodes = 1;
  o.gpus_per_node = 1;
  o.nics_per_node = 1;
  o.gpu = "a100-40g";
  return core::generate_cluster(o);
}

// Real runs: one node of `ranks` GPUs of the kind the flags name (an A100-40GB by default), whose memory sizes the
// plan checks; the rates do not matter (nothing is simulated).
core::ClusterSpec real_cluster(const Args& args, int ranks) {
  core::ClusterGeneratorOptions o;
  o.nodes = 1;
  o.gpus_per_node = ranks;
  o.nics_per_node = ranks;
  o.gpu = args.get_or("--gpu", "a100-40g");
  return core::generate_cluster(o);
}

inf::InferenceConfig config_from_args(const Args& args, int cluster_gpus, bool real) {
  const inf::FieldNamer names = inf::flag_namer();
  inf::InferenceConfig c;
  if (real) {  // a model and a run small enough for CPU ranks, unless the flags say otherwise
    c.model = inf::parse_inference_model(small_cpu_inference_model(cluster_gpus), "", "--model");
    c.batch = 4;
    c.prompt_tokens = 16;
    c.output_tokens = 8;
  }
  const std::string model = args.get_or("--model", real ? "" : "gpt-moe-16e");
  if (model.empty()) {
    // the small real-run model above
  } else if (real && core::zoo_model_json(model)) {  // a zoo model's architecture at the small model's size
    const nlohmann::json reduced = reduced_zoo_model(*core::zoo_model_json(model), cluster_gpus);
    std::fprintf(stderr, "# %s runs for real at a reduced size: %s\n", model.c_str(), reduced.dump().c_str());
    c.model = inf::parse_inference_model(reduced, "", "--model");
  } else if (!inf::model_preset(model, c.model)) {
    std::error_code no_file;  // a name too long for the file system is no file either, not a failure
    if (!core::is_inline_json(model) && !std::filesystem::exists(model, no_file))
      throw core::ConfigError(
          "", "--model",
          "unknown model \"" + model + "\" and no such file (models: " + core::zoo_model_names() + ")");
    const nlohmann::json j = core::read_json_flag("--model", model);
    // Errors name the file, or for inline JSON the flag (the JSON text is no file name).
    const bool inline_json = core::is_inline_json(model);
    const std::string file = inline_json ? "" : model;
    const std::string base = inline_json ? "--model" : "";
    const bool nested = j.is_object() && j.contains("model");
    c.model = inf::parse_inference_model(nested ? j["model"] : j, file,
                                         nested ? (base.empty() ? "model" : base + ".model") : base);
  }
  c.policy = args.get_or("--policy", c.policy);
  c.preset = args.get_or("--preset", c.policy);
  c.ring_slots = args.get_int("--ring-slots", c.ring_slots);
  // DeepSpeed's offload_param.pin_memory is off by default; the ring always uses pinned memory.
  c.host_memory =
      inf::parse_host_memory(args.get_or("--host-memory", c.policy == "deepspeed" ? "pageable" : "pinned"), names);
  c.gpus = args.get_int("--gpus", cluster_gpus);
  if (real && (c.model.fp8_gemm || c.model.fp8_dispatch))
    throw core::ConfigError("", "--model", "FP8 is a simulator option; the real runtimes compute in fp32");
  if (real && c.model.dtype != core::Dtype::fp32)
    throw core::ConfigError("", "--model", "the real runtimes compute the MoE kernels in fp32 (\"dtype\": \"fp32\")");
  c.batch = args.get_int("--batch", c.batch);
  c.prompt_tokens = args.get_int("--prompt", c.prompt_tokens);
  c.output_tokens = args.get_int("--output", c.output_tokens);
  c.all_to_all = inf::parse_all_to_all(args.get_or("--all-to-all", "hierarchical"), names);
  if (auto w = args.get("--workload")) c.workload = core::read_json_flag("--workload", *w);
  if (auto r = args.get("--replicas"))
    c.replicas = policies::training::parse_replicas(core::read_json_flag("--replicas", *r), {}, "", "--replicas");
  return c;
}

void print_human(const inf::PreparedRun& run, const inf::InferenceMetrics& m, const core::ClusterSpec& spec,
                 const std::string& runtime) {
  const inf::InferenceConfig& c = run.config;
  std::string policy = c.policy;
  if (c.policy == "moesys") policy += " ring memory, K = " + std::to_string(c.ring_slots) + " slots";
  if (c.policy == "deepspeed") policy += std::string(" layer offload, ") + inf::to_string(c.host_memory) + " memory";
  std::printf("# moesys infer: %s on %d x %s (%s)\n", policy.c_str(), c.gpus, spec.node.gpu.model.c_str(),
              describe(spec).c_str());
  std::printf("# %s: %.1fB parameters, %d experts x %d MoE layers; batch %d per GPU, prompt %d, output %d tokens",
              c.model.name.c_str(), static_cast<double>(c.model.total_params()) / 1e9, c.model.experts,
              c.model.moe_layers(), c.batch, c.prompt_tokens, c.output_tokens);
  if (c.gpus > 1) std::printf(", %s all-to-all", inf::all_to_all_name(c.all_to_all));
  std::printf("\n");
  std::printf("tokens/s                 %10.2f   (decode only %.2f)\n", m.tokens_per_s, m.decode_tokens_per_s);
  std::printf("time to first token      %10.3f s\n", m.ttft_s);
  if (m.tpot_p50_s)
    std::printf("time per output token    p50 %.2f ms   p99 %.2f ms\n", *m.tpot_p50_s * 1e3, *m.tpot_p99_s * 1e3);
  std::printf("peak GPU memory          %10.2f GiB of %.2f GiB (", static_cast<double>(m.peak_hbm_bytes) / core::kGiB,
              run.plan.hbm_capacity_bytes / core::kGiB);
  bool first = true;
  for (const auto& [tag, bytes] : m.peak_hbm_by_tag) {
    std::printf("%s%s %.2f", first ? "" : ", ", tag.c_str(), static_cast<double>(bytes) / core::kGiB);
    first = false;
  }
  std::printf(")\n");
  std::printf("PCIe host->device        %.1f GB/s per GPU; %.2f GiB per token step; utilisation %.1f%%\n",
              m.link_bytes_per_s / core::kGB, static_cast<double>(m.h2d_bytes_per_pass) / core::kGiB,
              m.pcie_utilization * 100);
  if (m.pcie_bound_tokens_per_s)
    std::printf("PCIe bound               %10.2f tokens/s; decode reaches %.1f%% of it\n", *m.pcie_bound_tokens_per_s,
                m.pcie_bound_fraction ? *m.pcie_bound_fraction * 100 : 0.0);
  if (runtime == "sim")
    std::printf("simulated time           %10.3f s\n", m.elapsed_s);
  else
    std::printf("measured time            %10.3f s   (ran for real on %d %s ranks)\n", m.elapsed_s, c.gpus,
                runtime.c_str());
}

int run_infer(int argc, char** argv) {
  std::set<std::string> valued = cluster_flags();
  valued.insert({"--model", "--policy", "--ring-slots", "--host-memory", "--gpus", "--batch", "--prompt", "--output",
                 "--all-to-all", "--workload", "--replicas", "--preset", "--trace", "--runtime", "--ranks"});
  Args args(argc, argv, 1, valued, {"--json", "--help"});
  if (args.has("--help")) {
    std::printf("%s", kUsage);
    return 0;
  }
  if (!args.positional().empty()) throw core::ConfigError("", args.positional().front(), "unexpected argument");
  const std::string runtime = args.get_or("--runtime", "sim");
  if (runtime != "sim" && runtime != "cpu" && runtime != "cuda")
    throw core::ConfigError("", "--runtime", "expected sim, cpu or cuda, got \"" + runtime + "\"");
  const bool real = runtime != "sim";
  if (args.has("--ranks") && !real)
    throw core::ConfigError("", "--ranks", "applies to --runtime cpu or cuda (the simulator serves on --gpus)");
  if (args.has("--gpus") && real)
    throw core::ConfigError("", "--gpus", "applies to the simulator (real runs take --ranks)");
  if (args.has("--trace") && real)
    throw core::ConfigError("", "--trace", "applies to the simulator (real runs report their summary)");
  if (auto trace = args.get("--trace")) core::check_output_file(*trace, "--trace");
  const int ranks = args.get_int("--ranks", 2);
  if (real && (ranks < 1 || ranks > 64)) throw core::ConfigError("", "--ranks", "expected 1..64 ranks");
  const core::ClusterSpec spec = real ? real_cluster(args, ranks) : infer_cluster(args);
  const core::Calibration cal = calibration_from_args(args, spec);
  const inf::PreparedRun run =
      inf::prepare_run(config_from_args(args, spec.total_gpus(), real), spec, inf::flag_namer());
  inf::InferenceMetrics m;
  nlohmann::json tokens;  // real runs: every rank's sampled tokens, [rank][pass][sequence]
  if (real) {
    const RealInferenceRun r = run_inference_for_real(run.config, spec, runtime);
    m = inf::summarize(run, r.records, r.outcome, host_device_bytes_per_s(spec, cal));
    for (const auto& rec : r.records) tokens.push_back(rec.tokens);
  } else {
    m = simulate_inference(run, spec, cal, args.get_or("--trace", ""));
  }
  if (args.has("--json")) {
    nlohmann::json out = inf::run_to_json(run, m);
    out["cluster"] = spec.name;
    out["runtime"] = runtime;
    if (real) out["tokens"] = tokens;
    std::printf("%s\n", out.dump(1).c_str());
  } else {
    print_human(run, m, spec, runtime);
    if (real) {  // what rank 0's sequences generated (the same under every policy), one sequence after another
      std::string line;
      const auto& passes = tokens.at(0);
      for (std::size_t s = 0; s < passes.at(0).size(); ++s) {
        line += s ? " |" : "";
        for (const auto& pass : passes) line += " " + std::to_string(pass.at(s).get<int>());
      }
      std::printf("tokens (rank 0)         %s\n", line.c_str());
    }
  }
  return 0;
}

const CommandRegistrar kRegistrar("infer",
                                  "MoE text generation with offloading (ring memory, DeepSpeed), simulated or real",
                                  run_infer);

}  // namespace
}  // namespace moesys::cli
