// NCCL's three protocols and what a stage's latency is made of.
//
// Simple writes a whole chunk, then a fence and a flag: full bandwidth, the highest per-step latency. LL128 stores
// 120 bytes of data and an 8-byte flag per 128-byte line, LL 4 bytes of data and a 4-byte flag per 8-byte word:
// the receiver polls the data itself, so a step costs less latency but moves less payload. Which one is fastest
// depends on the size, which is why NCCL (and the automatic choice here) picks per call.
#include "sim/collectives.hpp"

namespace moesys::sim {

const char* to_string(Protocol p) {
  switch (p) {
    case Protocol::simple:
      return "simple";
    case Protocol::ll128:
      return "ll128";
    case Protocol::ll:
      return "ll";
  }
  return "?";
}

double protocol_bandwidth_fraction(Protocol p) {
  switch (p) {
    case Protocol::simple:
      return 1.0;
    case Protocol::ll128:
      return 120.0 / 128.0;
    case Protocol::ll:
      return 0.5;
  }
  return 1.0;
}

double protocol_step_latency(Protocol p, const core::Calibration& cal) {
  switch (p) {
    case Protocol::simple:
      return cal.step_latency_s;
    case Protocol::ll128:
      return cal.ll128_step_latency_s;
    case Protocol::ll:
      return cal.ll_step_latency_s;
  }
  return cal.step_latency_s;
}

std::size_t Stage::held_bytes() const {
  std::size_t bytes = transfers.capacity() * sizeof(Transfer);  // what the vector holds, its growth slack included
  if (dense) {
    for (const auto& row : dense->matrix) bytes += row.size() * sizeof(double);
    bytes += dense->node.size() * sizeof(int) + dense->network_bytes.size() * sizeof(double);
  }
  return bytes;
}

double Stage::latency_s(const core::Calibration& cal) const {
  const double step = protocol_step_latency(protocol, cal);
  return latency_steps * step + net_latency_steps * (step + cal.net_step_latency_s) + fixed_latency_s;
}

}  // namespace moesys::sim
