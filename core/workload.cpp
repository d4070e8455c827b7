#include "core/workload.hpp"

#include "core/json_reader.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"

namespace moesys::core {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------------------------
// RoutingMatrix, statistics, capacity

RoutingMatrix::RoutingMatrix(int ranks, int experts) : ranks_(ranks), experts_(experts) {
  if (ranks < 0 || experts < 0) throw std::invalid_argument("RoutingMatrix: negative dimension");
  tokens_.assign(static_cast<std::size_t>(ranks) * static_cast<std::size_t>(experts), 0);
}

std::size_t RoutingMatrix::index(int rank, int expert) const {
  if (rank < 0 || rank >= ranks_ || expert < 0 || expert >= experts_)
    throw std::out_of_range("RoutingMatrix: (" + std::to_string(rank) + ", " + std::to_string(expert) + ") outside " +
                            std::to_string(ranks_) + " x " + std::to_string(experts_));
  return static_cast<std::size_t>(rank) * static_cast<std::size_t>(experts_) + static_cast<std::size_t>(expert);
}

std::int64_t RoutingMatrix::rank_total(int rank) const {
  std::int64_t sum = 0;
  for (int e = 0; e < experts_; ++e) sum += at(rank, e);
  return sum;
}

std::int64_t RoutingMatrix::expert_load(int expert) const {
  std::int64_t sum = 0;
  for (int r = 0; r < ranks_; ++r) sum += at(r, expert);
  return sum;
}

std::vector<std::int64_t> RoutingMatrix::expert_loads() const {
  std::vector<std::int64_t> loads(static_cast<std::size_t>(experts_), 0);
  for (int r = 0; r < ranks_; ++r)
    for (int e = 0; e < experts_; ++e) loads[static_cast<std::size_t>(e)] += at(r, e);
  return loads;
}

std::int64_t RoutingMatrix::total() const {
  std::int64_t sum = 0;
  for (std::int64_t t : tokens_) sum += t;
  return sum;
}

LoadStats expert_load_stats(const RoutingMatrix& m) {
  LoadStats s;
  std::vector<std::int64_t> loads = m.expert_loads();
  if (loads.empty()) return s;
  auto hottest = std::max_element(loads.begin(), loads.end());
  s.hottest_expert = static_cast<int>(hottest - loads.begin());
  s.max_load = *hottest;
  s.min_load = *std::min_element(loads.begin(), loads.end());
  for (std::int64_t l : loads) s.total += l;
  s.mean_load = static_cast<double>(s.total) / static_cast<double>(loads.size());
  return s;
}

CapacityResult apply_capacity(const RoutingMatrix& m, std::int64_t capacity_per_expert_per_rank) {
  if (capacity_per_expert_per_rank < 0) throw std::invalid_argument("apply_capacity: negative capacity");
  CapacityResult out{RoutingMatrix(m.ranks(), m.experts()), RoutingMatrix(m.ranks(), m.experts())};
  for (int r = 0; r < m.ranks(); ++r) {
    for (int e = 0; e < m.experts(); ++e) {
      std::int64_t kept = std::min(m.at(r, e), capacity_per_expert_per_rank);
      out.kept.at(r, e) = kept;
      out.dropped.at(r, e) = m.at(r, e) - kept;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// One independent stream per (seed, parts...): route() results do not depend on the order of calls.
std::mt19937_64 stream(std::uint64_t seed, std::initializer_list<std::uint64_t> parts) {
  std::uint64_t h = splitmix64(seed);
  for (std::uint64_t p : parts) h = splitmix64(h ^ p);
  return std::mt19937_64(h);
}

constexpr std::uint64_t kPermutationSalt = 0x7065726dULL;  // separates permutation streams from route streams

/// Multinomial draw of n items over probabilities p (need not be normalised) by sequential binomials, so the
/// counts always sum to n exactly. Requires positive total mass when n > 0.
std::vector<std::int64_t> multinomial(std::mt19937_64& rng, std::int64_t n, const std::vector<double>& p) {
  std::size_t k = p.size();
  std::vector<std::int64_t> out(k, 0);
  std::vector<double> suffix(k + 1, 0.0);
  for (std::size_t i = k; i-- > 0;) suffix[i] = p[i] + suffix[i + 1];
  std::int64_t left = n;
  for (std::size_t i = 0; i < k && left > 0; ++i) {
    if (p[i] <= 0) continue;
    double q = p[i] / suffix[i];  // <= 1; exactly 1 for the last expert with mass
    std::int64_t x = q >= 1.0 ? left : std::binomial_distribution<std::int64_t>(left, q)(rng);
    out[i] = x;
    left -= x;
  }
  if (left > 0) throw std::logic_error("multinomial: no probability mass");
  return out;
}

/// Counts of tokens * top_k assignments from one rank. A token's top_k experts are distinct, so no expert can get
/// more than `tokens` of them; the multinomial ignores that, so any excess is re-drawn among the experts that still
/// have room (water-filling). Each round fills at least one expert, so it ends within `experts` rounds.
std::vector<std::int64_t> sample_assignments(std::mt19937_64& rng, std::int64_t tokens, int top_k,
                                             std::vector<double> p) {
  std::vector<std::int64_t> counts = multinomial(rng, tokens * top_k, p);
  for (;;) {
    std::int64_t excess = 0;
    for (std::size_t e = 0; e < counts.size(); ++e) {
      if (counts[e] < tokens) continue;
      excess += counts[e] - tokens;
      counts[e] = tokens;
      p[e] = 0;
    }
    if (excess == 0) return counts;
    bool has_mass = std::any_of(p.begin(), p.end(), [](double x) { return x > 0; });
    for (std::size_t e = 0; e < counts.size() && !has_mass; ++e) p[e] = counts[e] < tokens ? 1.0 : 0.0;
    std::vector<std::int64_t> extra = multinomial(rng, excess, p);
    for (std::size_t e = 0; e < counts.size(); ++e) counts[e] += extra[e];
  }
}

void check_shape(const RoutingShape& s) {
  if (s.ranks <= 0 || s.experts <= 0 || s.moe_layers < 0 || s.tokens_per_rank < 0 || s.top_k <= 0 ||
      s.top_k > s.experts)
    throw std::invalid_argument(
        "RoutingShape: need ranks, experts, top_k > 0, top_k <= experts, "
        "moe_layers and tokens_per_rank >= 0");
}

void check_step_layer(int step, int layer, int layers) {
  if (step < 0 || layer < 0 || layer >= layers)
    throw std::out_of_range("route: step " + std::to_string(step) + ", layer " + std::to_string(layer) +
                            " outside [0, " + std::to_string(layers) + ")");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Models

UniformRouting::UniformRouting(RoutingShape shape) : shape_(shape) {
  check_shape(shape_);
}

RoutingMatrix UniformRouting::route(int step, int layer) {
  check_step_layer(step, layer, shape_.moe_layers);
  RoutingMatrix m(shape_.ranks, shape_.experts);
  std::int64_t total = shape_.tokens_per_rank * shape_.top_k, experts = shape_.experts;
  std::int64_t base = total / experts, remainder = total % experts;
  for (int r = 0; r < shape_.ranks; ++r) {
    std::int64_t offset = (r * remainder) % experts;  // rank r's extra tokens continue where rank r-1's ended
    for (int e = 0; e < shape_.experts; ++e) m.at(r, e) = base;
    for (std::int64_t i = 0; i < remainder; ++i) m.at(r, static_cast<int>((offset + i) % experts)) += 1;
  }
  return m;
}

ZipfRouting::ZipfRouting(RoutingShape shape, double exponent, std::uint64_t seed, double drift_experts_per_step)
    : shape_(shape), seed_(seed), drift_(drift_experts_per_step) {
  check_shape(shape_);
  if (!(exponent >= 0) || !std::isfinite(exponent)) throw std::invalid_argument("ZipfRouting: exponent < 0");
  if (!(drift_ >= 0) || !std::isfinite(drift_)) throw std::invalid_argument("ZipfRouting: drift < 0");
  double sum = 0;
  for (int i = 0; i < shape_.experts; ++i) sum += by_popularity_.emplace_back(std::pow(i + 1.0, -exponent));
  for (double& p : by_popularity_) p /= sum;
  for (int l = 0; l < shape_.moe_layers; ++l) {
    std::vector<int> perm(static_cast<std::size_t>(shape_.experts));
    for (int e = 0; e < shape_.experts; ++e) perm[static_cast<std::size_t>(e)] = e;
    // Hand-written Fisher-Yates: std::shuffle's algorithm is not specified by the standard.
    std::mt19937_64 rng = stream(seed_, {kPermutationSalt, static_cast<std::uint64_t>(l)});
    for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng() % i]);
    permutation_.push_back(std::move(perm));
  }
}

std::vector<double> ZipfRouting::expert_probabilities(int step, int layer) const {
  check_step_layer(step, layer, shape_.moe_layers);
  std::size_t experts = by_popularity_.size();
  auto shift = static_cast<std::size_t>(std::floor(step * drift_)) % experts;
  const std::vector<int>& perm = permutation_[static_cast<std::size_t>(layer)];
  std::vector<double> p(experts, 0.0);
  for (std::size_t i = 0; i < experts; ++i)
    p[static_cast<std::size_t>(perm[(i + shift) % experts])] = by_popularity_[i];
  return p;
}

RoutingMatrix ZipfRouting::route(int step, int layer) {
  std::vector<double> p = expert_probabilities(step, layer);
  RoutingMatrix m(shape_.ranks, shape_.experts);
  for (int r = 0; r < shape_.ranks; ++r) {
    std::mt19937_64 rng = stream(
        seed_, {static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(r)});
    std::vector<std::int64_t> counts = sample_assignments(rng, shape_.tokens_per_rank, shape_.top_k, p);
    for (int e = 0; e < shape_.experts; ++e) m.at(r, e) = counts[static_cast<std::size_t>(e)];
  }
  return m;
}

MultitaskRouting::MultitaskRouting(RoutingShape shape, std::vector<TaskSpec> tasks, std::vector<int> placement,
                                   std::uint64_t seed)
    : shape_(shape), tasks_(std::move(tasks)), seed_(seed) {
  check_shape(shape_);
  if (tasks_.empty()) throw std::invalid_argument("MultitaskRouting: no tasks");
  for (const TaskSpec& t : tasks_)
    if (t.batch_tokens <= 0 || !(t.affinity >= 0 && t.affinity <= 1))
      throw std::invalid_argument("MultitaskRouting: task '" + t.name + "' needs batch > 0 and affinity in [0, 1]");
  set_placement(std::move(placement));
}

std::vector<int> MultitaskRouting::block_placement(int ranks, int tasks) {
  std::vector<int> placement;
  for (int r = 0; r < ranks; ++r) placement.push_back(static_cast<int>(std::int64_t{r} * tasks / ranks));
  return placement;
}

void MultitaskRouting::set_placement(std::vector<int> placement) {
  int task_count = static_cast<int>(tasks_.size());
  if (static_cast<int>(placement.size()) != shape_.ranks)
    throw std::invalid_argument("MultitaskRouting: placement needs one task per rank");
  std::vector<std::int64_t> ranks_of(tasks_.size(), 0), seen(tasks_.size(), 0);
  for (int t : placement) {
    if (t < 0 || t >= task_count) throw std::invalid_argument("MultitaskRouting: placement names no task");
    ++ranks_of[static_cast<std::size_t>(t)];
  }
  for (std::size_t t = 0; t < tasks_.size(); ++t)
    if (ranks_of[t] == 0) throw std::invalid_argument("MultitaskRouting: task '" + tasks_[t].name + "' has no rank");
  placement_ = std::move(placement);
  rank_tokens_.clear();
  for (int t : placement_) {
    auto ti = static_cast<std::size_t>(t);
    std::int64_t batch = tasks_[ti].batch_tokens, n = ranks_of[ti];
    rank_tokens_.push_back(batch / n + (seen[ti]++ < batch % n ? 1 : 0));
  }
}

std::int64_t MultitaskRouting::tokens_of_rank(int rank) const {
  return rank_tokens_.at(static_cast<std::size_t>(rank));
}

RoutingMatrix MultitaskRouting::route(int step, int layer) {
  check_step_layer(step, layer, shape_.moe_layers);
  std::int64_t experts = shape_.experts, task_count = static_cast<std::int64_t>(tasks_.size());
  RoutingMatrix m(shape_.ranks, shape_.experts);
  for (int r = 0; r < shape_.ranks; ++r) {
    int t = placement_[static_cast<std::size_t>(r)];
    const TaskSpec& task = tasks_[static_cast<std::size_t>(t)];
    std::int64_t lo = t * experts / task_count, hi = std::max(lo + 1, (t + 1) * experts / task_count);
    std::vector<double> p(static_cast<std::size_t>(experts), (1.0 - task.affinity) / static_cast<double>(experts));
    for (std::int64_t e = lo; e < hi; ++e)
      p[static_cast<std::size_t>(e)] += task.affinity / static_cast<double>(hi - lo);
    std::mt19937_64 rng = stream(
        seed_, {static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(r)});
    std::vector<std::int64_t> counts =
        sample_assignments(rng, rank_tokens_[static_cast<std::size_t>(r)], shape_.top_k, p);
    for (int e = 0; e < shape_.experts; ++e) m.at(r, e) = counts[static_cast<std::size_t>(e)];
  }
  return m;
}

std::vector<std::int64_t> rescale_counts(const std::vector<std::int64_t>& counts, std::int64_t total) {
  __extension__ using Wide = __int128;
  Wide wide_sum = 0;
  for (std::int64_t c : counts) {
    if (c < 0) throw std::invalid_argument("rescale_counts: negative count");
    wide_sum += c;
  }
  if (wide_sum <= 0 || wide_sum > INT64_MAX || total < 0)
    throw std::invalid_argument("rescale_counts: need a row sum in (0, 2^63) and total >= 0");
  const auto sum = static_cast<std::int64_t>(wide_sum);
  // Exact integer shares: floor(c * total / sum) with the remainder kept for the largest-remainder pass.
  std::vector<std::int64_t> out(counts.size());
  std::vector<std::pair<std::int64_t, std::size_t>> remainders;  // (remainder, index)
  std::int64_t given = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    // count x total may pass 2^63; with count <= sum the quotient is at most total and the remainder below sum
    Wide scaled = static_cast<Wide>(counts[i]) * total;
    out[i] = static_cast<std::int64_t>(scaled / sum);
    given += out[i];
    remainders.emplace_back(static_cast<std::int64_t>(scaled % sum), i);
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::int64_t k = 0; k < total - given; ++k) out[remainders[static_cast<std::size_t>(k)].second] += 1;
  return out;
}

TraceRouting::TraceRouting(RoutingTrace trace, TraceFit fit, RoutingShape run, int first_step)
    : trace_(std::move(trace)), fit_(fit), run_(run), first_step_(first_step) {
  if (trace_.steps.empty()) throw std::invalid_argument("TraceRouting: empty trace");
  if (first_step_ < 0) throw std::invalid_argument("TraceRouting: negative first step");
  if (fit_ == TraceFit::kTile) {
    check_shape(run_);
    if (run_.experts != trace_.experts) throw std::invalid_argument("TraceRouting: tiling needs the trace's experts");
  }
}

RoutingMatrix TraceRouting::route(int step, int layer) {
  std::size_t at = (static_cast<std::size_t>(first_step_) + static_cast<std::size_t>(step)) % trace_.steps.size();
  if (fit_ == TraceFit::kExact) {
    check_step_layer(step, layer, trace_.layers);
    return trace_.steps[at][static_cast<std::size_t>(layer)];
  }
  check_step_layer(step, layer, run_.moe_layers);
  const RoutingMatrix& recorded = trace_.steps[at][static_cast<std::size_t>(layer % trace_.layers)];
  RoutingMatrix m(run_.ranks, run_.experts);
  std::vector<std::int64_t> row(static_cast<std::size_t>(run_.experts));
  for (int r = 0; r < run_.ranks; ++r) {
    for (int e = 0; e < run_.experts; ++e) row[static_cast<std::size_t>(e)] = recorded.at(r % trace_.ranks, e);
    std::vector<std::int64_t> scaled = rescale_counts(row, run_.tokens_per_rank * run_.top_k);
    for (int e = 0; e < run_.experts; ++e) m.at(r, e) = scaled[static_cast<std::size_t>(e)];
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// JSON

namespace {

using ObjectReader = JsonObjectReader;

std::string indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

RoutingMatrix parse_tokens(const json& j, const std::string& file, const std::string& path, int ranks, int experts) {
  if (!j.is_array() || j.size() != static_cast<std::size_t>(ranks))
    throw ConfigError(file, path, "expected an array of " + std::to_string(ranks) + " rows (one per rank)");
  RoutingMatrix m(ranks, experts);
  for (std::size_t r = 0; r < j.size(); ++r) {
    const json& row = j[r];
    if (!row.is_array() || row.size() != static_cast<std::size_t>(experts))
      throw ConfigError(file, indexed(path, r), "expected an array of " + std::to_string(experts) + " token counts");
    for (std::size_t e = 0; e < row.size(); ++e) {
      const json& v = row[e];
      if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<std::int64_t>() < 0) ||
          (v.is_number_unsigned() && v.get<std::uint64_t>() > INT64_MAX))
        throw ConfigError(file, indexed(indexed(path, r), e), "expected a non-negative integer, got " + shown(v));
      m.at(static_cast<int>(r), static_cast<int>(e)) = v.get<std::int64_t>();
    }
  }
  return m;
}

constexpr const char* kTraceFormat = "moesys-routing-trace";

}  // namespace

json routing_trace_to_json(const RoutingTrace& t) {
  json steps = json::array();
  for (std::size_t s = 0; s < t.steps.size(); ++s) {
    json layers = json::array();
    for (std::size_t l = 0; l < t.steps[s].size(); ++l) {
      const RoutingMatrix& m = t.steps[s][l];
      json rows = json::array();
      for (int r = 0; r < m.ranks(); ++r) {
        json row = json::array();
        for (int e = 0; e < m.experts(); ++e) row.push_back(m.at(r, e));
        rows.push_back(std::move(row));
      }
      layers.push_back({{"layer", l}, {"tokens", std::move(rows)}});
    }
    steps.push_back({{"step", s}, {"layers", std::move(layers)}});
  }
  return {{"format", kTraceFormat}, {"version", 1},       {"ranks", t.ranks},
          {"experts", t.experts},   {"layers", t.layers}, {"steps", std::move(steps)}};
}

RoutingTrace parse_routing_trace(const json& j, const std::string& file) {
  ObjectReader r(j, file, "");
  if (r.string("format") != kTraceFormat) r.fail("format", std::string("expected \"") + kTraceFormat + "\"");
  if (r.integer("version", 1) != 1) r.fail("version", "expected 1");
  RoutingTrace t;
  t.ranks = static_cast<int>(r.integer("ranks", 1, INT32_MAX));
  t.experts = static_cast<int>(r.integer("experts", 1, INT32_MAX));
  t.layers = static_cast<int>(r.integer("layers", 1, INT32_MAX));
  const json& steps = r.array("steps", true);
  r.reject_unknown();
  for (std::size_t s = 0; s < steps.size(); ++s) {
    ObjectReader sr(steps[s], file, indexed("steps", s));
    if (sr.integer("step", 0) != static_cast<std::int64_t>(s)) sr.fail("step", "expected " + std::to_string(s));
    const json& layers = sr.array("layers", true);
    sr.reject_unknown();
    if (layers.size() != static_cast<std::size_t>(t.layers))
      sr.fail("layers", "expected " + std::to_string(t.layers) + " layers, got " + std::to_string(layers.size()));
    std::vector<RoutingMatrix>& step = t.steps.emplace_back();
    for (std::size_t l = 0; l < layers.size(); ++l) {
      ObjectReader lr(layers[l], file, indexed(sr.path("layers"), l));
      if (lr.integer("layer", 0) != static_cast<std::int64_t>(l)) lr.fail("layer", "expected " + std::to_string(l));
      const json* tokens = lr.find("tokens", true);
      lr.reject_unknown();
      step.push_back(parse_tokens(*tokens, file, lr.path("tokens"), t.ranks, t.experts));
    }
  }
  return t;
}

RoutingTrace read_routing_trace(const std::string& path) {
  return parse_routing_trace(read_json_file(path), path);
}

void write_routing_trace(const std::string& path, const RoutingTrace& t) {
  write_file_atomically(path, routing_trace_to_json(t).dump() + "\n");
}

// ---------------------------------------------------------------------------------------------------------------
// Factory

namespace {

struct FactoryInput {
  ObjectReader& reader;
  RoutingShape shape;
};

std::uint64_t seed_of(ObjectReader& r) {
  return static_cast<std::uint64_t>(r.integer("seed", 0, INT64_MAX, 1));
}

std::unique_ptr<RoutingModel> make_uniform(FactoryInput in) {
  in.reader.reject_unknown();
  return std::make_unique<UniformRouting>(in.shape);
}

std::unique_ptr<RoutingModel> make_zipf(FactoryInput in) {
  double exponent = in.reader.number("exponent", 0, 100);
  std::uint64_t seed = seed_of(in.reader);
  in.reader.reject_unknown();
  return std::make_unique<ZipfRouting>(in.shape, exponent, seed);
}

std::unique_ptr<RoutingModel> make_drift(FactoryInput in) {
  double exponent = in.reader.number("exponent", 0, 100);
  std::uint64_t seed = seed_of(in.reader);
  double drift = in.reader.number("drift_experts_per_step", 0, in.shape.experts);
  if (drift <= 0) in.reader.fail("drift_experts_per_step", "expected a positive number (0 is kind \"zipf\")");
  in.reader.reject_unknown();
  return std::make_unique<ZipfRouting>(in.shape, exponent, seed, drift);
}

std::unique_ptr<RoutingModel> make_multitask(FactoryInput in) {
  ObjectReader& r = in.reader;
  const json& tasks_json = r.array("tasks", true);
  std::vector<TaskSpec> tasks;
  std::set<std::string> names;
  for (std::size_t i = 0; i < tasks_json.size(); ++i) {
    ObjectReader tr(tasks_json[i], r.file(), indexed(r.path("tasks"), i));
    // Tokens per step: up to 2^30 (a billion), beyond which the routing of one step no longer fits in time or memory.
    TaskSpec t{tr.string("name"), tr.integer("batch", 1, kMaxTaskBatchTokens), tr.number("affinity", 0, 1, 0.0)};
    tr.reject_unknown();
    if (!names.insert(t.name).second) tr.fail("name", "duplicate task name \"" + t.name + "\"");
    tasks.push_back(std::move(t));
  }
  std::vector<int> placement = MultitaskRouting::block_placement(in.shape.ranks, static_cast<int>(tasks.size()));
  if (const json* p = r.find("placement", false)) {
    if (!p->is_array() || p->size() != static_cast<std::size_t>(in.shape.ranks))
      r.fail("placement", "expected an array of " + std::to_string(in.shape.ranks) + " task indices (one per rank)");
    std::vector<int> seen(tasks.size(), 0);
    for (std::size_t i = 0; i < p->size(); ++i) {
      const json& v = (*p)[i];
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() >= std::ssize(tasks))
        throw ConfigError(r.file(), indexed(r.path("placement"), i),
                          "expected a task index in [0, " + std::to_string(tasks.size()) + "), got " + shown(v));
      placement[i] = v.get<int>();
      seen[static_cast<std::size_t>(placement[i])] = 1;
    }
    for (std::size_t t = 0; t < tasks.size(); ++t)
      if (!seen[t]) r.fail("placement", "task \"" + tasks[t].name + "\" has no rank");
  } else if (std::ssize(tasks) > in.shape.ranks) {
    r.fail("tasks", "expected at most one task per rank (" + std::to_string(in.shape.ranks) + " ranks)");
  }
  std::uint64_t seed = seed_of(r);
  r.reject_unknown();
  return std::make_unique<MultitaskRouting>(in.shape, std::move(tasks), std::move(placement), seed);
}

std::unique_ptr<RoutingModel> make_trace(FactoryInput in) {
  ObjectReader& r = in.reader;
  std::filesystem::path path = r.string("file");
  TraceFit fit = r.choice("fit", {"exact", "tile"}, "exact") == "tile" ? TraceFit::kTile : TraceFit::kExact;
  int first_step = static_cast<int>(r.integer("first_step", 0, INT32_MAX, 0));
  r.reject_unknown();
  if (path.is_relative() && !r.file().empty()) {
    std::filesystem::path beside = std::filesystem::path(r.file()).parent_path() / path;
    std::error_code ignored;
    if (std::filesystem::exists(beside, ignored)) path = beside;
  }
  std::error_code no_file;  // a name too long for the file system is no file either, not a failure
  if (!std::filesystem::exists(path, no_file)) r.fail("file", "no routing trace at \"" + path.string() + "\"");
  RoutingTrace t = read_routing_trace(path.string());
  auto expect = [&](const char* field, int got, int want, const char* what) {
    if (got != want)
      throw ConfigError(path.string(), field,
                        "expected " + std::to_string(want) + " (the run's " + what + "), got " + std::to_string(got));
  };
  if (first_step >= std::ssize(t.steps))
    r.fail("first_step", "expected a step of the trace (it has " + std::to_string(t.steps.size()) + ")");
  expect("experts", t.experts, in.shape.experts, "experts");
  if (fit == TraceFit::kExact) {
    expect("ranks", t.ranks, in.shape.ranks, "ranks");
    expect("layers", t.layers, in.shape.moe_layers, "MoE layers");
  } else {
    // Every row the run replays is rescaled: it needs tokens, and a sum that fits in 64 bits.
    const auto ranks = std::min(t.ranks, in.shape.ranks);
    const auto layers = static_cast<std::size_t>(std::min(t.layers, in.shape.moe_layers));
    for (std::size_t s = 0; s < t.steps.size(); ++s)
      for (std::size_t l = 0; l < layers; ++l)
        for (int rank = 0; rank < ranks; ++rank) {
          __extension__ using Wide = __int128;
          Wide sum = 0;
          for (int e = 0; e < t.experts; ++e) sum += t.steps[s][l].at(rank, e);
          const std::string row = "steps[" + std::to_string(s) + "].layers[" + std::to_string(l) + "].tokens[" +
                                  std::to_string(rank) + "]";
          if (sum <= 0) throw ConfigError(path.string(), row, "a row with no tokens cannot be rescaled (fit \"tile\")");
          if (sum > INT64_MAX) throw ConfigError(path.string(), row, "the row's token counts sum past 2^63");
        }
  }
  return std::make_unique<TraceRouting>(std::move(t), fit, in.shape, first_step);
}

// One row per kind: adding a workload is one function and one line here.
using Factory = std::unique_ptr<RoutingModel> (*)(FactoryInput);
const std::vector<std::pair<std::string, Factory>>& factories() {
  static const std::vector<std::pair<std::string, Factory>> kFactories = {{"uniform", make_uniform},
                                                                          {"zipf", make_zipf},
                                                                          {"drift", make_drift},
                                                                          {"multitask", make_multitask},
                                                                          {"trace", make_trace}};
  return kFactories;
}

}  // namespace

std::unique_ptr<RoutingModel> make_routing_model(const json& j, const std::string& file, const std::string& base_path,
                                                 int ranks, int experts, int moe_layers, std::int64_t tokens_per_rank,
                                                 int top_k) {
  RoutingShape shape{ranks, experts, moe_layers, tokens_per_rank, top_k};
  check_shape(shape);
  ObjectReader r(j, file, base_path);
  std::string kind = r.string("kind");
  std::string valid;
  for (const auto& [name, factory] : factories()) {
    if (name == kind) return factory(FactoryInput{r, shape});
    valid += (valid.empty() ? "" : ", ") + name;
  }
  r.fail("kind", "expected one of " + valid + ", got \"" + kind + "\"");
}

}  // namespace moesys::core
