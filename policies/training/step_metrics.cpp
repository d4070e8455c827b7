#include "policies/training/step_metrics.hpp"

#include <algorithm>

namespace moesys::policies::training {

namespace {

using Intervals = std::vector<std::pair<double, double>>;

Intervals merged(Intervals v) {
  std::sort(v.begin(), v.end());
  Intervals out;
  for (const auto& iv : v) {
    if (!out.empty() && iv.first <= out.back().second)
      out.back().second = std::max(out.back().second, iv.second);
    else
      out.push_back(iv);
  }
  return out;
}

double length(const Intervals& v) {
  double s = 0;
  for (const auto& [a, b] : v) s += b - a;
  return s;
}

/// Length of `v` (merged) not covered by `cover` (merged).
double uncovered(const Intervals& v, const Intervals& cover) {
  double total = 0;
  std::size_t j = 0;
  for (const auto& [a, b] : v) {
    double pos = a;
    while (j < cover.size() && cover[j].second <= pos) ++j;
    for (std::size_t k = j; k < cover.size() && cover[k].first < b; ++k) {
      if (cover[k].first > pos) total += cover[k].first - pos;
      pos = std::max(pos, cover[k].second);
      if (pos >= b) break;
    }
    if (pos < b) total += b - pos;
  }
  return total;
}

}  // namespace

StepWindow step_window(const std::vector<const std::vector<core::Span>*>& ranks, int step) {
  StepWindow w;
  const std::string mine = "step " + std::to_string(step), before = "step " + std::to_string(step - 1);
  for (const auto* spans : ranks)
    for (const core::Span& s : *spans) {
      if (s.kind != core::SpanKind::phase) continue;
      if (s.name == mine) w.end_s = std::max(w.end_s, s.end_s);
      if (s.name == before) w.start_s = std::max(w.start_s, s.end_s);
    }
  return w;
}

StepBreakdown step_breakdown(const std::vector<const std::vector<core::Span>*>& ranks, const StepWindow& w) {
  StepBreakdown b;
  b.step_s = w.seconds();
  if (ranks.empty() || b.step_s <= 0) return b;
  for (const auto* spans : ranks) {
    Intervals compute, comm, copy;
    for (const core::Span& s : *spans) {
      const double a = std::max(s.start_s, w.start_s), e = std::min(s.end_s, w.end_s);
      if (e <= a) continue;
      switch (s.kind) {
        case core::SpanKind::compute:
          compute.push_back({a, e});
          break;
        case core::SpanKind::comm:
        case core::SpanKind::collective:
          comm.push_back({a, e});
          break;
        case core::SpanKind::copy:
          copy.push_back({a, e});
          if (s.start_s >= w.start_s) b.copy_bytes[s.name] += static_cast<double>(s.bytes);
          break;
        default:
          break;
      }
    }
    compute = merged(std::move(compute));
    comm = merged(std::move(comm));
    copy = merged(std::move(copy));
    Intervals busy = compute;
    busy.insert(busy.end(), comm.begin(), comm.end());
    busy = merged(std::move(busy));
    Intervals all = busy;
    all.insert(all.end(), copy.begin(), copy.end());
    all = merged(std::move(all));
    b.compute_s += length(compute);
    b.exposed_comm_s += uncovered(comm, compute);
    b.exposed_copy_s += uncovered(copy, busy);
    b.idle_s += b.step_s - length(all);
  }
  const double n = static_cast<double>(ranks.size());
  b.compute_s /= n;
  b.exposed_comm_s /= n;
  b.exposed_copy_s /= n;
  b.idle_s /= n;
  return b;
}

}  // namespace moesys::policies::training
