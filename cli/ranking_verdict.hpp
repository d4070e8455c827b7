#pragma once
// Whether a prediction ranks two presets as the measurement does, for `moesys validate --compare`.
#include <string>
#include <vector>

namespace moesys::cli {

/// The verdict line on which of `first` and `second` is faster. `predicted_ratio` and `measured_ratios` are step
/// time of first / step time of second (the prediction's median, the measurement per repeat). A measured order
/// that changes between repeats is a tie within the machine's noise, which no prediction matches or misses.
std::string ranking_verdict(const std::string& first, const std::string& second, double predicted_ratio,
                            const std::vector<double>& measured_ratios);

}  // namespace moesys::cli
