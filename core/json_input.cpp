#include "core/json_input.hpp"

#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "core/error.hpp"

namespace moesys::core {

using nlohmann::json;

namespace {

/// A refusal found while parsing, raised from the parser's callback and turned into a ConfigError outside it.
struct Refusal {
  std::string path;
  std::string message;
};

/// Follows the parser through the document: the JSON path of the value being read (for messages), the keys of
/// every open object (to refuse repeats) and the depth (to refuse deep nesting).
class StructureCheck {
public:
  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth)
          throw Refusal{path(), "nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels"};
        open_.push_back(Level{event == json::parse_event_t::object_start, {}, "", 0});
        break;
      case json::parse_event_t::key: {
        Level& level = open_.back();
        level.key = parsed.get<std::string>();
        if (!level.keys.insert(level.key).second) throw Refusal{path(), "duplicate key"};
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        open_.pop_back();
        next_element();
        break;
      case json::parse_event_t::value:
        next_element();
        break;
    }
    return true;
  }

private:
  struct Level {
    bool object;
    std::set<std::string> keys;
    std::string key;  // the key being read (objects)
    std::size_t index;  // the element being read (arrays)
  };

  void next_element() {
    if (!open_.empty() && !open_.back().object) ++open_.back().index;
  }

  std::string path() const {
    std::string p;
    for (const Level& l : open_) {
      if (l.object && !l.keys.empty()) p += (p.empty() ? "" : ".") + l.key;
      if (!l.object) p += "[" + std::to_string(l.index) + "]";
    }
    return p.empty() ? "(root)" : p;
  }

  std::vector<Level> open_;
};

std::string position(const std::string& text, std::size_t byte) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

/// What went wrong at a parse error, in our words (the library's text names its internals).
std::string describe_parse_error(const std::string& text, const json::parse_error& e) {
  const std::size_t at = e.byte > 0 ? e.byte - 1 : 0;  // the library counts from 1
  const std::string where = "at byte " + std::to_string(e.byte) + " (" + position(text, at) + ")";
  if (std::string(e.what()).find("UTF-8") != std::string::npos) return "invalid UTF-8 " + where;
  if (at >= text.size()) return "malformed JSON " + where + ": unexpected end of input";
  const unsigned char c = static_cast<unsigned char>(text[at]);
  const std::string shown = c >= 0x20 && c < 0x7f ? "'" + std::string(1, static_cast<char>(c)) + "'"
                                                  : "byte 0x" + std::string(1, "0123456789abcdef"[c >> 4]) +
                                                        "0123456789abcdef"[c & 15];
  return "malformed JSON " + where + ": unexpected " + shown;
}

[[noreturn]] void refuse(const std::string& file, const std::string& flag, const std::string& path,
                         const std::string& message) {
  if (!file.empty()) throw ConfigError(file, path, message);
  throw ConfigError("", path.empty() || path == "(root)" ? flag : flag + ": " + path, message);
}

}  // namespace

bool is_inline_json(const std::string& value) {
  const auto first = value.find_first_not_of(" \t\r\n");
  return first != std::string::npos && (value[first] == '{' || value[first] == '[');
}

json parse_json_text(const std::string& input, const std::string& file, const std::string& flag) {
  const std::string what = file.empty() ? "the value" : "the file";
  if (input.size() > kMaxJsonBytes)
    refuse(file, flag, "", what + " is " + std::to_string(input.size() >> 20) + " MiB; JSON inputs are limited to " +
                               std::to_string(kMaxJsonBytes >> 20) + " MiB");
  const bool utf16_bom = input.size() >= 2 && ((input[0] == '\xFE' && input[1] == '\xFF') ||
                                               (input[0] == '\xFF' && input[1] == '\xFE'));
  if (utf16_bom) refuse(file, flag, "", "UTF-16 or UTF-32 text; expected UTF-8");
  if (const auto nul = input.find('\0'); nul != std::string::npos)
    refuse(file, flag, "", "NUL byte at " + position(input, nul) + " (UTF-16 or binary data?); expected UTF-8 JSON");
  // A UTF-8 byte-order mark is allowed and skipped (editors on Windows write one).
  const std::string text = input.rfind("\xEF\xBB\xBF", 0) == 0 ? input.substr(3) : input;
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) refuse(file, flag, "", what + " is empty");
  try {
    return json::parse(text, StructureCheck{});
  } catch (const Refusal& r) {
    refuse(file, flag, r.path, r.message);
  } catch (const json::parse_error& e) {
    refuse(file, flag, "(root)", describe_parse_error(text, e));
  } catch (const json::out_of_range&) {
    refuse(file, flag, "", "a number is outside the range of a double (about 1.8e308)");
  } catch (const json::exception&) {
    refuse(file, flag, "", "malformed JSON");
  }
}

json read_json_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ConfigError(path, "", "is a directory; expected a JSON file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "", "cannot open file");
  // Read at most one byte past the limit, so that /dev/zero or a runaway file is refused instead of filling memory.
  std::string text;
  char buffer[1 << 16];
  while (in && text.size() <= kMaxJsonBytes) {
    in.read(buffer, sizeof buffer);
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw ConfigError(path, "", "cannot read file");
  return parse_json_text(text, path);
}

json read_json_flag(const std::string& flag, const std::string& value) {
  if (is_inline_json(value)) return parse_json_text(value, "", flag);
  std::error_code ec;
  if (value.empty() || !std::filesystem::exists(value, ec))
    throw ConfigError("", flag, "expected inline JSON or the name of a JSON file, got '" + value + "' (no such file)");
  return read_json_file(value);
}

}  // namespace moesys::core
