#include "policies/inference/program.hpp"

#include <memory>

#include "policies/inference/policies.hpp"

namespace moesys::policies::inference {

training::TrainingConfig program_config(const InferenceConfig& c, const core::ClusterSpec& spec) {
  training::TrainingConfig t;
  t.file = "";
  t.model = c.model;
  t.cluster = spec;
  t.gpus = c.gpus;
  t.expert_parallel = c.gpus;
  t.policy.all_to_all = c.all_to_all == core::CollectiveAlgo::hierarchical ? training::AllToAll::hierarchical
                                                                           : training::AllToAll::flat;
  // DeepEP: its normal kernels for the prefill, its low-latency ones for the decode passes (generation.cpp).
  if (c.all_to_all == core::CollectiveAlgo::deepep) t.policy.dispatcher = training::Dispatcher::deepep;
  training::GenerationPlan unused;
  policy_info(c.policy).configure(c, t.policy, unused);
  t.policy.replicas = c.replicas;
  return t;
}

training::GenerationPlan generation_settings(const InferenceConfig& c) {
  training::GenerationPlan g;
  g.sequences = c.batch;
  g.prompt_tokens = c.prompt_tokens;
  g.output_tokens = c.output_tokens;
  training::TrainingPolicy unused;
  policy_info(c.policy).configure(c, unused, g);
  return g;
}

PreparedRun prepare_run(const InferenceConfig& c, const core::ClusterSpec& spec, const FieldNamer& names) {
  validate(c, names, spec.total_gpus());
  PreparedRun run{c, weight_sizes(c), make_routing(c, names.file, names.path("workload")), {}, {}};
  run.program = plan_program(c, spec, run.routing);
  run.plan = check_memory(run.program, c, run.sizes, spec);
  return run;
}

std::function<void(core::Runtime&)> generation_program(const PreparedRun& run, std::vector<RankRecord>& records) {
  auto counters = std::make_shared<std::vector<training::RankCounters>>(static_cast<std::size_t>(run.config.gpus));
  auto program = training::training_program(run.program, *counters);
  return [counters, program, &records](core::Runtime& rt) {
    program(rt);
    const training::RankCounters& c = counters->at(static_cast<std::size_t>(rt.rank()));
    records.at(static_cast<std::size_t>(rt.rank())) =
        RankRecord{c.pass_end_s, static_cast<std::uint64_t>(c.h2d_param_bytes), c.pass_h2d_bytes, c.generated};
  };
}

}  // namespace moesys::policies::inference
