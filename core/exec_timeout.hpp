#pragma once
// The deadline of every wait on the real runtimes, from MOESYS_EXEC_TIMEOUT_S. Read in one place so that moesys
// refuses a bad value before it launches any rank, and the ranks read it the same way.

namespace moesys::core {

constexpr double kDefaultExecTimeoutS = 300;
constexpr double kMaxExecTimeoutS = 86400;

/// MOESYS_EXEC_TIMEOUT_S as seconds in (0, 86400], or 300 when unset. A value that is not such a number (0, -1,
/// "abc", "inf") is a ConfigError naming the variable: a zero or negative deadline would fail every wait, a
/// non-number used to read as 0.
double exec_timeout_s();

}  // namespace moesys::core
