#pragma once
// Everything decided before the simulation starts, shared read-only by all rank programs: the configuration,
// the parallel layout, the routing of every micro-batch, and the memory plan (already checked to fit).
#include <functional>
#include <vector>

#include "core/runtime.hpp"
#include "core/workload.hpp"
#include "policies/training/layout.hpp"
#include "policies/training/memory_plan.hpp"
#include "policies/training/routing_plan.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::policies::training {

/// Text generation with the same program (generation.cpp): forward passes only, one prefill over the prompts and
/// one decode step per further token, a KV cache per layer, greedy sampling feeding the next step. The weights are
/// read-only; where they live is the inference policy:
///   all-in-gpu  experts resident (policy.offload = none), dense parameters resident;
///   moesys      experts in host memory streamed through `slots` GPU slots as a ring (ResidencyStrategy::ring,
///               filled across pass boundaries: the first layers of the next pass load while this one ends);
///   deepspeed   ZeRO-Inference: experts one layer ahead through two slots (layer_ahead) and the dense units'
///               parameters fetched from host memory one unit ahead into two GPU buffers (dense_from_host), the
///               ZeRO-3 unit gathers of training with a host copy in place of the all-gather.
struct GenerationPlan {
  bool enabled = false;
  int sequences = 0;  // per rank, decoded together
  int prompt_tokens = 0, output_tokens = 0;
  bool ring = true;  // offloaded experts (policy.offload = cpu): the ring, else layer_ahead
  int slots = 2;
  bool dense_from_host = false;
  bool pageable = false;  // offloaded weights in pageable host memory (copied through pinned staging)
  std::uint64_t seed = 1;  // of the synthetic prompts
  int passes() const { return output_tokens; }  // the prefill yields the first token
  int context() const { return prompt_tokens + output_tokens; }
  /// Query positions of pass p (the prompt, then one) and the context they attend to.
  int queries(int pass) const { return pass == 0 ? prompt_tokens : 1; }
  int context_at(int pass) const { return pass == 0 ? prompt_tokens : prompt_tokens + pass; }
};

struct TrainingPlan {
  /// The configuration the program runs: its model is the declared one's with_mtp_blocks() (multi-token
  /// prediction modules as last layers); `model` is the model as declared (what reports describe).
  TrainingConfig config;
  core::ModelConfig model;
  Layout layout;
  RoutingPlan routing;  // generation: one "step" per forward pass, one micro-batch each
  MemoryPlan memory;
  GenerationPlan generation;
};

/// Validates the configuration as a whole and plans it. Throws InfeasibleError with the numbers when the
/// experts, ranks or batch do not divide, when the hierarchical all-to-all does not fit the groups, or when
/// any rank's memory does not fit its tiers.
TrainingPlan make_training_plan(const TrainingConfig& c);
/// Fills p.memory by running the training program's allocations for every rank on a ledger-only runtime.
void plan_memory(TrainingPlan& p);

/// Plans a generation run of the program (dense ddp, dropless gate, counted dispatch, expert parallelism over all
/// ranks). `routing[pass][MoE layer]` (ranks x experts token counts) drives the simulator; empty, the plan spreads
/// every token's top-k choices evenly (real runtimes take counts from the gate and only need the plan's sizes).
/// Throws InfeasibleError when the context exceeds the model's positions; p.memory is planned but not checked
/// (check_feasible), so that callers can explain an overflow in their own terms.
TrainingPlan make_generation_plan(TrainingConfig c, GenerationPlan g,
                                  const std::vector<std::vector<core::RoutingMatrix>>& routing = {});

/// What the rank programs count while they run (offload and cache behaviour), one entry per rank.
struct RankCounters {
  std::int64_t expert_fetches = 0;     // expert parameter copies to the GPU
  std::int64_t wasted_fetches = 0;     // fetched but no token came
  std::int64_t on_demand_fetches = 0;  // needed but not prefetched: fetched after the count exchange
  std::int64_t cache_hits = 0, cache_misses = 0, cache_evictions = 0;
  double ssd_read_bytes = 0, ssd_write_bytes = 0;
  double h2d_param_bytes = 0;  // parameter values copied host -> device (expert fills, dense unit fetches)
  std::int64_t replica_refreshes = 0;  // expert copies this rank received from their owners (expert replicas)
  std::vector<double> losses;  // real runtimes: mean training loss of this rank's last micro-batch, per step
  /// Real runtimes: the gate's token counts per expert, [step * micro-batches + micro][MoE layer][expert].
  std::vector<std::vector<std::vector<std::int64_t>>> routing;
  /// Rows this rank's experts computed, per MoE layer run (forward passes, in program order): the per-rank load
  /// whose imbalance the summary reports.
  std::vector<std::int64_t> expert_rows;
  /// Generation: the time each pass's tokens were sampled (the host waits for them, as a serving loop must) and,
  /// on real runtimes, the tokens, [pass][sequence].
  std::vector<double> pass_end_s;
  std::vector<double> pass_h2d_bytes;  // h2d_param_bytes issued by each pass
  std::vector<std::vector<std::int32_t>> generated;
};

/// The per-rank training program (run it on every rank). `counters` must hold one entry per rank and outlive
/// the run; step s's work is bracketed by a phase span named "step s".
std::function<void(core::Runtime&)> training_program(const TrainingPlan& plan, std::vector<RankCounters>& counters);

}  // namespace moesys::policies::training
