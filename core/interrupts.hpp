#pragma once
// Clean interrupts. SIGINT, SIGTERM and SIGHUP stop the program and everything it started within a second, with one
// line on stderr, and leave no temporary file behind:
//   - the signals are blocked in every thread and taken by one watcher thread (so the reaction is ordinary code,
//     not a signal handler), which terminates the registered child process groups (SIGTERM, then SIGKILL after a
//     grace period), removes the registered temporary paths and exits with 128 + the signal number;
//   - children are started in their own process group, so mpirun and its workers go together, and ask the kernel
//     for a signal when this process dies, so that even `kill -9` of moesys leaves no orphan.
#include <sys/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace moesys::core {

/// Starts the watcher. Call once, first thing in main, before any other thread exists.
void install_interrupt_handling();

/// In a freshly forked child, before exec or before running a simulation: restores the default reaction to the
/// signals (the child inherits the blocked mask, which exec keeps) and asks for `signal_on_parent_death` when
/// the parent dies. `own_group` moves the child into a process group of its own (pid = group id).
void prepare_forked_child(int signal_on_parent_death, bool own_group);

/// Runs a program (argv[0] looked up on PATH) in its own process group, as a registered child that gets SIGTERM if
/// this process dies, and waits for it. `started` (optional) learns the child's pid, e.g. to register the files it
/// will create. Returns its wait status (see waitpid); throws RuntimeFailure when it cannot be started.
int run_child_process(const std::vector<std::string>& argv,
                      const std::vector<std::pair<std::string, std::string>>& env = {},
                      const std::function<void(pid_t)>& started = {});

/// Called after waiting for a child: while an interrupt is being handled (the child ended because the watcher stopped
/// it), blocks until the watcher ends the process, so that nothing acts on the child's absence.
void wait_if_interrupted();

/// Registers a temporary file or folder for removal on interrupt, for the rest of the process.
void remove_on_interrupt(const std::string& path);

/// Registers a running child (its process group when it has one of its own) until destroyed.
class ChildProcessGuard {
public:
  ChildProcessGuard(pid_t pid, bool own_group);
  ~ChildProcessGuard();
  ChildProcessGuard(const ChildProcessGuard&) = delete;
  ChildProcessGuard& operator=(const ChildProcessGuard&) = delete;

private:
  pid_t target_;
};

/// Registers a temporary file or folder to remove on interrupt until destroyed. The guard does not remove the path
/// itself: its owner renames or removes it.
class TemporaryPathGuard {
public:
  explicit TemporaryPathGuard(std::string path);
  ~TemporaryPathGuard();
  TemporaryPathGuard(const TemporaryPathGuard&) = delete;
  TemporaryPathGuard& operator=(const TemporaryPathGuard&) = delete;

private:
  std::string path_;
};

}  // namespace moesys::core
