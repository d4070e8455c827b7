#include "studies/tune_search.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "core/error.hpp"

namespace moesys::studies {

using nlohmann::json;

namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::size_t at = 0;
  while (true) {
    const std::size_t dot = path.find('.', at);
    parts.push_back(path.substr(at, dot == std::string::npos ? std::string::npos : dot - at));
    if (dot == std::string::npos) return parts;
    at = dot + 1;
  }
}

bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::size_t TuneSpace::grid_size() const {
  std::size_t n = 1;
  for (const TuneDimension& d : dims) n *= d.values.size();
  return n;
}

json TuneSpace::config_at(const std::vector<std::size_t>& point) const {
  json c = base;
  for (std::size_t d = 0; d < dims.size(); ++d) {
    json* at = &c;
    for (const std::string& part : split_path(dims[d].path)) {
      if (!at->is_object()) *at = json::object();
      at = &(*at)[part];
    }
    *at = dims[d].values[point[d]];
  }
  return c;
}

std::string TuneSpace::describe(const std::vector<std::size_t>& point) const {
  std::string out;
  for (std::size_t d = 0; d < dims.size(); ++d) {
    const json& v = dims[d].values[point[d]];
    out += (out.empty() ? "" : " ") + split_path(dims[d].path).back() + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

TuneSpace parse_tune_space(const json& spec, const std::string& file) {
  TuneSpace s;
  if (!spec.contains("base") || !spec["base"].is_object())
    throw core::ConfigError(file, "base", "expected the training config every point starts from");
  s.base = spec["base"];
  if (!spec.contains("space") || !spec["space"].is_object() || spec["space"].empty())
    throw core::ConfigError(file, "space", "expected an object of at least one dimension: {\"path\": [values...]}");
  for (auto it = spec["space"].begin(); it != spec["space"].end(); ++it) {
    const std::string path = "space." + it.key();
    for (const std::string& part : split_path(it.key()))
      if (!valid_name(part))
        throw core::ConfigError(file, path, "expected a dotted path of config names such as policy.overlap_chunks");
    if (!it->is_array() || it->empty())
      throw core::ConfigError(file, path, "expected a non-empty array of values to try");
    std::set<std::string> seen;
    for (const json& v : *it)
      if (!seen.insert(v.dump()).second)
        throw core::ConfigError(file, path, "the value " + v.dump() + " is listed twice");
    s.dims.push_back({it.key(), it->get<std::vector<json>>()});
  }
  return s;
}

std::vector<TunePoint> tune_search(const TuneSpace& space, const std::string& strategy, const TuneEvaluator& evaluate) {
  std::vector<TunePoint> done;
  if (strategy == "grid") {
    std::vector<std::vector<std::size_t>> all;
    std::vector<std::size_t> p(space.dims.size(), 0);
    for (std::size_t i = 0; i < space.grid_size(); ++i) {
      all.push_back(p);
      for (std::size_t d = space.dims.size(); d-- > 0;) {  // odometer, last dimension fastest
        if (++p[d] < space.dims[d].values.size()) break;
        p[d] = 0;
      }
    }
    return evaluate(all);
  }
  std::map<std::vector<std::size_t>, std::size_t> seen;  // point -> index in done
  auto run = [&](const std::vector<std::vector<std::size_t>>& batch) {
    std::vector<std::vector<std::size_t>> fresh;
    for (const auto& p : batch)
      if (!seen.count(p) && std::find(fresh.begin(), fresh.end(), p) == fresh.end()) fresh.push_back(p);
    if (fresh.empty()) return;
    for (TunePoint& r : evaluate(fresh)) {
      seen[r.point] = done.size();
      done.push_back(std::move(r));
    }
  };
  auto score = [&](const std::vector<std::size_t>& p) {
    const TunePoint& r = done[seen.at(p)];
    return r.feasible ? r.tokens_per_s : -1.0;
  };
  std::vector<std::size_t> current(space.dims.size(), 0);
  run({current});
  for (bool moved = true; moved;) {
    moved = false;
    for (std::size_t d = 0; d < space.dims.size(); ++d) {
      std::vector<std::vector<std::size_t>> line;
      for (std::size_t v = 0; v < space.dims[d].values.size(); ++v) {
        line.push_back(current);
        line.back()[d] = v;
      }
      run(line);
      for (const auto& p : line)
        if (score(p) > score(current)) current = p, moved = true;
    }
  }
  return done;
}

const TunePoint* best_point(const std::vector<TunePoint>& points) {
  const TunePoint* best = nullptr;
  for (const TunePoint& p : points)
    if (p.feasible && (!best || p.tokens_per_s > best->tokens_per_s)) best = &p;
  return best;
}

std::vector<TunePoint> pareto_front(const std::vector<TunePoint>& points) {
  std::vector<TunePoint> front;
  for (const TunePoint& p : points) {
    if (!p.feasible) continue;
    const bool beaten = std::any_of(points.begin(), points.end(), [&](const TunePoint& q) {
      return q.feasible && q.tokens_per_s >= p.tokens_per_s && q.peak_hbm_gib <= p.peak_hbm_gib &&
             (q.tokens_per_s > p.tokens_per_s || q.peak_hbm_gib < p.peak_hbm_gib);
    });
    if (!beaten) front.push_back(p);
  }
  std::sort(front.begin(), front.end(), [](const TunePoint& a, const TunePoint& b) { return a.peak_hbm_gib < b.peak_hbm_gib; });
  return front;
}

}  // namespace moesys::studies
