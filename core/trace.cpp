#include "core/trace.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/output_files.hpp"

namespace moesys::core {

const char* to_string(SpanKind k) {
  switch (k) {
    case SpanKind::compute: return "compute";
    case SpanKind::copy: return "copy";
    case SpanKind::comm: return "comm";
    case SpanKind::collective: return "collective";
    case SpanKind::phase: return "phase";
    case SpanKind::idle: return "idle";
  }
  return "?";
}

void write_chrome_trace(const std::vector<Span>& spans, const std::string& path) {
  nlohmann::json events = nlohmann::json::array();
  std::map<std::pair<int, std::string>, int> tids;  // (rank, stream) -> thread id
  for (const Span& s : spans) {
    auto key = std::make_pair(s.rank, s.stream);
    auto [it, inserted] = tids.emplace(key, static_cast<int>(tids.size()) + 1);
    if (inserted) {
      events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", s.rank}, {"tid", it->second},
                        {"args", {{"name", s.stream}}}});
    }
    nlohmann::json args = {{"kind", to_string(s.kind)}};
    if (s.bytes) args["bytes"] = s.bytes;
    if (s.flop > 0) args["flop"] = s.flop;
    events.push_back({{"ph", "X"}, {"name", s.name}, {"cat", to_string(s.kind)}, {"pid", s.rank},
                      {"tid", it->second}, {"ts", s.start_s * 1e6}, {"dur", s.duration_s() * 1e6}, {"args", args}});
  }
  write_file_atomically(path, nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ns"}}.dump());
}

}  // namespace moesys::core
