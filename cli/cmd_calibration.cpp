// `moesys calibration`: per GPU family, the model's parameter table and, next to every published measurement of
// calibration/<family>-measured.json, the model's value; per-category median and max error. `--fit` refits a
// family's parameters, `--cross-validate` fits without each source in turn and predicts that source's points,
// `--check` fails (exit 1) if an evaluated point is off by more than the tolerance.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/calibration_agreement.hpp"
#include "cli/calibration_fit.hpp"
#include "cli/calibration_points.hpp"
#include "cli/cluster_options.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"
#include "sim/isolated_run.hpp"

namespace moesys::cli {
namespace {

struct Summary {
  int points = 0;
  double median = 0, max = 0;
};

Summary summarize(const std::vector<double>& abs_errors) {
  Summary s;
  if (abs_errors.empty()) return s;
  auto e = abs_errors;
  std::sort(e.begin(), e.end());
  s.points = static_cast<int>(e.size());
  s.median = e.size() % 2 ? e[e.size() / 2] : (e[e.size() / 2 - 1] + e[e.size() / 2]) / 2;
  s.max = e.back();
  return s;
}

struct FamilyPoints {
  std::string family, file;
  std::vector<CalibrationPoint> points;
};

std::string family_of_points(const std::vector<CalibrationPoint>& points, const std::string& file) {
  std::string family;
  for (const auto& p : points) {
    const std::string f = core::gpu_family_of(p.gpu_preset);
    if (!family.empty() && f != family)
      throw core::ConfigError(
          file, "points",
          "point " + p.id + " is of GPU family " + f + ", the file's others of " + family + " (one file per family)");
    family = f;
  }
  if (family.empty()) throw core::ConfigError(file, "points", "expected at least one point");
  return family;
}

std::map<std::string, std::vector<double>> errors_by_category(const std::vector<CalibrationPoint>& points) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& p : points)
    if (p.evaluated()) {
      out[p.category].push_back(std::fabs(p.error()));
      out["(all)"].push_back(std::fabs(p.error()));
    }
  return out;
}

void print_family(const FamilyPoints& f, const core::Calibration& cal, double tolerance) {
  std::printf("## %s (%s)\n\n# parameters\n", f.family.c_str(), f.file.c_str());
  const nlohmann::json table = core::calibration_to_json(cal);
  for (auto it = table.begin(); it != table.end(); ++it)
    std::printf("  %-26s %g\n", it.key().c_str(), it.value().get<double>());
  std::printf("\n# %-44s %-14s %14s %10s %10s %-8s %8s\n", "point", "category", "size", "measured", "model", "unit",
              "error");
  std::map<std::string, int> excluded;
  for (const auto& p : f.points) {
    if (!p.evaluated()) {
      ++excluded[p.excluded];
      continue;
    }
    const double size = p.size_bytes > 0 ? p.size_bytes : static_cast<double>(p.m) * p.n * p.k * p.groups;
    std::printf("  %-44s %-14s %14.0f %10.2f %10.2f %-8s %+7.1f%%%s\n", p.id.c_str(), p.category.c_str(), size,
                p.measured, p.model, p.unit.c_str(), 100 * p.error(),
                std::fabs(p.error()) > tolerance ? "  <-- outside tolerance" : "");
  }
  std::printf("\n# %-16s %6s %12s %10s\n", "category", "points", "median |err|", "max |err|");
  for (const auto& [category, errors] : errors_by_category(f.points)) {
    const Summary s = summarize(errors);
    std::printf("  %-16s %6d %11.1f%% %9.1f%%\n", category.c_str(), s.points, 100 * s.median, 100 * s.max);
  }
  if (const TableAgreement agree = table_agreement(f.points); agree.configurations > 0) {
    const Summary tables = summarize(agree.errors), model = summarize(agree.model_errors);
    std::printf("  %d configuration(s) measured by two or more tables (%d points): the best single value per\n"
                "  configuration misses them by median %.1f%%, max %.1f%% (the model: %.1f%%, %.1f%%)\n",
                agree.configurations, tables.points, 100 * tables.median, 100 * tables.max, 100 * model.median,
                100 * model.max);
  }
  for (const auto& [why, count] : excluded) std::printf("  not evaluated: %d point(s): %s\n", count, why.c_str());
  std::printf("\n");
}

// A stable digest of `text` (FNV-1a, 64 bits), for telling whether a checkpoint was written for these inputs.
std::string digest(const std::string& text) {
  std::uint64_t h = 14695981039346656037ull;
  for (const unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// What a fold's errors depend on: the points (ids, sources, measurements), where the fit starts, what it frees and
// its loss, and the model itself, seen through its value of every point at the start. A change to any of them gives
// another digest, and a checkpoint's folds of another digest are not reused.
std::string cross_validation_digest(const FamilyPoints& f, const core::Calibration& start,
                                    const std::vector<std::string>& free, FitLoss loss) {
  std::vector<CalibrationPoint> at_start = f.points;
  evaluate_calibration_points(at_start, start);
  nlohmann::json inputs = {{"start", core::calibration_to_json(start)},
                           {"free", free},
                           {"loss", loss == FitLoss::squared ? "squared" : "abs"},
                           {"points", nlohmann::json::array()}};
  for (const auto& p : at_start)
    if (p.evaluated()) inputs["points"].push_back({p.id, p.source, p.measured, p.model});
  return digest(inputs.dump());
}

// The folds a checkpoint file holds for `family` under `fingerprint` (source -> held-out errors); the file's other
// families are kept as they are. A file that is not a checkpoint is a ConfigError.
struct Checkpoint {
  std::string path;  // empty: no checkpoint
  nlohmann::json doc = {{"about", "moesys calibration --cross-validate: the folds finished so far"},
                        {"families", nlohmann::json::object()}};
};

Checkpoint load_checkpoint(const std::string& path) {
  Checkpoint c;
  c.path = path;
  if (!std::filesystem::exists(path)) return c;
  c.doc = core::read_json_file(path);
  if (!c.doc.is_object() || !c.doc.contains("families") || !c.doc["families"].is_object())
    throw core::ConfigError(path, "families", "expected an object of families (a --checkpoint file of moesys)");
  for (const auto& [family, entry] : c.doc["families"].items()) {
    const std::string at = "families." + family;
    if (!entry.is_object() || !entry.contains("fingerprint") || !entry["fingerprint"].is_string() ||
        !entry.contains("folds") || !entry["folds"].is_object())
      throw core::ConfigError(path, at, "expected {\"fingerprint\": string, \"folds\": {source: [errors]}}");
    for (const auto& [source, errors] : entry["folds"].items()) {
      bool numbers = errors.is_array() && !errors.empty();
      for (const auto& e : errors) numbers = numbers && e.is_number() && e.get<double>() >= 0;
      if (!numbers) throw core::ConfigError(path, at + ".folds[\"" + source + "\"]", "expected an array of |errors|");
    }
  }
  return c;
}

// Leave-one-source-out: fit without a source's points, predict them. The folds are independent, so `jobs` of them
// run at once, each in its own process (a fit forks its simulations from there); the table is the same for any
// `jobs`. With a checkpoint, each fold's errors are written to it as the fold ends, and folds it already holds for
// the same inputs are not run again: a run of hours can be stopped and resumed.
nlohmann::json cross_validate(const FamilyPoints& f, const core::Calibration& start,
                              const std::vector<std::string>& free, FitLoss loss, int jobs, Checkpoint& checkpoint) {
  std::map<std::string, std::vector<std::size_t>> by_source;
  for (std::size_t i = 0; i < f.points.size(); ++i)
    if (f.points[i].evaluated()) by_source[f.points[i].source].push_back(i);
  const std::vector<std::pair<std::string, std::vector<std::size_t>>> folds(by_source.begin(), by_source.end());
  std::vector<std::vector<double>> fold_errors(folds.size());
  std::vector<std::size_t> to_run;
  nlohmann::json* kept = nullptr;
  if (!checkpoint.path.empty()) {
    const std::string fingerprint = cross_validation_digest(f, start, free, loss);
    nlohmann::json& entry = checkpoint.doc["families"][f.family];
    if (entry.is_object() && entry["fingerprint"] != fingerprint && !entry["folds"].empty())
      std::fprintf(stderr,
                   "[cross-validate %s] %s holds folds of other points, another start or another model: not reused\n",
                   f.family.c_str(), checkpoint.path.c_str());
    if (!entry.is_object() || entry["fingerprint"] != fingerprint)
      entry = {{"fingerprint", fingerprint}, {"folds", nlohmann::json::object()}};
    kept = &entry["folds"];
  }
  for (std::size_t k = 0; k < folds.size(); ++k) {
    const auto& [source, held] = folds[k];
    if (kept && kept->contains(source)) {
      const auto errors = (*kept)[source].get<std::vector<double>>();
      if (errors.size() != held.size())
        throw core::ConfigError(checkpoint.path, "families." + f.family + ".folds[\"" + source + "\"]",
                                "expected " + std::to_string(held.size()) + " errors, one per held-out point");
      fold_errors[k] = errors;
      std::fprintf(stderr, "[cross-validate %s] without %s: from %s\n", f.family.c_str(), source.c_str(),
                   checkpoint.path.c_str());
    } else {
      to_run.push_back(k);
    }
  }
  std::exception_ptr failure;
  std::size_t started = 0, finished = 0;
  sim::run_isolated_each(
      to_run.size(), jobs,
      [&](std::size_t r) {
        const auto& held = folds[to_run[r]].second;
        std::vector<CalibrationPoint> train = f.points, test;
        for (std::size_t i : held) {
          train[i].excluded = "held out";
          test.push_back(f.points[i]);
        }
        const core::Calibration fitted = fit_calibration(train, start, false, 1.5, free, loss);
        evaluate_calibration_points(test, fitted);
        nlohmann::json errors = nlohmann::json::array();
        for (const auto& p : test) errors.push_back(std::fabs(p.error()));
        return errors;
      },
      [&](std::size_t r, sim::IsolatedOutcome&& o) {
        const std::size_t k = to_run[r];
        ++finished;
        if (o.error) {
          if (!failure) failure = o.error;
          return;
        }
        fold_errors[k] = o.value.get<std::vector<double>>();
        if (kept) {
          (*kept)[folds[k].first] = o.value;
          core::write_file_atomically(checkpoint.path, checkpoint.doc.dump(1) + "\n");
        }
        std::fprintf(stderr, "[cross-validate %s] %zu/%zu done: without %s\n", f.family.c_str(), finished,
                     to_run.size(), folds[k].first.c_str());
      },
      [&](std::size_t r) {
        std::fprintf(stderr, "[cross-validate %s] %zu/%zu: without %s\n", f.family.c_str(), ++started, to_run.size(),
                     folds[to_run[r]].first.c_str());
      });
  if (failure) std::rethrow_exception(failure);
  nlohmann::json rows = nlohmann::json::array();
  std::vector<double> all;
  for (std::size_t k = 0; k < folds.size(); ++k) {
    all.insert(all.end(), fold_errors[k].begin(), fold_errors[k].end());
    const Summary s = summarize(fold_errors[k]);
    rows.push_back({{"source", folds[k].first}, {"points", s.points}, {"median", s.median}, {"max", s.max}});
  }
  const Summary s = summarize(all);
  return {{"family", f.family}, {"sources", rows}, {"points", s.points}, {"median", s.median}, {"max", s.max}};
}

void print_cross_validation(const nlohmann::json& cv) {
  std::printf("## %s: leave-one-source-out cross-validation\n\n# %6s %12s %10s  %s\n",
              cv["family"].get<std::string>().c_str(), "points", "median |err|", "max |err|", "held-out source");
  for (const auto& r : cv["sources"])
    std::printf("  %6d %11.1f%% %9.1f%%  %s\n", r["points"].get<int>(), 100 * r["median"].get<double>(),
                100 * r["max"].get<double>(), r["source"].get<std::string>().c_str());
  std::printf("  %6d %11.1f%% %9.1f%%  (all held-out points)\n\n", cv["points"].get<int>(),
              100 * cv["median"].get<double>(), 100 * cv["max"].get<double>());
}

int run_calibration(int argc, char** argv) {
  Args args(argc, argv, 1,
            {"--points", "--family", "--source", "--calibration", "--tolerance", "--free", "--loss", "-j", "--checkpoint"},
            {"--check", "--fit", "--cross-validate", "--json", "--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys calibration [--family a100|h100|h200 | --points FILE] [--source TEXT] [--calibration FILE]\n"
        "                          [--fit [--free P1,P2]] [--cross-validate [-j 1] [--checkpoint FILE]]\n"
        "                          [--loss squared|abs]\n"
        "                          [--check [--tolerance 0.15]] [--json]\n"
        "  default: every family's calibration/<family>-measured.json with the family's built-in parameters\n"
        "  --source TEXT    only the points whose source contains TEXT (one table, one page)\n"
        "  --calibration    parameters over the family's built-in ones\n"
        "  --fit            refit the parameters the points move and print the fitted table\n"
        "  --free P1,P2     fit only these parameters, the others held at the table's values\n"
        "  --loss squared|abs  the fit's loss on log(model / measured): its square (default, the tables') or\n"
        "                   its absolute value (robust to points the model cannot express); with --fit or\n"
        "                   --cross-validate\n"
        "  --cross-validate fit without each source in turn and predict its points\n"
        "  -j N             with --cross-validate: N sources' fits at once (each also runs 2 simulations at once)\n"
        "  --checkpoint FILE  with --cross-validate: write each fold's errors to FILE as it ends and reuse the folds\n"
        "                   FILE holds for the same points, start and model (stop and resume a run of hours)\n"
        "  --check          exit 1 if an evaluated point is off by more than the tolerance\n");
    return 0;
  }
  if (!args.positional().empty()) throw core::ConfigError("", args.positional().front(), "unexpected argument");
  const double tolerance = args.get_double("--tolerance", 0.15);
  std::vector<std::string> free;
  if (auto list = args.get("--free")) {
    if (!args.has("--fit")) throw core::ConfigError("", "--free", "only applies with --fit");
    for (std::size_t at = 0; at <= list->size();) {
      const std::size_t comma = std::min(list->find(',', at), list->size());
      free.push_back(list->substr(at, comma - at));
      at = comma + 1;
    }
  }
  const int jobs = args.get_int("-j", 1);
  if (args.get("-j") && !args.has("--cross-validate"))
    throw core::ConfigError("", "-j", "only applies with --cross-validate");
  if (jobs < 1 || jobs > 256) throw core::ConfigError("", "-j", "expected 1..256 fits at once");
  Checkpoint checkpoint;
  if (auto path = args.get("--checkpoint")) {
    if (!args.has("--cross-validate")) throw core::ConfigError("", "--checkpoint", "only applies with --cross-validate");
    core::check_output_file(*path, "--checkpoint");
    checkpoint = load_checkpoint(*path);
  }
  FitLoss loss = FitLoss::squared;
  if (auto name = args.get("--loss")) {
    if (!args.has("--fit") && !args.has("--cross-validate"))
      throw core::ConfigError("", "--loss", "only applies with --fit or --cross-validate");
    loss = parse_fit_loss(*name);
  }
  std::vector<std::string> files;
  if (auto file = args.get("--points")) {
    files.push_back(*file);
  } else if (auto family = args.get("--family")) {
    const auto& known = core::gpu_families();
    if (std::find(known.begin(), known.end(), *family) == known.end())
      throw core::ConfigError("", "--family", "expected one of a100, h100, h200, got \"" + *family + "\"");
    files.push_back(std::string(MOESYS_SOURCE_DIR) + "/calibration/" + *family + "-measured.json");
  } else {
    for (const auto& f : core::gpu_families())
      files.push_back(std::string(MOESYS_SOURCE_DIR) + "/calibration/" + f + "-measured.json");
  }
  std::vector<FamilyPoints> families;
  for (const auto& file : files) {
    FamilyPoints f;
    f.file = file;
    f.points = load_calibration_points(file);
    f.family = family_of_points(f.points, file);
    if (auto source = args.get("--source"))
      std::erase_if(f.points, [&](const CalibrationPoint& p) { return p.source.find(*source) == std::string::npos; });
    if (!f.points.empty()) families.push_back(std::move(f));
  }
  if (families.empty())
    throw core::ConfigError("", "--source", "no point's source contains \"" + args.get_or("--source", "") + "\"");
  auto override_file = args.get("--calibration");
  const nlohmann::json overrides = override_file ? core::read_json_file(*override_file) : nlohmann::json::object();

  bool all_ok = true;
  nlohmann::json out = nlohmann::json::array();
  for (auto& f : families) {
    core::Calibration cal = core::parse_calibration(overrides, override_file.value_or("--calibration"),
                                                    core::default_calibration_for(f.family));
    nlohmann::json cv;
    // From the data-free prior, with any --calibration overrides: the family's table was fitted with every source. A
    // family built on another's table (core::family_recipe) starts from that table, fitted on none of its sources,
    // and refits its own parameters only.
    if (args.has("--cross-validate")) {
      const core::FamilyRecipe recipe = core::family_recipe(f.family);
      const core::Calibration start = recipe.base_family.empty() ? core::prior_calibration()
                                                                 : core::default_calibration_for(recipe.base_family);
      cv = cross_validate(f, core::parse_calibration(overrides, override_file.value_or("--calibration"), start),
                          recipe.own_parameters, loss, jobs, checkpoint);
    }
    if (args.has("--fit")) cal = fit_calibration(f.points, cal, !args.has("--json"), 1.5, free, loss);
    evaluate_calibration_points(f.points, cal);
    for (const auto& p : f.points) all_ok = all_ok && (!p.evaluated() || std::fabs(p.error()) <= tolerance);
    if (args.has("--json")) {
      nlohmann::json j = {{"family", f.family},
                          {"parameters", core::calibration_to_json(cal)},
                          {"points", nlohmann::json::array()},
                          {"categories", nlohmann::json::object()}};
      for (const auto& p : f.points) {
        nlohmann::json pj = {{"id", p.id}, {"category", p.category}, {"measured", p.measured}, {"unit", p.unit}};
        if (p.evaluated())
          pj.update({{"model", p.model}, {"error", p.error()}});
        else
          pj["excluded"] = p.excluded;
        j["points"].push_back(pj);
      }
      for (const auto& [category, errors] : errors_by_category(f.points)) {
        const Summary s = summarize(errors);
        j["categories"][category] = {{"points", s.points}, {"median", s.median}, {"max", s.max}};
      }
      if (const TableAgreement agree = table_agreement(f.points); agree.configurations > 0) {
        const Summary tables = summarize(agree.errors), model = summarize(agree.model_errors);
        j["table_agreement"] = {{"configurations", agree.configurations}, {"points", tables.points},
                                {"median", tables.median},           {"max", tables.max},
                                {"model_median", model.median},      {"model_max", model.max}};
      }
      if (!cv.is_null()) j["cross_validation"] = cv;
      out.push_back(j);
    } else {
      print_family(f, cal, tolerance);
      if (!cv.is_null()) print_cross_validation(cv);
    }
  }
  if (args.has("--json")) std::printf("%s\n", out.dump(1).c_str());
  if (args.has("--check") && !all_ok) {
    std::fprintf(stderr, "moesys: calibration check failed: a point is off by more than %.0f%%\n", 100 * tolerance);
    return 1;
  }
  return 0;
}

const CommandRegistrar kRegistrar("calibration",
                                  "the calibrated model next to the published measurements, per GPU family",
                                  run_calibration);

}  // namespace
}  // namespace moesys::cli
