#include "policies/training/layout.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moesys::policies::training {

Layout make_layout(const TrainingConfig& c) {
  Layout l;
  l.world = c.gpus;
  l.ep = c.expert_parallel;
  l.experts = c.model.experts;
  l.gpus_per_node = c.cluster.node.gpus;
  l.node_ranks = std::min(l.world, l.gpus_per_node);
  if (l.ep > l.world)
    throw core::InfeasibleError("expert-parallel size " + std::to_string(l.ep) + " exceeds the " +
                                std::to_string(l.world) + " ranks");
  if (l.experts % l.ep != 0)
    throw core::InfeasibleError(std::to_string(l.experts) +
                                " experts cannot be divided evenly over an expert-parallel "
                                "group of " +
                                std::to_string(l.ep) + " ranks (experts must be a multiple of it)");
  if (l.world % l.ep != 0)
    throw core::InfeasibleError(std::to_string(l.world) + " ranks cannot be divided into expert-parallel groups of " +
                                std::to_string(l.ep));
  if (l.world % l.node_ranks != 0)
    throw core::InfeasibleError(std::to_string(l.world) + " ranks do not fill whole nodes of " +
                                std::to_string(l.gpus_per_node) + " GPUs");
  l.edp = l.world / l.ep;
  l.local_experts = l.experts / l.ep;
  return l;
}

core::Group Layout::ep_group(int rank) const {
  std::vector<int> r;
  for (int i = 0; i < ep; ++i) r.push_back(ep_base(rank) + i);
  return core::Group(std::move(r));
}

core::Group Layout::edp_group(int rank) const {
  std::vector<int> r;
  for (int i = 0; i < edp; ++i) r.push_back(ep_index(rank) + i * ep);
  return core::Group(std::move(r));
}

core::Group Layout::node_group(int rank) const {
  std::vector<int> r;
  const int base = rank - rank % node_ranks;
  for (int i = 0; i < node_ranks; ++i) r.push_back(base + i);
  return core::Group(std::move(r));
}

core::Group Layout::rail_group(int rank) const {
  std::vector<int> r;
  for (int g = rank % node_ranks; g < world; g += node_ranks) r.push_back(g);
  return core::Group(std::move(r));
}

}  // namespace moesys::policies::training
