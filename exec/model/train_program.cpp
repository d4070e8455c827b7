#include "exec/model/train_program.hpp"

#include "core/model_config.hpp"

namespace moesys::exec::model {

void train_steps(core::Runtime& rt, const GptMoeConfig& c, int steps) {
  GptMoe gpt(rt, c);
  std::vector<int> ids, targets;
  for (int s = 0; s < steps; ++s) {
    synthetic_batch(c, rt.rank(), s, ids, targets);
    gpt.set_batch(ids, targets);
    rt.synchronize();
    rt.begin_phase("step");
    gpt.train_step();
    rt.synchronize();
    rt.end_phase();
  }
}

cpu::ProbeShape probe_shape(const GptMoeConfig& c, int ranks) {
  cpu::ProbeShape s;
  const std::int64_t C = core::gshard_capacity(c.tokens(), c.top_k, c.experts, c.capacity_factor);
  s.gemm_m = C * ranks, s.gemm_n = std::int64_t{c.hidden} * c.ffn_multiplier, s.gemm_k = c.hidden;
  s.all_to_all_bytes = static_cast<std::uint64_t>(C * c.experts * c.hidden * 4);
  s.tokens = c.tokens(), s.hidden = c.hidden, s.vocab = c.vocab, s.ffn = std::int64_t{c.hidden} * c.ffn_multiplier;
  return s;
}

nlohmann::json to_json(const StepBreakdown& b) {
  return {{"steps", b.steps}, {"step_s", b.step_s}, {"phase_s", b.phase_s}, {"op_s", b.op_s}};
}

StepBreakdown breakdown_from_json(const nlohmann::json& j) {
  StepBreakdown b;
  b.steps = j.at("steps").get<int>();
  b.step_s = j.at("step_s").get<double>();
  b.phase_s = j.at("phase_s").get<std::map<std::string, double>>();
  b.op_s = j.value("op_s", std::map<std::string, double>{});
  return b;
}

}  // namespace moesys::exec::model
