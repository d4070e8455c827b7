#include "core/interrupts.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>
#include <thread>

#include "core/error.hpp"

namespace moesys::core {

namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
// Children get this long to stop on SIGTERM (mpirun forwards it to its workers) before SIGKILL.
constexpr auto kGrace = std::chrono::milliseconds(700);

std::atomic<bool> g_interrupted{false};

struct Registry {
  std::mutex mutex;
  std::multiset<pid_t> targets;  // pid, or -pgid for a whole process group (the argument kill() takes)
  std::multiset<std::string> paths;
};

Registry& registry() {
  static Registry r;
  return r;
}

sigset_t interrupt_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kSignals) sigaddset(&set, s);
  return set;
}

/// Every process below `roots` in the process tree, read from /proc. mpirun starts each worker in a process group
/// of its own, so signalling mpirun's group alone would leave the workers running.
std::set<pid_t> descendants_of(const std::set<pid_t>& roots) {
  std::map<pid_t, std::vector<pid_t>> children;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto close = line.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    pid_t parent = 0;
    if (rest >> state >> parent) children[parent].push_back(static_cast<pid_t>(std::stol(name)));
  }
  std::set<pid_t> found;
  std::vector<pid_t> todo(roots.begin(), roots.end());
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    for (pid_t c : children[p])
      if (found.insert(c).second) todo.push_back(c);
  }
  return found;
}

/// The registered targets plus every descendant of them, as arguments of kill().
std::set<pid_t> process_tree(const std::set<pid_t>& targets) {
  std::set<pid_t> roots, tree = targets;
  for (pid_t t : targets) roots.insert(t < 0 ? -t : t);
  for (pid_t d : descendants_of(roots)) tree.insert(d);
  return tree;
}

bool all_gone(const std::set<pid_t>& targets) {
  for (pid_t t : targets) {
    // Reap our own child when it has ended (a zombie still counts for kill(..., 0)); its workers, reparented, are
    // reaped by init.
    ::waitpid(t < 0 ? -t : t, nullptr, WNOHANG);
    if (::kill(t, 0) == 0 || errno != ESRCH) return false;
  }
  return true;
}

[[noreturn]] void stop_everything(int sig) {
  g_interrupted = true;
  std::set<pid_t> targets;
  std::set<std::string> paths;
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    targets.insert(registry().targets.begin(), registry().targets.end());
    paths.insert(registry().paths.begin(), registry().paths.end());
  }
  std::fprintf(stderr, "moesys: interrupted by %s; stopping%s\n", sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP",
               targets.empty() ? "" : (" " + std::to_string(targets.size()) + " child process(es)").c_str());
  std::set<pid_t> tree = process_tree(targets);
  for (pid_t t : tree) ::kill(t, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + kGrace;
  while (!all_gone(tree) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (pid_t t : process_tree(tree)) ::kill(t, SIGKILL);
  for (const std::string& p : paths) {
    std::error_code ignored;
    std::filesystem::remove_all(p, ignored);
  }
  std::fflush(stderr);
  ::_exit(128 + sig);
}

}  // namespace

void install_interrupt_handling() {
  const sigset_t set = interrupt_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Returns once the watcher is about to wait: a thread that is still starting may hold an allocator lock, and a
  // simulation forked at that moment would inherit the lock held and block forever (seen with AddressSanitizer's
  // allocator, which has no fork handler).
  std::promise<void> started;
  std::future<void> ready = started.get_future();
  // The thread owns the promise: set_value may still touch it after the wait below has returned.
  std::thread([set, started = std::move(started)]() mutable {
    started.set_value();
    int sig = 0;
    while (::sigwait(&set, &sig) != 0) {
    }
    stop_everything(sig);
  }).detach();
  ready.wait();
}

void prepare_forked_child(int signal_on_parent_death, bool own_group) {
  const pid_t parent = ::getppid();
  for (int s : kSignals) std::signal(s, SIG_DFL);
  const sigset_t set = interrupt_signals();
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  if (own_group) ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, signal_on_parent_death);
  if (::getppid() != parent) ::_exit(128 + signal_on_parent_death);  // the parent died before prctl took effect
}

void wait_if_interrupted() {
  // The watcher ends the process within the grace period; until then this thread must not act on a child that
  // ended because it was stopped.
  while (g_interrupted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

void remove_on_interrupt(const std::string& path) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().paths.insert(path);
}

ChildProcessGuard::ChildProcessGuard(pid_t pid, bool own_group) : target_(own_group ? -pid : pid) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().targets.insert(target_);
}

ChildProcessGuard::~ChildProcessGuard() {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().targets.erase(registry().targets.find(target_));
}

TemporaryPathGuard::TemporaryPathGuard(std::string path) : path_(std::move(path)) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().paths.insert(path_);
}

TemporaryPathGuard::~TemporaryPathGuard() {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().paths.erase(registry().paths.find(path_));
}

int run_child_process(const std::vector<std::string>& args, const std::vector<std::pair<std::string, std::string>>& env,
                      const std::function<void(pid_t)>& started) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);  // do not duplicate buffered output in the child
  const pid_t pid = ::fork();
  if (pid < 0) throw RuntimeFailure("cannot start " + args.front());
  if (pid == 0) {
    prepare_forked_child(SIGTERM, true);
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 0);
    ::execvp(argv[0], argv.data());
    std::perror(argv[0]);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so that the group exists before the guard can signal it
  ChildProcessGuard guard(pid, true);
  if (started) started(pid);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  wait_if_interrupted();
  return status;
}

}  // namespace moesys::core
