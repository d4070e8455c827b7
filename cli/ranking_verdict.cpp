#include "cli/ranking_verdict.hpp"

#include <algorithm>

namespace moesys::cli {

std::string ranking_verdict(const std::string& first, const std::string& second, double predicted_ratio,
                            const std::vector<double>& measured_ratios) {
  // By position, not name: `--compare moesys,moesys` (a check of the noise) is a valid comparison.
  const bool second_predicted = predicted_ratio > 1;
  const auto faster_second = [](double r) { return r > 1; };
  const std::size_t second_wins = static_cast<std::size_t>(
      std::count_if(measured_ratios.begin(), measured_ratios.end(), faster_second));
  const std::string& predicted = second_predicted ? second : first;
  if (second_wins != 0 && second_wins != measured_ratios.size())
    return predicted + " faster predicted; measured, the order changes between repeats (a tie within noise)";
  const bool second_measured = second_wins != 0;
  const std::string& measured = second_measured ? second : first;
  if (second_predicted == second_measured)
    return "the same: " + predicted + " faster, predicted and in every measured repeat";
  return "reversed: " + predicted + " faster predicted, " + measured + " in every measured repeat";
}

}  // namespace moesys::cli
