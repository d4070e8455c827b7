#pragma once
// A finished study's results folder (results/<name>/) as one web page, results/<name>/index.html: its name,
// description, the command that reproduces it, its tables, its plots and its config, in a single file that needs
// nothing else (no network, no other file) to be read. See studies/report_page.cpp for what the page holds.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace moesys::studies {

/// Writes `study_dir`/index.html from the files in `study_dir` (runs.csv, ratios.csv, summary.md, *.png and any
/// other *.csv) and the study's JSON `study`; `reproduce_command` is shown as the command that makes the folder
/// again (e.g. "build/moesys experiment experiments/paper-training.json"). The page depends only on those inputs,
/// never on the time or on where the folder lies, so rerunning a study gives the same page byte for byte.
/// The page is written to a temporary file in `study_dir` and renamed into place. RuntimeFailure, and no file
/// left behind, when the folder or one of its files cannot be read or the page cannot be written.
void write_report_page(const std::filesystem::path& study_dir, const nlohmann::json& study,
                       const std::string& reproduce_command);

}  // namespace moesys::studies
