#include "studies/worker_launch.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.hpp"
#include "core/exec_timeout.hpp"
#include "core/interrupts.hpp"

namespace moesys::studies {

void run_exec_worker(int ranks, const std::vector<std::string>& args, const std::string& name) {
  core::exec_timeout_s();  // a bad MOESYS_EXEC_TIMEOUT_S is the user's input: refused first, before any rank starts
  const auto self = std::filesystem::read_symlink("/proc/self/exe");
  const auto worker = self.parent_path() / name;
  if (!std::filesystem::exists(worker))
    throw core::RuntimeFailure(
        "cannot find " + worker.string() +
        (name == "moesys-cuda-worker" ? " (built when nvcc and NCCL are found)" : " (built with MPI and OpenBLAS)"));
  std::vector<std::string> cmd;
  if (ranks > 1) cmd = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", std::to_string(ranks)};
  cmd.push_back(worker.string());
  cmd.insert(cmd.end(), args.begin(), args.end());
  // mpirun and its workers run in a process group of their own, stopped together on an interrupt.
  const int status = core::run_child_process(cmd, {{"OPENBLAS_NUM_THREADS", "1"}}, [](pid_t pid) {
    // mpirun keeps its session in TMPDIR/ompi.<host>.<uid>/pid.<pid>; stopped on an interrupt, it may not get to
    // remove it within the grace period.
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string node = std::string(host).substr(0, std::string(host).find('.'));
    core::remove_on_interrupt((std::filesystem::temp_directory_path() /
                               ("ompi." + node + "." + std::to_string(::getuid())) / ("pid." + std::to_string(pid)))
                                  .string());
  });
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw core::RuntimeFailure("the real run failed (" + cmd.front() + " exited with status " +
                               std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
}

std::string worker_temp_path(const std::string& stem) {
  const std::string path =
      (std::filesystem::temp_directory_path() / (stem + "-" + std::to_string(::getpid()) + ".json")).string();
  core::remove_on_interrupt(path);
  return path;
}

}  // namespace moesys::studies
