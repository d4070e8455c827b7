#include "studies/result_set.hpp"

#include <unistd.h>

#include <fstream>

#include "core/error.hpp"

namespace moesys::studies {

namespace fs = std::filesystem;

void check_study_name(const std::string& name, const std::string& file) {
  // A loop, not std::regex: libstdc++'s regex recurses per character and overflowed the stack on a 100 KB name.
  constexpr std::size_t kMaxNameChars = 200;  // a folder name, well below the file systems' 255 bytes
  const bool plain =
      !name.empty() && name.size() <= kMaxNameChars &&
      name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == std::string::npos;
  if (!plain || name == "." || name == "..")
    throw core::ConfigError(file, "name",
                            "expected a name of letters, digits, '.', '_' or '-' other than \".\" and \"..\" (it names "
                            "the results folder, at most 200 characters), got \"" +
                                name.substr(0, 60) + (name.size() > 60 ? "...\"" : "\""));
}

ResultSet::ResultSet(fs::path dir) : dir_(std::move(dir)) {}

ResultSet::~ResultSet() {
  if (committed_) return;
  std::error_code ignored;
  if (!staging_.empty()) fs::remove_all(staging_, ignored);
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) fs::remove(*it, ignored);  // only if empty
}

const fs::path& ResultSet::staging() {
  if (!staging_.empty()) return staging_;
  // Parents first, remembering which ones this set made, so that a failed set removes them again.
  fs::path parent = dir_.parent_path().empty() ? fs::path(".") : dir_.parent_path();
  std::vector<fs::path> missing;
  for (fs::path p = parent; !p.empty() && !fs::exists(p); p = p.parent_path()) missing.push_back(p);
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    std::error_code ec;
    if (!fs::create_directory(*it, ec) && ec) throw core::RuntimeFailure("cannot create " + it->string());
    created_.push_back(*it);
  }
  // Host and process in the name: shards of one study on several machines may stage into one shared folder.
  char host[256] = "host";
  ::gethostname(host, sizeof host - 1);
  staging_ = parent / ("." + dir_.filename().string() + ".staging-" + host + "-" + std::to_string(::getpid()));
  guard_ = std::make_unique<core::TemporaryPathGuard>(staging_.string());
  std::error_code ec;
  fs::remove_all(staging_, ec);
  if (!fs::create_directory(staging_, ec)) throw core::RuntimeFailure("cannot create " + staging_.string());
  return staging_;
}

void ResultSet::add(const std::string& name, const std::string& text) {
  const fs::path path = staging() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw core::RuntimeFailure("cannot write " + (dir_ / name).string());
}

void ResultSet::commit() {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) {
    if (!fs::create_directory(dir_, ec) && ec) throw core::RuntimeFailure("cannot create " + dir_.string());
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(staging())) files.push_back(entry.path());
  // Renames within one file system: each is atomic and, after the writes above, practically cannot fail.
  for (const fs::path& f : files) {
    fs::rename(f, dir_ / f.filename(), ec);
    if (ec) throw core::RuntimeFailure("cannot move " + f.string() + " into " + dir_.string() + ": " + ec.message());
  }
  fs::remove_all(staging_, ec);
  committed_ = true;
}

}  // namespace moesys::studies
