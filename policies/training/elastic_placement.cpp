#include "policies/training/elastic_placement.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>

namespace moesys::policies::training {

namespace {

struct Group {
  std::vector<int> tasks;
  double load = 0;
};

/// Deals `ranks` ranks to groups (each at least one): Jefferson's method on group loads.
std::vector<int> deal(const std::vector<Group>& groups, int ranks) {
  std::vector<int> n(groups.size(), 1);
  for (int left = ranks - static_cast<int>(groups.size()); left > 0; --left) {
    std::size_t best = 0;
    for (std::size_t g = 1; g < groups.size(); ++g) {
      const double a = groups[g].load / n[g], b = groups[best].load / n[best];
      if (a > b || (a == b && groups[g].tasks.front() < groups[best].tasks.front())) best = g;
    }
    ++n[best];
  }
  return n;
}

double max_load(const std::vector<Group>& groups, const std::vector<int>& n) {
  double m = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) m = std::max(m, groups[g].load / n[g]);
  return m;
}

TaskPlacement from_groups(std::vector<Group> groups, const std::vector<int>& n, int task_count) {
  // Groups in order of their lowest task, so that rank blocks follow task order.
  std::vector<std::size_t> order(groups.size());
  std::iota(order.begin(), order.end(), 0);
  for (auto& g : groups) std::sort(g.tasks.begin(), g.tasks.end());
  std::sort(order.begin(), order.end(),
            [&](auto a, auto b) { return groups[a].tasks.front() < groups[b].tasks.front(); });
  TaskPlacement p;
  p.ranks_of_task.assign(static_cast<std::size_t>(task_count), 0);
  int rank = 0;
  for (std::size_t gi : order) {
    for (int i = 0; i < n[gi]; ++i, ++rank)
      for (int t : groups[gi].tasks) p.slots.push_back({rank, t});
    for (int t : groups[gi].tasks) p.ranks_of_task[static_cast<std::size_t>(t)] = n[gi];
  }
  return p;
}

}  // namespace

std::string TaskPlacement::describe() const {
  // Tasks that share their ranks print as one group "a+b"; groups are separated by '/'.
  std::map<int, std::vector<int>> tasks_by_first_rank;
  std::map<int, int> first_rank_of_task;
  for (const Slot& s : slots)
    if (!first_rank_of_task.count(s.task)) first_rank_of_task[s.task] = s.rank;
  for (const auto& [task, rank] : first_rank_of_task) tasks_by_first_rank[rank].push_back(task);
  std::string out;
  for (const auto& [rank, tasks] : tasks_by_first_rank) {
    if (!out.empty()) out += "/";
    const int n = ranks_of_task[static_cast<std::size_t>(tasks.front())];
    for (std::size_t i = 0; i < tasks.size(); ++i) out += (i ? "+" : "") + std::to_string(n);
  }
  return out;
}

TaskPlacement static_placement(int ranks, int tasks) {
  if (tasks < 1 || ranks < tasks) throw std::invalid_argument("static placement needs at least one rank per task");
  TaskPlacement p;
  p.ranks_of_task.assign(static_cast<std::size_t>(tasks), 0);
  for (int r = 0; r < ranks; ++r) {
    const int t = static_cast<int>(std::int64_t{r} * tasks / ranks);  // MultitaskRouting::block_placement's rule
    p.slots.push_back({r, t});
    ++p.ranks_of_task[static_cast<std::size_t>(t)];
  }
  return p;
}

TaskPlacement elastic_placement(const std::vector<double>& task_loads, int ranks) {
  if (task_loads.empty() || ranks < 1) throw std::invalid_argument("elastic placement needs tasks and ranks");
  std::vector<Group> groups;
  for (std::size_t t = 0; t < task_loads.size(); ++t) groups.push_back({{static_cast<int>(t)}, task_loads[t]});
  std::vector<Group> best_groups;
  std::vector<int> best_n;
  double best = 0;
  for (;;) {
    if (static_cast<int>(groups.size()) <= ranks) {
      std::vector<int> n = deal(groups, ranks);
      const double m = max_load(groups, n);
      if (best_n.empty() || m < best * (1 - 1e-12)) {
        best = m;
        best_groups = groups;
        best_n = n;
      }
    }
    if (groups.size() == 1) break;
    // Merge the two lightest groups (ties: the one holding the higher task indices goes first).
    std::vector<std::size_t> idx(groups.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](auto a, auto b) {
      if (groups[a].load != groups[b].load) return groups[a].load < groups[b].load;
      return groups[a].tasks.front() > groups[b].tasks.front();
    });
    Group merged = groups[idx[0]];
    merged.load += groups[idx[1]].load;
    merged.tasks.insert(merged.tasks.end(), groups[idx[1]].tasks.begin(), groups[idx[1]].tasks.end());
    std::vector<Group> next;
    for (std::size_t g = 0; g < groups.size(); ++g)
      if (g != idx[0] && g != idx[1]) next.push_back(groups[g]);
    next.push_back(std::move(merged));
    groups = std::move(next);
  }
  return from_groups(std::move(best_groups), best_n, static_cast<int>(task_loads.size()));
}

}  // namespace moesys::policies::training
