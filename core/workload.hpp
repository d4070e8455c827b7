#pragma once
// Token-routing workloads: how many tokens each source rank sends to each expert, per step and per MoE layer.
// The simulator has no real gate, so these models stand in for it (uniform, Zipf-skewed, drifting, multi-task);
// the real executor records its gate's counts as a routing trace that the simulator can replay.
//
// Determinism: every model is a pure function of (its parameters, seed, step, layer); the order of route() calls
// does not matter. Sampling uses std::mt19937_64 and std::binomial_distribution, whose output is fixed for a given
// standard library (libstdc++ here), not across libraries.
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace moesys::core {

/// ranks x experts token counts (one MoE layer, one step), before capacity is applied.
class RoutingMatrix {
 public:
  RoutingMatrix() = default;
  RoutingMatrix(int ranks, int experts);

  int ranks() const { return ranks_; }
  int experts() const { return experts_; }
  std::int64_t& at(int rank, int expert) { return tokens_[index(rank, expert)]; }
  std::int64_t at(int rank, int expert) const { return tokens_[index(rank, expert)]; }
  std::int64_t rank_total(int rank) const;     // tokens a rank sends (row sum)
  std::int64_t expert_load(int expert) const;  // tokens an expert receives (column sum)
  std::vector<std::int64_t> expert_loads() const;
  std::int64_t total() const;
  bool operator==(const RoutingMatrix&) const = default;

 private:
  std::size_t index(int rank, int expert) const;
  int ranks_ = 0, experts_ = 0;
  std::vector<std::int64_t> tokens_;  // row-major: rank, then expert
};

/// Load over experts (column sums). imbalance = max / mean, 1 for a perfectly even (or empty) layer.
struct LoadStats {
  std::int64_t total = 0;
  std::int64_t max_load = 0;
  std::int64_t min_load = 0;
  double mean_load = 0;
  int hottest_expert = 0;
  double imbalance() const { return mean_load > 0 ? static_cast<double>(max_load) / mean_load : 1.0; }
};
LoadStats expert_load_stats(const RoutingMatrix& m);

/// GShard capacity per source rank: each expert keeps at most `capacity` tokens from each rank's micro-batch
/// (see gshard_capacity in model_config.hpp); the rest are dropped (they skip the expert via the residual).
struct CapacityResult {
  RoutingMatrix kept;
  RoutingMatrix dropped;
};
CapacityResult apply_capacity(const RoutingMatrix& m, std::int64_t capacity_per_expert_per_rank);

/// The dimensions every routing model shares. Each rank routes tokens_per_rank * top_k assignments per layer.
struct RoutingShape {
  int ranks = 0;
  int experts = 0;
  int moe_layers = 0;
  std::int64_t tokens_per_rank = 0;
  int top_k = 1;
};

class RoutingModel {
 public:
  virtual ~RoutingModel() = default;
  /// Token counts for MoE layer `layer` (0-based among MoE layers) of step `step` (>= 0).
  virtual RoutingMatrix route(int step, int layer) = 0;
  /// The JSON "kind" this model was built from.
  virtual std::string kind() const = 0;
};

/// Every rank spreads its assignments as evenly as possible; remainders rotate with the rank so that expert
/// totals are even too. No randomness.
class UniformRouting : public RoutingModel {
 public:
  explicit UniformRouting(RoutingShape shape);
  RoutingMatrix route(int step, int layer) override;
  std::string kind() const override { return "uniform"; }

 private:
  RoutingShape shape_;
};

/// Expert popularity ~ 1 / rank^exponent; which expert holds which popularity rank is a per-layer random
/// permutation. With drift d > 0 the ranking rotates: at step t, popularity rank i belongs to expert
/// perm[(i + floor(t * d)) mod E], so the hot set slides through the experts over time.
class ZipfRouting : public RoutingModel {
 public:
  ZipfRouting(RoutingShape shape, double exponent, std::uint64_t seed, double drift_experts_per_step = 0);
  RoutingMatrix route(int step, int layer) override;
  std::string kind() const override { return drift_ > 0 ? "drift" : "zipf"; }
  /// Probability of each expert (by expert id) at a step and layer.
  std::vector<double> expert_probabilities(int step, int layer) const;

 private:
  RoutingShape shape_;
  std::uint64_t seed_;
  double drift_;
  std::vector<double> by_popularity_;          // normalised 1 / (i+1)^s
  std::vector<std::vector<int>> permutation_;  // per layer: popularity rank -> expert
};

/// The most tokens per step one task of a multi-task workload may carry.
constexpr std::int64_t kMaxTaskBatchTokens = std::int64_t{1} << 30;

/// One task of a multi-task workload: its batch (tokens per step, split over the ranks placed on it) and the
/// probability that a token goes to the task's own contiguous block of experts rather than uniformly anywhere.
struct TaskSpec {
  std::string name;
  std::int64_t batch_tokens = 0;
  double affinity = 0;
};

/// Multi-task MoE (the paper's UFO setting): each rank serves one task (placement[rank] = task index); a rank
/// routes its share of its task's batch, so RoutingShape::tokens_per_rank is not used. Task t prefers experts
/// [t*E/T, (t+1)*E/T) (at least one expert).
class MultitaskRouting : public RoutingModel {
 public:
  MultitaskRouting(RoutingShape shape, std::vector<TaskSpec> tasks, std::vector<int> placement, std::uint64_t seed);
  RoutingMatrix route(int step, int layer) override;
  std::string kind() const override { return "multitask"; }

  /// Replaces the placement (e.g. from an elastic policy); every task needs at least one rank.
  /// Throws std::invalid_argument otherwise.
  void set_placement(std::vector<int> placement);
  const std::vector<int>& placement() const { return placement_; }
  const std::vector<TaskSpec>& tasks() const { return tasks_; }
  /// Tokens a rank processes per layer: its even share (remainder to the lowest ranks) of its task's batch.
  std::int64_t tokens_of_rank(int rank) const;
  /// Static placement: ranks split into contiguous, nearly equal blocks, one per task.
  static std::vector<int> block_placement(int ranks, int tasks);

 private:
  RoutingShape shape_;
  std::vector<TaskSpec> tasks_;
  std::vector<int> placement_;
  std::vector<std::int64_t> rank_tokens_;
  std::uint64_t seed_;
};

/// A recorded routing: steps[s][layer] is the matrix of entry s. A real run writes one entry per micro-batch, and
/// the training simulator draws entry step * micro_batches + m for micro-batch m of a step. JSON:
/// {"format":"moesys-routing-trace","version":1,"ranks":R,"experts":E,"layers":L,
///  "steps":[{"step":0,"layers":[{"layer":0,"tokens":[[E ints] x R]}, ...]}, ...]}
struct RoutingTrace {
  int ranks = 0;
  int experts = 0;
  int layers = 0;
  std::vector<std::vector<RoutingMatrix>> steps;
};
nlohmann::json routing_trace_to_json(const RoutingTrace& t);
/// Validates shape and contents; errors are ConfigError(file, json path, ...).
RoutingTrace parse_routing_trace(const nlohmann::json& j, const std::string& file);
RoutingTrace read_routing_trace(const std::string& path);
/// Writes through a temporary file renamed into place; throws RuntimeFailure on I/O errors.
void write_routing_trace(const std::string& path, const RoutingTrace& t);

/// How a trace meets a run of another shape. kExact: the run must have the trace's ranks, experts and MoE layers.
/// kTile: the run keeps the trace's experts (their identities carry the skew) and may have any number of ranks
/// and MoE layers: run rank r replays trace row r mod R, MoE layer l trace layer l mod L, and every row is rescaled
/// to the run's assignments per rank (tokens_per_rank * top_k) by largest remainders, so the share of each expert
/// in a rank's row is the recorded one up to one token.
enum class TraceFit { kExact, kTile };

/// Replays a trace, wrapping around: step s uses the trace's step (first_step + s) mod (number of steps).
class TraceRouting : public RoutingModel {
 public:
  explicit TraceRouting(RoutingTrace trace, TraceFit fit = TraceFit::kExact, RoutingShape run = {},
                        int first_step = 0);
  RoutingMatrix route(int step, int layer) override;
  std::string kind() const override { return "trace"; }

 private:
  RoutingTrace trace_;
  TraceFit fit_;
  RoutingShape run_;
  int first_step_;
};

/// One row of counts rescaled to `total` by largest remainders (ties to the lower index); the row's sum must be
/// positive. Exact: the result sums to `total`, and each entry is within one of count * total / sum.
std::vector<std::int64_t> rescale_counts(const std::vector<std::int64_t>& counts, std::int64_t total);

/// Builds a routing model from a workload object (base_path names it in errors, e.g. "workload"):
///   {"kind":"uniform"}
///   {"kind":"zipf","exponent":1.2,"seed":1}
///   {"kind":"drift","exponent":1.2,"seed":1,"drift_experts_per_step":1}
///   {"kind":"multitask","tasks":[{"name":"a","batch":512,"affinity":0.8}, ...],"placement":[0,1,...],"seed":1}
///   {"kind":"trace","file":"path.json","fit":"exact"|"tile","first_step":0}
/// seed defaults to 1, affinity to 0, placement to MultitaskRouting::block_placement. A relative trace path is
/// looked up beside `file` first, then from the working directory. With fit "exact" (the default) a trace whose
/// ranks, experts or layers differ from the run's is a ConfigError naming that field of the trace file; with
/// "tile" only experts must match, and a row with no tokens (it cannot be rescaled) is a ConfigError naming it.
std::unique_ptr<RoutingModel> make_routing_model(const nlohmann::json& j, const std::string& file,
                                                 const std::string& base_path, int ranks, int experts, int moe_layers,
                                                 std::int64_t tokens_per_rank, int top_k);

}  // namespace moesys::core
