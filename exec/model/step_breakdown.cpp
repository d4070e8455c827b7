#include "exec/model/step_breakdown.hpp"

namespace moesys::exec::model {

std::string span_category(const core::Span& s) {
  if (s.kind == core::SpanKind::copy) return "copy";
  const auto cut = s.name.find_first_of(":/");
  std::string c = cut == std::string::npos ? s.name : s.name.substr(0, cut);
  // The simulator spells collectives as nccl-tests does.
  if (c == "allreduce") return "all_reduce";
  if (c == "alltoall") return "all_to_all";
  if (c == "allgather") return "all_gather";
  if (c == "reducescatter") return "reduce_scatter";
  return c;
}

StepBreakdown step_breakdown(const std::vector<core::Span>& spans, int skip) {
  std::vector<const core::Span*> steps;
  for (const auto& s : spans)
    if (s.kind == core::SpanKind::phase && s.name == "step") steps.push_back(&s);
  StepBreakdown b;
  for (std::size_t i = static_cast<std::size_t>(skip); i < steps.size(); ++i) {
    const core::Span& st = *steps[i];
    ++b.steps;
    b.step_s += st.duration_s();
    for (const auto& s : spans)
      if (s.kind != core::SpanKind::phase && s.start_s >= st.start_s && s.end_s <= st.end_s)
        b.phase_s[span_category(s)] += s.duration_s(), b.op_s[s.name] += s.duration_s();
  }
  if (b.steps > 0) {
    b.step_s /= b.steps;
    for (auto& [k, v] : b.phase_s) v /= b.steps;
    for (auto& [k, v] : b.op_s) v /= b.steps;
  }
  return b;
}

}  // namespace moesys::exec::model
