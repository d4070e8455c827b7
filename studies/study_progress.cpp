#include "studies/study_progress.hpp"

#include <cmath>
#include <cstdio>

namespace moesys::studies {

namespace {
std::string duration(double s) {
  char buf[32];
  if (s < 90)
    std::snprintf(buf, sizeof buf, "%.0f s", std::ceil(s));
  else if (s < 5400)
    std::snprintf(buf, sizeof buf, "%.0f min", std::ceil(s / 60));
  else
    std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  return buf;
}
}  // namespace

StudyProgress::StudyProgress(std::size_t total, std::string what, bool quiet)
    : total_(total), what_(std::move(what)), quiet_(quiet), start_(std::chrono::steady_clock::now()) {}

std::string StudyProgress::remaining(std::size_t done, std::size_t total, double elapsed_s) {
  if (done >= total || done == 0) return "";
  const double left_s = elapsed_s / static_cast<double>(done) * static_cast<double>(total - done);
  return std::to_string(total - done) + " left, about " + duration(left_s);
}

void StudyProgress::finished(const std::string& label, const std::string& outcome, double wall_s, double score) {
  ++done_;
  if (score >= 0 && score > best_) best_ = score, best_label_ = label;
  if (quiet_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = "[" + std::to_string(done_) + "/" + std::to_string(total_) + "] " + label + ": " + outcome;
  char wall[32];
  std::snprintf(wall, sizeof wall, " (wall %.1f s)", wall_s);
  line += wall;
  const std::string left = remaining(done_, total_, elapsed);
  if (!left.empty()) line += "; " + left;
  if (best_ >= 0) {
    char best[64];
    std::snprintf(best, sizeof best, best_ >= 100 ? "%.0f %s" : "%.3g %s", best_, what_.c_str());
    line += "; best so far " + best_label_ + " (" + best + ")";
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace moesys::studies
