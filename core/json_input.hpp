#pragma once
// Reading JSON that users wrote: config files, study files, traces and inline JSON flags. One set of rules for
// every reader, so that hostile or damaged input is refused the same way everywhere:
//   - a UTF-8 byte-order mark at the very start is skipped; UTF-16 and UTF-32 text (or any NUL byte) is refused;
//   - invalid UTF-8 is refused;
//   - a key repeated in one object is refused (the parser would keep the last value silently, even when the
//     first one was the one the user meant or was invalid);
//   - nesting deeper than kMaxJsonDepth levels is refused (no configuration needs it, and deep values are
//     expensive to print and to destroy);
//   - a number outside the range of a double (1e400) is refused;
//   - a document larger than kMaxJsonBytes is refused.
// Every failure is a core::ConfigError naming the file (or the flag), and the line and column or the JSON path;
// the JSON library's own exception text never reaches the user.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace moesys::core {

constexpr int kMaxJsonDepth = 64;
constexpr std::size_t kMaxJsonBytes = std::size_t{512} << 20;

/// Parses `text` under the rules above. `file` names the file in errors; when `file` is empty, `flag` names the
/// flag whose value the text is (e.g. "--model").
nlohmann::json parse_json_text(const std::string& text, const std::string& file, const std::string& flag = "");

/// Reads and parses a file: "cannot open file", "is a directory" and read errors are ConfigErrors too.
nlohmann::json read_json_file(const std::string& path);

/// A flag that takes either inline JSON (the value starts with '{' or '[') or the name of a JSON file.
nlohmann::json read_json_flag(const std::string& flag, const std::string& value);

/// True when a flag's value is inline JSON rather than a file name.
bool is_inline_json(const std::string& value);

}  // namespace moesys::core
