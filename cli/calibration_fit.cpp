#include "cli/calibration_fit.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "core/error.hpp"

namespace moesys::cli {

FitLoss parse_fit_loss(const std::string& name) {
  if (name == "squared") return FitLoss::squared;
  if (name == "abs") return FitLoss::absolute;
  throw core::ConfigError("", "--loss", "expected squared or abs, got \"" + name + "\"");
}

double fit_loss(const std::vector<CalibrationPoint>& points, FitLoss loss) {
  double sum = 0;
  int n = 0;
  for (const auto& p : points)
    if (p.evaluated()) {
      const double e = std::log(p.model / p.measured);
      sum += loss == FitLoss::squared ? e * e : std::fabs(e);
      ++n;
    }
  return n ? sum / n : 0;
}

namespace {

// A parameter is fitted only if a 25% change moves some point by more than this: the others have no point that
// says anything about them and keep their value.
constexpr double kMovesAPoint = 0.01;
// Weight of the prior: the squared log distance of each fitted parameter from its starting value, so that a
// parameter only a little constrained stays near the documented default instead of drifting to an extreme.
constexpr double kPriorWeight = 1e-3;
// The targets are a small typical error and no point beyond 15%: errors past kHinge (in log terms, just under
// 15%) cost kHingeWeight times their square on top, so the fit does not buy a better median with an outlier.
constexpr double kHinge = 0.135;
constexpr double kHingeWeight = 10;
// Models closer than this are the same simulation: a parameter that moves no point of a machine by more does not
// need that machine simulated again when it changes.
constexpr double kSameModel = 1e-12;

struct Param {
  const char* name;
  double core::Calibration::*member;
  bool efficiency;
  double seed;  // the value tried first when the parameter is 0 (a factor cannot move it)
};

// The parameter scaled by `factor`, or its seed when it is 0.
void scale(core::Calibration& c, const Param& p, double factor) {
  double& v = c.*(p.member);
  v = v == 0 ? p.seed : v * factor;
  // The range parse_calibration accepts.
  if (p.efficiency) v = std::clamp(v, p.member == &core::Calibration::pcie_duplex_efficiency ? 0.5 : 1e-3, 1.0);
}

}  // namespace

namespace {
// The fit's objective on points whose model is already evaluated under `cal`.
double loss_of(const std::vector<CalibrationPoint>& points, const core::Calibration& cal,
               const core::Calibration& start, const std::vector<Param>& params, FitLoss loss) {
  double hinge = 0;
  int evaluated = 0;
  for (const auto& p : points)
    if (p.evaluated()) {
      ++evaluated;
      hinge += std::pow(std::max(0.0, std::fabs(std::log(p.model / p.measured)) - kHinge), 2);
    }
  double prior = 0;
  for (const auto& p : params)
    if (start.*(p.member) > 0 && cal.*(p.member) > 0)
      prior += std::pow(std::log(cal.*(p.member) / start.*(p.member)), 2);
  return fit_loss(points, loss) + kHingeWeight * hinge / std::max(1, evaluated) + kPriorWeight * prior;
}

// The models of each machine's points, kept for every setting of the parameters that move that machine. Within a
// step the fit takes a parameter to move only the machines its probes moved (that is why a trial re-simulates no
// other), so a machine's models are the same under two trials that agree on its parameters: a pass that improves none
// of them tries those settings again, and gets them from here instead of a forked simulation. Kept for one step.
class TrialModels {
 public:
  TrialModels(const std::vector<Param>& params, const std::vector<std::set<std::string>>& moves) {
    for (std::size_t q = 0; q < params.size(); ++q)
      for (const std::string& m : moves[q]) depends_on_[m].push_back(params[q].member);
  }

  // Looks up the models of machine `machine`'s points (in `points` order) under `cal`; false if not kept.
  bool find(const std::string& machine, const core::Calibration& cal, std::vector<double>& models) const {
    const auto it = kept_.find(key(machine, cal));
    if (it == kept_.end()) return false;
    models = it->second;
    return true;
  }
  void keep(const std::string& machine, const core::Calibration& cal, std::vector<double> models) {
    kept_[key(machine, cal)] = std::move(models);
  }
  // Starts again from every machine of `points`, all simulated under `cal`. A parameter can come to move a machine
  // its probes did not (another one changed an algorithm's choice); the fit re-simulates every machine after each
  // step to catch that, so what trials kept before is dropped rather than served in the next step.
  void restart_from(const std::vector<CalibrationPoint>& points, const core::Calibration& cal) {
    kept_.clear();
    std::map<std::string, std::vector<double>> models;
    for (const auto& p : points)
      if (p.evaluated()) models[p.machine()].push_back(p.model);
    for (auto& [machine, m] : models) keep(machine, cal, std::move(m));
  }

 private:
  std::string key(const std::string& machine, const core::Calibration& cal) const {
    std::string k = machine;
    if (const auto it = depends_on_.find(machine); it != depends_on_.end())
      for (double core::Calibration::*member : it->second) {
        char value[32];
        std::snprintf(value, sizeof value, "|%.17g", cal.*member);
        k += value;
      }
    return k;
  }
  std::map<std::string, std::vector<double core::Calibration::*>> depends_on_;
  std::map<std::string, std::vector<double>> kept_;
};

// `points` with the model of the machines in `machines` evaluated under `cal` and every other point's model kept:
// a parameter moves only the machines whose points depend on it, and the others need no simulation.
std::vector<CalibrationPoint> reevaluated(const std::vector<CalibrationPoint>& points, const core::Calibration& cal,
                                          const std::set<std::string>& machines, TrialModels& trials) {
  std::vector<CalibrationPoint> out = points, some;
  std::map<std::string, std::vector<std::size_t>> at;  // machine -> its points' indices
  for (std::size_t i = 0; i < points.size(); ++i)
    if (points[i].evaluated() && machines.count(points[i].machine())) at[points[i].machine()].push_back(i);
  std::vector<std::size_t> simulated;
  for (const auto& [machine, idx] : at) {
    std::vector<double> models;
    if (trials.find(machine, cal, models)) {
      for (std::size_t j = 0; j < idx.size(); ++j) out[idx[j]].model = models[j];
      continue;
    }
    for (std::size_t i : idx) some.push_back(points[i]), simulated.push_back(i);
  }
  evaluate_calibration_points(some, cal);
  for (std::size_t j = 0; j < simulated.size(); ++j) out[simulated[j]].model = some[j].model;
  for (const auto& [machine, idx] : at) {
    std::vector<double> models;
    for (std::size_t i : idx) models.push_back(out[i].model);
    trials.keep(machine, cal, std::move(models));
  }
  return out;
}

// The machines with a point whose model differs between `a` and `b`.
std::set<std::string> machines_moved(const std::vector<CalibrationPoint>& a, const std::vector<CalibrationPoint>& b) {
  std::set<std::string> moved;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].evaluated() && std::fabs(b[i].model / a[i].model - 1) > kSameModel) moved.insert(a[i].machine());
  return moved;
}
}  // namespace

core::Calibration fit_calibration(const std::vector<CalibrationPoint>& points, const core::Calibration& start,
                                  bool progress, double first_step, const std::vector<std::string>& free,
                                  FitLoss loss) {
  // The CPU-rank parameters have no published GPU point; they stay as given.
  using C = core::Calibration;
  const std::vector<Param> all = {{"nvlink_efficiency", &C::nvlink_efficiency, true, 0},
                                  {"nic_efficiency", &C::nic_efficiency, true, 0},
                                  {"pcie_efficiency", &C::pcie_efficiency, true, 0},
                                  {"pcie_duplex_efficiency", &C::pcie_duplex_efficiency, true, 0},
                                  {"ce_nvlink_efficiency", &C::ce_nvlink_efficiency, true, 0},
                                  {"copy_setup_s", &C::copy_setup_s, false, 1e-6},
                                  {"gemm_efficiency", &C::gemm_efficiency, true, 0},
                                  {"gemm_fp8_efficiency", &C::gemm_fp8_efficiency, true, 0},
                                  {"gemm_tile_overhead_k", &C::gemm_tile_overhead_k, false, 64},
                                  {"hbm_efficiency", &C::hbm_efficiency, true, 0},
                                  {"kernel_launch_s", &C::kernel_launch_s, false, 1e-6},
                                  {"nvls_efficiency", &C::nvls_efficiency, true, 0},
                                  {"p2p_efficiency", &C::p2p_efficiency, true, 0},
                                  {"collective_latency_s", &C::collective_latency_s, false, 1e-6},
                                  {"step_latency_s", &C::step_latency_s, false, 1e-6},
                                  {"ll128_step_latency_s", &C::ll128_step_latency_s, false, 1e-6},
                                  {"ll_step_latency_s", &C::ll_step_latency_s, false, 1e-6},
                                  {"net_step_latency_s", &C::net_step_latency_s, false, 1e-6},
                                  {"nvls_latency_s", &C::nvls_latency_s, false, 1e-6},
                                  {"alltoall_net_peer_latency_s", &C::alltoall_net_peer_latency_s, false, 1e-7},
                                  {"ep_ll_latency_s", &C::ep_ll_latency_s, false, 1e-6},
                                  {"ep_nvlink_efficiency", &C::ep_nvlink_efficiency, true, 0},
                                  {"framework_call_latency_s", &C::framework_call_latency_s, false, 1e-6},
                                  {"host_launch_s", &C::host_launch_s, false, 1e-6},
                                  {"host_p2p_op_s", &C::host_p2p_op_s, false, 1e-7},
                                  {"half_bandwidth_bytes", &C::half_bandwidth_bytes, false, 1e4},
                                  {"p2p_half_bandwidth_bytes", &C::p2p_half_bandwidth_bytes, false, 1e4},
                                  {"p2p_channel_bytes_per_s", &C::p2p_channel_bytes_per_s, false, 1e9},
                                  {"tree_half_bandwidth_bytes", &C::tree_half_bandwidth_bytes, false, 1e4},
                                  {"nic_half_bandwidth_bytes", &C::nic_half_bandwidth_bytes, false, 1e4},
                                  {"efa_step_latency_s", &C::efa_step_latency_s, false, 1e-6},
                                  {"efa_half_bandwidth_bytes", &C::efa_half_bandwidth_bytes, false, 1e4},
                                  {"efa_efficiency", &C::efa_efficiency, true, 0}};
  for (const std::string& name : free)
    if (std::none_of(all.begin(), all.end(), [&](const Param& p) { return name == p.name; }))
      throw core::ConfigError("", "--free", "\"" + name + "\" is not a fitted parameter");
  auto is_free = [&](const Param& p) {
    return free.empty() || std::find(free.begin(), free.end(), std::string(p.name)) != free.end();
  };
  core::Calibration best = start;
  std::vector<CalibrationPoint> current = points;  // evaluated under `best`
  evaluate_calibration_points(current, best);
  // Only parameters that move some point: the others would drift on noise. The machines a parameter moves, probed at
  // the largest steps the fit takes either way, are the ones a trial of it simulates again.
  std::vector<Param> params;
  std::vector<std::set<std::string>> moves;
  for (const auto& p : all) {
    if (!is_free(p)) continue;
    auto probe = [&](double factor) {
      core::Calibration trial = best;
      scale(trial, p, factor);
      auto moved = points;
      evaluate_calibration_points(moved, trial);
      return moved;
    };
    const auto moved = probe(p.efficiency && best.*(p.member) > 0.5 ? 0.8 : 1.25);
    bool any = false;
    for (std::size_t i = 0; i < moved.size(); ++i)
      any = any || (moved[i].evaluated() && std::fabs(moved[i].model / current[i].model - 1) > kMovesAPoint);
    if (!any) continue;
    std::set<std::string> machines = machines_moved(current, moved);
    for (double f : {first_step, 1 / first_step}) {
      const auto m = machines_moved(current, probe(f));
      machines.insert(m.begin(), m.end());
    }
    params.push_back(p);
    moves.push_back(machines);
  }
  if (progress) {
    std::fprintf(stderr, "[fit] %zu parameters the points move:", params.size());
    for (const auto& p : params) std::fprintf(stderr, " %s", p.name);
    std::fprintf(stderr, "\n");
  }
  TrialModels trials(params, moves);
  double best_loss = loss_of(current, best, start, params, loss);
  for (double step = first_step; step > 1.004; step = 1 + (step - 1) / 2) {
    bool improved = true;
    while (improved) {
      improved = false;
      for (std::size_t q = 0; q < params.size(); ++q) {
        for (double f : {step, 1 / step}) {
          core::Calibration trial = best;
          scale(trial, params[q], f);
          auto trial_points = reevaluated(current, trial, moves[q], trials);
          const double trial_loss = loss_of(trial_points, trial, start, params, loss);
          if (trial_loss < best_loss - 1e-12) {
            best = trial;
            best_loss = trial_loss;
            current = std::move(trial_points);
            improved = true;
          }
        }
      }
    }
    // A parameter can come to move a machine its probes did not (another parameter moved an algorithm's choice):
    // every machine again, so that the next step starts from the true loss.
    evaluate_calibration_points(current, best);
    trials.restart_from(current, best);
    best_loss = loss_of(current, best, start, params, loss);
    if (progress) std::fprintf(stderr, "[fit] step %.4f: loss %.5f\n", step, best_loss);
  }
  return best;
}

}  // namespace moesys::cli
