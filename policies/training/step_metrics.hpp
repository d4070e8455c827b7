#pragma once
// Where the time of a step goes, from the trace spans of every rank. For each rank, inside the step's window:
//   compute         time the compute stream is busy
//   exposed comm    time some collective or message is in flight while no kernel runs
//   exposed copies  time some tier-to-tier copy (PCIe, NVMe, host optimizer) runs while neither of the above does
//   idle            the rest (waiting on the host, on peers, on dependencies)
// The four add up to the step time; reports give their mean over ranks.
#include <map>
#include <string>
#include <vector>

#include "core/trace.hpp"

namespace moesys::policies::training {

struct StepWindow {
  double start_s = 0, end_s = 0;
  double seconds() const { return end_s - start_s; }
};

/// Window of step `step`: from the last rank's end of the previous step to the last rank's end of this one,
/// read from the "step N" phase spans.
StepWindow step_window(const std::vector<const std::vector<core::Span>*>& ranks, int step);

struct StepBreakdown {
  double step_s = 0, compute_s = 0, exposed_comm_s = 0, exposed_copy_s = 0, idle_s = 0;
  std::map<std::string, double> copy_bytes;  // by copy name ("copy dram->hbm"), summed over ranks
};

StepBreakdown step_breakdown(const std::vector<const std::vector<core::Span>*>& ranks, const StepWindow& w);

}  // namespace moesys::policies::training
