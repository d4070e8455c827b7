#pragma once
// The progress line of a study or a search, one per finished run on stderr: how many runs are done, an estimate
// of the time left (the rate at which runs have finished so far, so it accounts for -j), and the best run so far.
#include <chrono>
#include <cstddef>
#include <string>

namespace moesys::studies {

class StudyProgress {
 public:
  /// `total` runs; `what` names the figure that ranks them ("tokens/s"); quiet prints nothing.
  StudyProgress(std::size_t total, std::string what, bool quiet);

  /// One run ended: `label` and `outcome` describe it, `wall_s` is its own wall time, `score` its figure (higher
  /// is better; negative for a run without one: infeasible or failed). Prints one line.
  void finished(const std::string& label, const std::string& outcome, double wall_s, double score);

  /// "3 left, about 14 s" (or "" once all are done): the estimate alone, for tests.
  static std::string remaining(std::size_t done, std::size_t total, double elapsed_s);

 private:
  std::size_t total_, done_ = 0;
  std::string what_;
  bool quiet_;
  std::chrono::steady_clock::time_point start_;
  double best_ = -1;
  std::string best_label_;
};

}  // namespace moesys::studies
