// libFuzzer harness of the JSON readers: the bytes of one input go through the common reading rules
// (core/json_input) and then, when they parse, through every config parser of core/. A reader may refuse the input
// with a ConfigError (bad input: the expected outcome); any other exception, crash, sanitizer report or hang is a
// finding. Built and run by scripts/fuzz-json.sh (clang's -fsanitize=fuzzer).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/model_config.hpp"
#include "core/workload.hpp"

namespace {

template <typename Parse>
void refuse_or_accept(Parse&& parse) {
  try {
    parse();
  } catch (const moesys::core::ConfigError& e) {
    const std::string what = e.what();
    if (what.find('\n') != std::string::npos) __builtin_trap();  // every error is one line
  } catch (const moesys::core::InfeasibleError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace moesys::core;
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  try {
    j = parse_json_text(text, "fuzz.json");
  } catch (const ConfigError& e) {
    if (std::string(e.what()).find('\n') != std::string::npos) __builtin_trap();
    return 0;
  }
  refuse_or_accept([&] { parse_cluster(j, "fuzz.json"); });
  refuse_or_accept([&] { parse_calibration(j, "fuzz.json"); });
  refuse_or_accept([&] { parse_model_config(j, "fuzz.json", "model"); });
  refuse_or_accept([&] { parse_routing_trace(j, "fuzz.json"); });
  refuse_or_accept([&] { make_routing_model(j, "fuzz.json", "workload", 8, 16, 2, 1024, 2); });
  return 0;
}
