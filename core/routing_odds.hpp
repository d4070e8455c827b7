#pragma once
// Closed forms of routing by a uniform choice of experts, shared by the DeepEP dispatcher's estimate of the nodes a
// token reaches (policies/training/deepep_dispatch.cpp) and the traffic DeepEP's published tests imply
// (cli/ep_points.cpp).
#include <algorithm>

namespace moesys::core {

/// Chance that a token choosing `k` distinct experts uniformly among `pool` picks none of `held` given ones
/// (C(pool - held, k) / C(pool, k)).
inline double chance_to_miss_all(int pool, int held, int k) {
  double p = 1;
  for (int i = 0; i < k; ++i) p *= std::max(0.0, static_cast<double>(pool - held - i) / (pool - i));
  return p;
}

}  // namespace moesys::core
