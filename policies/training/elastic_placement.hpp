#pragma once
// Multi-task placement: which ranks serve which task. A slot is one data-parallel worker of a task on a rank;
// a rank may hold slots of several tasks (light tasks packed together) and a task may have slots on several
// ranks (heavy tasks split data-parallel). A task's tokens are shared evenly among its slots.
#include <string>
#include <vector>

namespace moesys::policies::training {

struct Slot {
  int rank = 0;
  int task = 0;
};

struct TaskPlacement {
  std::vector<Slot> slots;         // ordered by rank, then task
  std::vector<int> ranks_of_task;  // how many ranks hold a slot of each task
  /// "4/2/1/1"; packed tasks that share ranks are joined with '+', e.g. "2/1/1+1" (tasks 2 and 3 on one rank).
  std::string describe() const;
};

/// The static baseline: ranks in contiguous, nearly equal blocks, one task per block (needs ranks >= tasks).
TaskPlacement static_placement(int ranks, int tasks);

/// Elastic placement from the measured load of each task (tokens per step, from the gate's counts). Minimises
/// the largest load per rank: light tasks may be packed into groups (merging the two lightest groups, one merge
/// at a time), then the ranks are dealt to the groups one by one, each to the group with the largest load per
/// rank so far (ties: the lower task index). Among the candidates with 0, 1, 2, ... merges the one with the
/// lowest maximum load per rank wins (ties: fewer merges). Scales up or down with `ranks`.
TaskPlacement elastic_placement(const std::vector<double>& task_loads, int ranks);

}  // namespace moesys::policies::training
