#pragma once
// Per-phase breakdown of training steps from a rank's spans, the same for simulated and measured runs: the time of
// each "step" phase span, and within the steps the busy time per category. A kernel named "cat:detail" counts
// under "cat"; collectives under their operation ("all_to_all", "all_reduce", ...); copies under "copy".
#include <map>
#include <string>
#include <vector>

#include "core/trace.hpp"

namespace moesys::exec::model {

struct StepBreakdown {
  int steps = 0;
  double step_s = 0;                      // mean step time
  std::map<std::string, double> phase_s;  // mean busy time per step and category
  std::map<std::string, double> op_s;     // mean busy time per step and operation name
};

/// Uses the "step" phase spans after the first `skip` (warm-up) steps.
StepBreakdown step_breakdown(const std::vector<core::Span>& spans, int skip);

std::string span_category(const core::Span& s);

}  // namespace moesys::exec::model
