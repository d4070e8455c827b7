// `moesys calibration`: the model's efficiency table and, next to every published measurement it was
// calibrated on, the model's value. `--check` fails (exit 1) if any point is off by more than the tolerance.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/calibration_fit.hpp"
#include "cli/calibration_points.hpp"
#include "cli/cluster_options.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"

namespace moesys::cli {
namespace {

int run_calibration(int argc, char** argv) {
  Args args(argc, argv, 1, {"--points", "--calibration", "--tolerance"}, {"--check", "--fit", "--json", "--help"});
  if (args.has("--help")) {
    std::printf("usage: moesys calibration [--points FILE] [--calibration FILE] [--check [--tolerance 0.15]] [--fit] [--json]\n"
                "  --fit  refit the parameters to the points and print the fitted table\n");
    return 0;
  }
  const std::string file = args.get_or("--points", std::string(MOESYS_SOURCE_DIR) + "/calibration/a100-measured.json");
  const double tolerance = args.get_double("--tolerance", 0.15);
  core::Calibration cal = calibration_from_args(args);
  auto points = load_calibration_points(file);
  if (args.has("--fit")) cal = fit_calibration(points, cal, !args.has("--json"));
  evaluate_calibration_points(points, cal);

  bool all_ok = true;
  for (const auto& p : points) all_ok = all_ok && std::fabs(p.error()) <= tolerance;
  if (args.has("--json")) {
    nlohmann::json out = {{"parameters", core::calibration_to_json(cal)}, {"points", nlohmann::json::array()}};
    for (const auto& p : points)
      out["points"].push_back({{"id", p.id}, {"measured", p.measured}, {"model", p.model}, {"unit", p.unit},
                               {"error", p.error()}});
    std::printf("%s\n", out.dump(1).c_str());
  } else {
    std::printf("# calibrated parameters\n");
    const nlohmann::json table = core::calibration_to_json(cal);
    for (auto it = table.begin(); it != table.end(); ++it)
      std::printf("  %-22s %g\n", it.key().c_str(), it.value().get<double>());
    std::printf("\n# %-34s %-10s %14s %10s %10s %-8s %8s\n", "point", "category", "size", "measured", "model", "unit",
                "error");
    for (const auto& p : points)
      std::printf("  %-34s %-10s %14.0f %10.2f %10.2f %-8s %+7.1f%%%s\n", p.id.c_str(), p.category.c_str(),
                  p.size_bytes, p.measured, p.model, p.unit.c_str(), 100 * p.error(),
                  std::fabs(p.error()) > tolerance ? "  <-- outside tolerance" : "");
  }
  if (args.has("--check") && !all_ok) {
    std::fprintf(stderr, "moesys: calibration check failed: a point is off by more than %.0f%%\n", 100 * tolerance);
    return 1;
  }
  return 0;
}

const CommandRegistrar kRegistrar("calibration", "print the calibrated model next to the published measurements",
                                  run_calibration);

}  // namespace
}  // namespace moesys::cli
