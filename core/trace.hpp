#pragma once
// Trace spans: every runtime operation becomes one, in the same format for sim and exec, so that a predicted
// step and a measured step can be compared span by span. Written as Chrome/Perfetto trace-event JSON.
#include <cstdint>
#include <string>
#include <vector>

namespace moesys::core {

enum class SpanKind { compute, copy, comm, collective, phase, idle };
const char* to_string(SpanKind k);

struct Span {
  int rank = 0;
  std::string stream;  // "compute", "comm", "h2d", ...
  SpanKind kind = SpanKind::compute;
  std::string name;    // "gemm", "all_to_all/hierarchical", "layer3/fwd", ...
  double start_s = 0;
  double end_s = 0;
  std::uint64_t bytes = 0;
  double flop = 0;
  double duration_s() const { return end_s - start_s; }
};

/// Writes spans as Chrome trace-event JSON (one process per rank, one thread per stream) to `path`,
/// through a temporary file renamed into place.
void write_chrome_trace(const std::vector<Span>& spans, const std::string& path);

}  // namespace moesys::core
