// `moesys infer`: simulates text generation (prefill + decode with a KV cache) of an MoE model under a memory
// policy and reports throughput, time per output token, peak GPU memory and PCIe use.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/cluster_options.hpp"
#include "cli/command.hpp"
#include "studies/inference_study.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"
#include "core/units.hpp"

namespace moesys::cli {
using namespace moesys::studies;  // study drivers and real-run launchers
namespace {

namespace inf = policies::inference;

const char* kUsage =
    "usage: moesys infer [--model gpt-moe-<E>e|FILE] [--policy all-in-gpu|deepspeed|moesys] [--ring-slots K]\n"
    "                    [--host-memory pinned|pageable] [--gpus N] [--batch B] [--prompt P] [--output O]\n"
    "                    [--all-to-all flat|hierarchical] [--workload FILE|JSON] [--preset LABEL]\n"
    "                    [--cluster FILE | --nodes N --gpus-per-node G --nics-per-node K --nic-gbps B --gpu ...]\n"
    "                    [--calibration FILE] [--trace FILE] [--json]\n"
    "Without cluster flags: one A100-SXM4-40GB. Defaults: gpt-moe-16e, moesys with K = 2, batch 8 per GPU,\n"
    "prompt 128, output 32, hierarchical all-to-all, uniform routing. deepspeed defaults to pageable memory.\n";

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

inf::InferenceConfig config_from_args(const Args& args, int cluster_gpus) {
  const inf::FieldNamer names = inf::flag_namer();
  inf::InferenceConfig c;
  const std::string model = args.get_or("--model", "gpt-moe-16e");
  if (!inf::model_preset(model, c.model)) {
    std::error_code no_file;  // a name too long for the file system is no file either, not a failure
    if (!core::is_inline_json(model) && !std::filesystem::exists(model, no_file))
      throw core::ConfigError(
          "", "--model",
          "unknown model preset \"" + model + "\" and no such file (presets: gpt-moe-<E>e, e.g. gpt-moe-16e)");
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
  c.batch = args.get_int("--batch", c.batch);
  c.prompt_tokens = args.get_int("--prompt", c.prompt_tokens);
  c.output_tokens = args.get_int("--output", c.output_tokens);
  c.all_to_all = inf::parse_all_to_all(args.get_or("--all-to-all", "hierarchical"), names);
  if (auto w = args.get("--workload")) c.workload = core::read_json_flag("--workload", *w);
  return c;
}

void print_human(const inf::PreparedRun& run, const inf::InferenceMetrics& m, const core::ClusterSpec& spec) {
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
  std::printf("simulated time           %10.3f s\n", m.elapsed_s);
}

int run_infer(int argc, char** argv) {
  std::set<std::string> valued = cluster_flags();
  valued.insert({"--model", "--policy", "--ring-slots", "--host-memory", "--gpus", "--batch", "--prompt", "--output",
                 "--all-to-all", "--workload", "--preset", "--trace"});
  Args args(argc, argv, 1, valued, {"--json", "--help"});
  if (args.has("--help")) {
    std::printf("%s", kUsage);
    return 0;
  }
  if (!args.positional().empty()) throw core::ConfigError("", args.positional().front(), "unexpected argument");
  if (auto trace = args.get("--trace")) core::check_output_file(*trace, "--trace");
  const core::ClusterSpec spec = infer_cluster(args);
  const core::Calibration cal = calibration_from_args(args);
  const inf::PreparedRun run = inf::prepare_run(config_from_args(args, spec.total_gpus()), spec, inf::flag_namer());
  const inf::InferenceMetrics m = simulate_inference(run, spec, cal, args.get_or("--trace", ""));
  if (args.has("--json")) {
    nlohmann::json out = inf::run_to_json(run, m);
    out["cluster"] = spec.name;
    std::printf("%s\n", out.dump(1).c_str());
  } else {
    print_human(run, m, spec);
  }
  return 0;
}

const CommandRegistrar kRegistrar("infer", "simulate MoE text generation with offloading (ring memory, DeepSpeed)",
                                  run_infer);

}  // namespace
}  // namespace moesys::cli
