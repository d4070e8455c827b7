#pragma once
// The search behind `moesys tune`: a declared space of training settings (dimensions, each a dotted path into a
// training config and the values to try), and two strategies over it:
//   grid     every point;
//   descent  coordinate descent: from the first value of every dimension, sweep one dimension at a time (the
//            other settings fixed at the best point so far) and move to its best value; repeat the sweeps until one
//            changes nothing. Points already simulated are not simulated again.
// Points are scored by simulated tokens/s; a point the cluster cannot hold (InfeasibleError: memory, layout) is
// recorded as infeasible and never chosen. The throughput-memory Pareto front is over the feasible points.
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moesys::studies {

struct TuneDimension {
  std::string path;                  // e.g. "policy.overlap_chunks", "parallel.ep", "policy.replicas"
  std::vector<nlohmann::json> values;
};

struct TuneSpace {
  nlohmann::json base;  // a training config
  std::vector<TuneDimension> dims;
  std::size_t grid_size() const;
  /// The base config with point[d] of every dimension d set at its path (objects created as needed).
  nlohmann::json config_at(const std::vector<std::size_t>& point) const;
  /// "overlap_chunks=4 replicas={"kind":"eplb","slots":1}": the point's settings, by the last part of each path.
  std::string describe(const std::vector<std::size_t>& point) const;
};

/// Parses {"base": {...}, "space": {"path": [values...], ...}}; ConfigError(file, "space.<path>", ...) for an empty
/// space, an empty or repeated value list, or a path that is not a dotted chain of names.
TuneSpace parse_tune_space(const nlohmann::json& spec, const std::string& file);

struct TunePoint {
  std::vector<std::size_t> point;
  bool feasible = false;
  double tokens_per_s = 0, peak_hbm_gib = 0, step_s = 0;
  std::string error;  // why it is infeasible
};

/// Simulates a batch of points (at once where it can) and returns their results in the same order.
using TuneEvaluator = std::function<std::vector<TunePoint>(const std::vector<std::vector<std::size_t>>&)>;

/// Runs a strategy ("grid" or "descent") and returns every evaluated point in evaluation order.
std::vector<TunePoint> tune_search(const TuneSpace& space, const std::string& strategy, const TuneEvaluator& evaluate);

/// The feasible point with the most tokens/s (ties: the earlier); nullptr when none is feasible.
const TunePoint* best_point(const std::vector<TunePoint>& points);
/// The feasible points no other feasible point beats on both tokens/s and peak HBM, by peak HBM.
std::vector<TunePoint> pareto_front(const std::vector<TunePoint>& points);

}  // namespace moesys::studies
