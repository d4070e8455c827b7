#include "core/output_files.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/interrupts.hpp"

namespace moesys::core {

namespace fs = std::filesystem;

namespace {

bool writable_dir(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && ::access(dir.c_str(), W_OK | X_OK) == 0;
}

fs::path folder_of(const fs::path& p) {
  return p.has_parent_path() ? p.parent_path() : fs::path(".");
}

}  // namespace

void check_output_file(const std::string& path, const std::string& flag) {
  if (path.empty()) throw ConfigError("", flag, "expected a file name");
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) throw ConfigError("", flag, "'" + path + "' is a folder; expected a file name");
  if (p.filename().empty() || p.filename() == "." || p.filename() == "..")
    throw ConfigError("", flag, "'" + path + "' names no file");
  const fs::path dir = folder_of(p);
  if (!fs::is_directory(dir, ec)) throw ConfigError("", flag, "no folder '" + dir.string() + "' to write " + path + " in");
  if (!writable_dir(dir)) throw ConfigError("", flag, "cannot write in folder '" + dir.string() + "'");
  if (fs::exists(p, ec) && ::access(p.c_str(), W_OK) != 0)
    throw ConfigError("", flag, "'" + path + "' exists and cannot be replaced");
}

void check_output_dir(const std::string& dir, const std::string& flag) {
  if (dir.empty()) throw ConfigError("", flag, "expected a folder name");
  std::error_code ec;
  fs::path p = fs::absolute(fs::path(dir), ec);
  if (fs::exists(p, ec)) {
    if (!writable_dir(p)) throw ConfigError("", flag, "'" + dir + "' is not a folder this process can write in");
    return;
  }
  // The nearest existing ancestor must be a folder we can create the rest in.
  while (p.has_parent_path() && p.parent_path() != p && !fs::exists(p, ec)) p = p.parent_path();
  if (!writable_dir(p))
    throw ConfigError("", flag, "cannot create '" + dir + "': '" + p.string() + "' is not a writable folder");
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  TemporaryPathGuard guard(tmp);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw RuntimeFailure("cannot write " + path);
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw RuntimeFailure("cannot write " + path + " (" + ec.message() + ")");
  }
}

}  // namespace moesys::core
