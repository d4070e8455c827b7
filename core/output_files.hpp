#pragma once
// Where results go: every output path is checked before the first simulation (a typo in --trace must not cost an
// hour of simulation), and every file appears whole or not at all (written to a temporary file beside it, which is
// removed on failure and on interrupt, then renamed).
#include <string>

namespace moesys::core {

/// `path` can be created or replaced as a file: not a folder, in an existing folder this process may write.
/// ConfigError naming `flag` otherwise.
void check_output_file(const std::string& path, const std::string& flag);

/// `dir` can be created (with its parents) or written as a folder. ConfigError naming `flag` otherwise.
void check_output_dir(const std::string& dir, const std::string& flag);

/// Writes `text` to `path` through a temporary file and a rename; RuntimeFailure (and no file left) on failure.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace moesys::core
