#pragma once
// A study's result files as one set: they are written into a staging folder beside the results folder, plots
// included, and moved into results/<name>/ only when all of them exist. A failure or an interrupt before that
// leaves nothing behind (no half set of CSV, JSON and plots from two different runs).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/interrupts.hpp"

namespace moesys::studies {

/// A study's name names its results folder: letters, digits, '.', '_' or '-', and not "." or "..".
/// ConfigError at `file`: "name" otherwise.
void check_study_name(const std::string& name, const std::string& file);

class ResultSet {
 public:
  /// The set for `dir` (results/<name>). Nothing is created until the first file is added.
  explicit ResultSet(std::filesystem::path dir);
  /// Removes the staging folder (and the parents it created) unless the set was committed.
  ~ResultSet();
  ResultSet(const ResultSet&) = delete;
  ResultSet& operator=(const ResultSet&) = delete;

  /// Writes one file of the set into the staging folder; RuntimeFailure on I/O errors.
  void add(const std::string& name, const std::string& text);
  /// The staging folder, for tools that add files themselves (the plotting scripts).
  const std::filesystem::path& staging();
  /// Moves every staged file into the results folder (replacing files of the same names).
  void commit();

 private:
  std::filesystem::path dir_, staging_;
  std::vector<std::filesystem::path> created_;  // folders made for the set, removed again on failure
  std::unique_ptr<core::TemporaryPathGuard> guard_;
  bool committed_ = false;
};

}  // namespace moesys::studies
