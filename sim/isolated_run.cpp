#include "sim/isolated_run.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

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

namespace {
/// A child running one simulation, and what it has written so far.
struct Child {
  std::size_t index = 0;
  pid_t pid = -1;
  int fd = -1;
  std::string text;
  std::unique_ptr<core::ChildProcessGuard> guard;
};

Child spawn(std::size_t index, const std::function<nlohmann::json(std::size_t)>& fn) {
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
      reply = {{"ok", fn(index)}};
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
  Child c;
  c.index = index, c.pid = pid, c.fd = fds[0];
  c.guard = std::make_unique<core::ChildProcessGuard>(pid, false);
  return c;
}

/// The child's reply as a result, or as the exception it carries.
IsolatedOutcome outcome_of(const std::string& text, int status) {
  if (text.empty())
    return outcome_from_reply({{"error", "runtime"},
                               {"what", "a simulation run died" + (WIFSIGNALED(status) ? " (signal " +
                                                                      std::to_string(WTERMSIG(status)) + ")"
                                                                                       : std::string())}});
  return outcome_from_reply(nlohmann::json::parse(text));
}
}  // namespace

IsolatedOutcome outcome_from_reply(const nlohmann::json& reply) {
  IsolatedOutcome out;
  out.reply = reply;
  if (reply.is_object() && reply.contains("ok")) {
    out.value = reply["ok"];
    return out;
  }
  try {
    const std::string what = reply.is_object() ? reply.value("what", "unknown error") : "a malformed reply";
    const std::string kind = reply.is_object() ? reply.value("error", "runtime") : "runtime";
    if (kind == "config") throw core::ConfigError(reply.value("file", ""), reply.value("path", ""), what);
    if (kind == "infeasible") throw core::InfeasibleError(what);
    throw core::RuntimeFailure(what);
  } catch (...) {
    out.error = std::current_exception();
  }
  return out;
}

void run_isolated_each(std::size_t count, int jobs, const std::function<nlohmann::json(std::size_t)>& fn,
                       const std::function<void(std::size_t, IsolatedOutcome&&)>& done,
                       const std::function<void(std::size_t)>& started) {
  std::vector<Child> running;
  std::size_t next = 0;
  std::exception_ptr stop;  // `done` threw: start nothing more, let the running children end, then rethrow
  while ((next < count && !stop) || !running.empty()) {
    while (next < count && !stop && running.size() < static_cast<std::size_t>(std::max(jobs, 1))) {
      if (started) started(next);
      running.push_back(spawn(next++, fn));
    }
    std::vector<pollfd> polled;
    for (const Child& c : running) polled.push_back({c.fd, POLLIN, 0});
    if (poll(polled.data(), polled.size(), -1) < 0) {
      if (errno == EINTR) continue;
      throw core::RuntimeFailure("cannot wait for the simulation runs");
    }
    for (std::size_t k = polled.size(); k-- > 0;) {
      if (polled[k].revents == 0) continue;
      Child& c = running[k];
      char buf[65536];
      const ssize_t n = read(c.fd, buf, sizeof buf);
      if (n > 0) {
        c.text.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      close(c.fd);
      int status = 0;
      waitpid(c.pid, &status, 0);
      core::wait_if_interrupted();
      IsolatedOutcome out = outcome_of(c.text, status);
      const std::size_t index = c.index;
      running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
      if (stop) continue;
      try {
        done(index, std::move(out));
      } catch (...) {
        stop = std::current_exception();
      }
    }
  }
  if (stop) std::rethrow_exception(stop);
}

nlohmann::json run_isolated(const std::function<nlohmann::json()>& fn) {
  IsolatedOutcome result;
  run_isolated_each(1, 1, [&](std::size_t) { return fn(); }, [&](std::size_t, IsolatedOutcome&& o) { result = std::move(o); });
  if (result.error) std::rethrow_exception(result.error);
  return result.value;
}

}  // namespace moesys::sim
