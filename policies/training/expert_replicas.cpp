#include "policies/training/expert_replicas.hpp"

#include <algorithm>
#include <numeric>

namespace moesys::policies::training {

const char* to_string(Replication v) {
  switch (v) {
    case Replication::none:
      return "none";
    case Replication::eplb:
      return "eplb";
    case Replication::hot:
      return "hot";
  }
  return "?";
}

bool ReplicaMap::any() const {
  return std::any_of(slot_expert.begin(), slot_expert.end(), [](int e) { return e >= 0; });
}

std::vector<std::pair<int, int>> ReplicaMap::holders(int e) const {
  std::vector<std::pair<int, int>> h{{e / local, e % local}};
  for (int m = 0; m < ep; ++m)
    for (int j = 0; j < slots; ++j)
      if (slot_expert[static_cast<std::size_t>(m * slots + j)] == e) h.emplace_back(m, local + j);
  return h;
}

std::vector<std::vector<std::pair<int, int>>> ReplicaMap::all_holders() const {
  std::vector<std::vector<std::pair<int, int>>> all;
  for (int e = 0; e < ep * local; ++e) all.push_back({{e / local, e % local}});
  for (int m = 0; m < ep; ++m)
    for (int j = 0; j < slots; ++j)
      if (const int e = slot_expert[static_cast<std::size_t>(m * slots + j)]; e >= 0)
        all[static_cast<std::size_t>(e)].emplace_back(m, local + j);
  return all;
}

std::vector<std::int64_t> ReplicaMap::split_rows(int e, int sender, std::int64_t rows) const {
  return split_over(holders(e), sender, rows);
}

std::vector<std::int64_t> split_over(const std::vector<std::pair<int, int>>& h, int sender, std::int64_t rows) {
  const auto R = static_cast<std::int64_t>(h.size());
  std::vector<std::int64_t> out(h.size(), 0);
  for (std::size_t k = 0; k < h.size(); ++k)
    if (h[k].first == sender) {
      out[k] = rows;
      return out;
    }
  // Remainders rotate with the sender, so that the holders' totals stay even too.
  const std::int64_t base = rows / R, rem = rows % R;
  for (std::int64_t k = 0; k < R; ++k) out[static_cast<std::size_t>(k)] = base + ((k + R - sender % R) % R < rem ? 1 : 0);
  return out;
}

ReplicaMap no_replicas(int ep, int local, int slots) {
  ReplicaMap m;
  m.ep = ep, m.local = local, m.slots = slots;
  m.slot_expert.assign(static_cast<std::size_t>(ep * slots), -1);
  return m;
}

namespace {

/// Experts by load, heaviest first (ties: the lower id).
std::vector<int> by_load(const std::vector<double>& load) {
  std::vector<int> order(load.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return load[a] > load[b]; });
  return order;
}

/// Writes each member's experts into its slots in expert order.
void fill_slots(ReplicaMap& map, std::vector<std::vector<int>>& per_member) {
  for (int m = 0; m < map.ep; ++m) {
    auto& held = per_member[static_cast<std::size_t>(m)];
    std::sort(held.begin(), held.end());
    for (std::size_t j = 0; j < held.size(); ++j) map.slot_expert[static_cast<std::size_t>(m * map.slots) + j] = held[j];
  }
}

ReplicaMap eplb(const std::vector<double>& load, int ep, int local, int slots) {
  ReplicaMap map = no_replicas(ep, local, slots);
  const auto E = static_cast<int>(load.size());
  std::vector<int> copies(load.size(), 1);
  // Spare slots to the largest load per copy; an expert has at most one copy per member.
  for (int k = 0; k < ep * slots; ++k) {
    int best = -1;
    for (int e = 0; e < E; ++e)
      if (load[e] > 0 && copies[e] < ep && (best < 0 || load[e] / copies[e] > load[best] / copies[best])) best = e;
    if (best < 0) break;
    ++copies[best];
  }
  std::vector<double> member_load(static_cast<std::size_t>(ep), 0);
  for (int e = 0; e < E; ++e) member_load[static_cast<std::size_t>(e / local)] += load[e] / copies[e];
  std::vector<std::pair<double, int>> extra;  // (load per copy, expert), one entry per copy beyond the owner's
  for (int e = 0; e < E; ++e)
    for (int c = 1; c < copies[e]; ++c) extra.emplace_back(load[e] / copies[e], e);
  std::stable_sort(extra.begin(), extra.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::vector<int>> held(static_cast<std::size_t>(ep));
  for (const auto& [w, e] : extra) {
    int to = -1;
    for (int m = 0; m < ep; ++m) {
      const auto& h = held[static_cast<std::size_t>(m)];
      if (m == e / local || static_cast<int>(h.size()) >= slots || std::find(h.begin(), h.end(), e) != h.end())
        continue;
      if (to < 0 || member_load[static_cast<std::size_t>(m)] < member_load[static_cast<std::size_t>(to)]) to = m;
    }
    if (to < 0) continue;
    held[static_cast<std::size_t>(to)].push_back(e);
    member_load[static_cast<std::size_t>(to)] += w;
  }
  fill_slots(map, held);
  return map;
}

/// EPLB inside each node group of `per_node` members: the group's own experts over the group's spare slots.
ReplicaMap eplb_by_node(const std::vector<double>& load, int ep, int local, int slots, int per_node) {
  ReplicaMap map = no_replicas(ep, local, slots);
  const int experts_per_node = per_node * local;
  for (int first = 0; first < ep; first += per_node) {
    const auto from = load.begin() + first * local;
    const ReplicaMap part = eplb(std::vector<double>(from, from + experts_per_node), per_node, local, slots);
    for (int m = 0; m < per_node; ++m)
      for (int j = 0; j < slots; ++j)
        if (const int e = part.slot_expert[static_cast<std::size_t>(m * slots + j)]; e >= 0)
          map.slot_expert[static_cast<std::size_t>((first + m) * slots + j)] = e + first * local;
  }
  return map;
}

ReplicaMap hot(const std::vector<double>& load, int ep, int local, int slots) {
  ReplicaMap map = no_replicas(ep, local, slots);
  std::vector<int> top;
  for (int e : by_load(load))
    if (static_cast<int>(top.size()) < slots && load[static_cast<std::size_t>(e)] > 0) top.push_back(e);
  std::vector<std::vector<int>> held(static_cast<std::size_t>(ep));
  for (int m = 0; m < ep; ++m)
    for (int e : top)
      if (e / local != m) held[static_cast<std::size_t>(m)].push_back(e);
  fill_slots(map, held);
  return map;
}

}  // namespace

ReplicaMap place_replicas(Replication kind, const std::vector<double>& load, int ep, int local, int slots,
                          int members_per_node) {
  switch (kind) {
    case Replication::eplb:
      if (members_per_node > 0 && members_per_node < ep) return eplb_by_node(load, ep, local, slots, members_per_node);
      return eplb(load, ep, local, slots);
    case Replication::hot:
      return hot(load, ep, local, slots);
    case Replication::none:
      break;
  }
  return no_replicas(ep, local, slots);
}

ReplicaPlanner::ReplicaPlanner(ReplicaSettings settings, int moe_layers, int experts, int ep, int local,
                               int members_per_node)
    : settings_(settings), ep_(ep), local_(local), members_per_node_(settings.node_scope ? members_per_node : 0) {
  const int slots = settings.kind == Replication::none ? 0 : settings.slots;
  since_.assign(static_cast<std::size_t>(moe_layers), std::vector<double>(static_cast<std::size_t>(experts), 0));
  maps_.assign(static_cast<std::size_t>(moe_layers), no_replicas(ep, local, slots));
}

void ReplicaPlanner::observe(int step, const std::vector<std::vector<double>>& load) {
  if (settings_.kind == Replication::none) return;
  for (std::size_t l = 0; l < since_.size() && l < load.size(); ++l)
    for (std::size_t e = 0; e < since_[l].size() && e < load[l].size(); ++e) since_[l][e] += load[l][e];
  const int next = step + 1;
  if (settings_.kind == Replication::eplb && next % settings_.every != 0) return;
  for (std::size_t l = 0; l < since_.size(); ++l) {
    maps_[l] = place_replicas(settings_.kind, since_[l], ep_, local_, settings_.slots, members_per_node_);
    std::fill(since_[l].begin(), since_[l].end(), 0.0);
  }
}

double rank_imbalance(const std::vector<std::int64_t>& rows_per_rank) {
  if (rows_per_rank.empty()) return 1;
  const std::int64_t total = std::accumulate(rows_per_rank.begin(), rows_per_rank.end(), std::int64_t{0});
  if (total <= 0) return 1;
  const double mean = static_cast<double>(total) / static_cast<double>(rows_per_rank.size());
  return static_cast<double>(*std::max_element(rows_per_rank.begin(), rows_per_rank.end())) / mean;
}

}  // namespace moesys::policies::training
