// Plans a generation run of the per-rank program: the layout (expert parallelism over every rank), one routing
// "step" per forward pass, and the memory plan from running the generation's own allocations on the ledger.
#include <stdexcept>
#include <string>

#include "core/error.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::training {

namespace {

/// Every rank's top-k assignments spread evenly over the experts (the sizes real runs plan with).
core::RoutingMatrix even_routing(const Layout& l, std::int64_t tokens, int top_k) {
  core::RoutingMatrix m(l.world, l.experts);
  const std::int64_t n = tokens * top_k;
  for (int r = 0; r < l.world; ++r)
    for (int e = 0; e < l.experts; ++e) m.at(r, e) = n / l.experts + (e < n % l.experts ? 1 : 0);
  return m;
}

}  // namespace

TrainingPlan make_generation_plan(TrainingConfig c, GenerationPlan g,
                                  const std::vector<std::vector<core::RoutingMatrix>>& routing) {
  g.enabled = true;
  if (g.sequences < 1 || g.prompt_tokens < 1 || g.output_tokens < 1)
    throw core::InfeasibleError("generation needs at least one sequence, one prompt token and one output token");
  if (g.context() > c.model.seq_len)
    throw core::InfeasibleError("a context of " + std::to_string(g.context()) + " tokens (prompt " +
                                std::to_string(g.prompt_tokens) + " + output " + std::to_string(g.output_tokens) +
                                ") exceeds the model's " + std::to_string(c.model.seq_len) + " positions");
  if (g.slots < 1) throw core::InfeasibleError("expert residency needs at least one GPU slot");
  // Inference keeps every routed token (no capacity), sends exactly the rows routed, and replicates the dense
  // weights (read-only: nothing to reduce or shard).
  c.policy.gate = Gate::dropless;
  c.policy.dispatch = Dispatch::counts;
  c.policy.overlap_chunks = 1;
  if (c.policy.dispatcher != Dispatcher::deepep) c.policy.dispatcher = Dispatcher::all_to_all;
  c.policy.dense = DenseSharding::ddp;
  c.policy.grad_overlap = false;
  c.policy.embedding = Embedding::dense;
  c.policy.placement = Placement::static_blocks;
  if (c.policy.offload == Offload::nvme) throw core::InfeasibleError("generation offloads experts to host memory only");
  if (c.context_parallel > 1)
    throw core::InfeasibleError("generation does not run context parallelism (its passes keep every token on one rank)");
  if (c.tensor_parallel > 1)
    throw core::InfeasibleError("generation does not run tensor parallelism (its passes keep every token on one rank)");
  c.expert_parallel = c.gpus;
  c.expert_tensor_parallel = 1;
  c.steps = g.passes();

  TrainingPlan p;
  p.config = c;
  p.model = c.model;
  p.generation = g;
  p.layout = make_layout(c);
  const Layout& l = p.layout;
  if (!routing.empty() && static_cast<int>(routing.size()) < g.passes())
    throw std::invalid_argument("generation routing has fewer passes than the run");
  std::vector<std::int64_t> tokens;
  std::vector<std::vector<core::RoutingMatrix>> passes;
  for (int pass = 0; pass < g.passes(); ++pass) {
    tokens.push_back(std::int64_t{g.sequences} * g.queries(pass));
    std::vector<core::RoutingMatrix>& layers = passes.emplace_back();
    for (int moe = 0; moe < c.model.moe_layers(); ++moe)
      layers.push_back(routing.empty() ? even_routing(l, tokens.back(), c.model.top_k)
                                       : routing[static_cast<std::size_t>(pass)][static_cast<std::size_t>(moe)]);
  }
  RoutingPlan& rp = p.routing;
  rp = build_generation_routing(c, l, tokens, passes);
  rp.tokens_per_step = std::int64_t{g.sequences} * l.world;
  rp.sequences_per_step = rp.tokens_per_step;
  plan_memory(p);  // the caller judges it (check_feasible, or the inference policies' own messages)
  return p;
}

}  // namespace moesys::policies::training
