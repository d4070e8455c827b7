#pragma once
// Units. Every model quantity carries its unit in its name (bytes, seconds, flop_per_s, bytes_per_s).
// Decimal prefixes (GB, Gb/s, TFLOP/s) follow vendor specifications; binary prefixes (GiB) follow memory sizes.
#include <cstdint>

namespace moesys::core {

inline constexpr double kKB = 1e3, kMB = 1e6, kGB = 1e9, kTB = 1e12;
inline constexpr double kKiB = 1024.0, kMiB = 1024.0 * kKiB, kGiB = 1024.0 * kMiB, kTiB = 1024.0 * kGiB;
inline constexpr double kTera = 1e12;
inline constexpr double kMicro = 1e-6;

/// Gigabits per second to bytes per second.
constexpr double gbits_to_bytes_per_s(double gbits_per_s) { return gbits_per_s * 1e9 / 8.0; }

/// Usable one-direction bandwidth of a PCIe link from its generation and lane count, in bytes per second
/// (Gen3 8 GT/s, Gen4 16 GT/s, Gen5 32 GT/s per lane, 128b/130b encoding).
constexpr double pcie_bytes_per_s(int generation, int lanes) {
  double gt_per_s = generation == 3 ? 8.0 : generation == 4 ? 16.0 : generation == 5 ? 32.0 : generation == 6 ? 64.0 : 0.0;
  return gt_per_s * 1e9 * lanes * (128.0 / 130.0) / 8.0;
}

}  // namespace moesys::core
