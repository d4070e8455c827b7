#pragma once
// SimGrid runs one simulation per process. Tests that compare two simulations run each in a child process
// and read back a few numbers through a pipe.
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <stdexcept>
#include <vector>

namespace moesys::test {

inline std::vector<double> run_in_child(const std::function<std::vector<double>()>& fn) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::vector<double> out;
    int code = 0;
    try {
      out = fn();
    } catch (...) {
      code = 3;
    }
    std::size_t n = out.size();
    if (write(fds[1], &n, sizeof n) < 0 || write(fds[1], out.data(), n * sizeof(double)) < 0) code = 4;
    close(fds[1]);
    _exit(code);
  }
  close(fds[1]);
  std::size_t n = 0;
  std::vector<double> out;
  if (read(fds[0], &n, sizeof n) == static_cast<ssize_t>(sizeof n)) {
    out.resize(n);
    if (n && read(fds[0], out.data(), n * sizeof(double)) != static_cast<ssize_t>(n * sizeof(double))) out.clear();
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("child simulation failed");
  return out;
}

}  // namespace moesys::test
