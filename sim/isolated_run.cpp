#include "sim/isolated_run.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "core/error.hpp"
#include "core/interrupts.hpp"

namespace moesys::sim {

namespace {
void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}
}  // namespace

nlohmann::json run_isolated(const std::function<nlohmann::json()>& fn) {
  std::fflush(nullptr);  // do not duplicate buffered output in the child
  int fds[2];
  if (pipe(fds) != 0) throw core::RuntimeFailure("cannot create a pipe for a simulation run");
  const pid_t pid = fork();
  if (pid < 0) throw core::RuntimeFailure("cannot fork a simulation run");
  if (pid == 0) {
    // Dies with the parent, even when the parent is killed with SIGKILL: no simulation outlives its study.
    core::prepare_forked_child(SIGKILL, false);
    close(fds[0]);
    nlohmann::json reply;
    try {
      reply = {{"ok", fn()}};
    } catch (const core::ConfigError& e) {
      reply = {{"error", "config"}, {"file", e.file()}, {"path", e.json_path()}, {"what", e.message()}};
    } catch (const core::InfeasibleError& e) {
      reply = {{"error", "infeasible"}, {"what", e.what()}};
    } catch (const std::exception& e) {
      reply = {{"error", "runtime"}, {"what", e.what()}};
    }
    write_all(fds[1], reply.dump());
    close(fds[1]);
    std::fflush(nullptr);
    _exit(0);
  }
  close(fds[1]);
  core::ChildProcessGuard guard(pid, false);
  std::string text;
  char buf[65536];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  core::wait_if_interrupted();
  if (text.empty())
    throw core::RuntimeFailure("a simulation run died" +
                               (WIFSIGNALED(status) ? " (signal " + std::to_string(WTERMSIG(status)) + ")" : std::string()));
  auto reply = nlohmann::json::parse(text);
  if (reply.contains("ok")) return reply["ok"];
  const std::string what = reply.value("what", "unknown error");
  const std::string kind = reply.value("error", "runtime");
  if (kind == "config") throw core::ConfigError(reply.value("file", ""), reply.value("path", ""), what);
  if (kind == "infeasible") throw core::InfeasibleError(what);
  throw core::RuntimeFailure(what);
}

}  // namespace moesys::sim
