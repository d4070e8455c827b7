// The rules every JSON reader follows (core/json_input.hpp): regressions of the hostile-input campaign, issue 13.
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"
#include "core/json_input.hpp"

namespace moesys::core {
namespace {

/// The one-line message of parsing `text` as file "f.json"; empty when it parses.
std::string error_of(const std::string& text) {
  try {
    parse_json_text(text, "f.json");
    return "";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_EQ(what.find("json.exception"), std::string::npos) << what;
    return what;
  }
}

TEST(JsonInput, ValidTextParses) {
  EXPECT_EQ(parse_json_text("{\"a\": [1, {\"b\": 2}]}", "f.json")["a"][1]["b"], 2);
}

TEST(JsonInput, MalformedTextNamesLineAndColumnNotTheLibrary) {
  EXPECT_EQ(error_of("{\n  \"a\": }"), "f.json: (root): malformed JSON at byte 10 (line 2, column 8): unexpected '}'");
  EXPECT_EQ(error_of("{\"a\": "), "f.json: (root): malformed JSON at byte 7 (line 1, column 7): unexpected end of input");
}

TEST(JsonInput, NumberBeyondDoubleIsRefused) {
  EXPECT_EQ(error_of("{\"a\": 1e400}"), "f.json: a number is outside the range of a double (about 1.8e308)");
}

TEST(JsonInput, DuplicateKeyIsRefusedWithItsPath) {
  EXPECT_EQ(error_of("{\"a\": {\"b\": -1, \"b\": 1}}"), "f.json: a.b: duplicate key");
  EXPECT_EQ(error_of("{\"a\": [{\"b\": 1}, {\"c\": 1, \"c\": 2}]}"), "f.json: a[1].c: duplicate key");
  EXPECT_EQ(error_of("[{\"x\": 1}, {\"x\": 1}]"), "");  // the same key in two objects is fine
}

TEST(JsonInput, DeepNestingIsRefused) {
  const int depth = 60000;  // overflowed the stack while the error message was built
  EXPECT_NE(error_of(std::string(depth, '[') + std::string(depth, ']')).find("nesting deeper than 64 levels"),
            std::string::npos);
  EXPECT_EQ(error_of(std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']')), "");
}

TEST(JsonInput, EncodingRules) {
  EXPECT_EQ(parse_json_text("\xEF\xBB\xBF{\"a\": 1}", "f.json")["a"], 1);  // a UTF-8 BOM is skipped
  EXPECT_EQ(error_of("\xFF\xFE{\0\"\0"), "f.json: UTF-16 or UTF-32 text; expected UTF-8");
  EXPECT_EQ(error_of(std::string("{\"a\": 1}\0", 9)),
            "f.json: NUL byte at line 1, column 9 (UTF-16 or binary data?); expected UTF-8 JSON");
  EXPECT_NE(error_of("{\"a\xFF\": 1}").find("f.json: (root): invalid UTF-8 at byte"), std::string::npos);
  EXPECT_EQ(error_of("  \n"), "f.json: the file is empty");
}

TEST(JsonInput, InlineFlagsAreNamedAsFlags) {
  try {
    read_json_flag("--model", "{\"layers\": ");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "<flags>: --model: malformed JSON at byte 12 (line 1, column 12): unexpected end of input");
  }
  try {
    read_json_flag("--policy", "deepspeed");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("<flags>: --policy: expected inline JSON or the name of a JSON file"),
              std::string::npos);
  }
}

TEST(JsonInput, FilesThatAreNotFiles) {
  try {
    read_json_file(MOESYS_SOURCE_DIR);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), std::string(MOESYS_SOURCE_DIR) + ": is a directory; expected a JSON file");
  }
  try {
    read_json_file("/nonexistent/x.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/x.json: cannot open file");
  }
}

TEST(JsonInput, ErrorsAreOneLineWhateverTheKey) {
  const ConfigError e("f.json", "bad\nkey", "unknown key");
  EXPECT_STREQ(e.what(), "f.json: bad\\x0akey: unknown key");
}

}  // namespace
}  // namespace moesys::core
