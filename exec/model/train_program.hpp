#pragma once
// The training program that `moesys validate` runs on both runtimes: warm-up and measured GPT-MoE steps, each in a
// "step" phase, and the shapes its microbenchmark should measure.
#include <nlohmann/json.hpp>

#include "core/runtime.hpp"
#include "exec/cpu/machine_probe.hpp"
#include "exec/model/gpt_moe.hpp"
#include "exec/model/step_breakdown.hpp"

namespace moesys::exec::model {

void train_steps(core::Runtime& rt, const GptMoeConfig& c, int steps);
/// The expert FFN's GEMM and the dispatch all-to-all of this configuration on `ranks` ranks.
cpu::ProbeShape probe_shape(const GptMoeConfig& c, int ranks);
nlohmann::json to_json(const StepBreakdown& b);
StepBreakdown breakdown_from_json(const nlohmann::json& j);

}  // namespace moesys::exec::model
