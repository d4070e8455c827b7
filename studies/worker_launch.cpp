#include "studies/worker_launch.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.hpp"

namespace moesys::studies {

void run_exec_worker(int ranks, const std::vector<std::string>& args, const std::string& name) {
  const auto self = std::filesystem::read_symlink("/proc/self/exe");
  const auto worker = self.parent_path() / name;
  if (!std::filesystem::exists(worker))
    throw core::RuntimeFailure("cannot find " + worker.string() +
                               (name == "moesys-cuda-worker" ? " (built when nvcc and NCCL are found)"
                                                             : " (built with MPI and OpenBLAS)"));
  std::vector<std::string> cmd;
  if (ranks > 1) cmd = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", std::to_string(ranks)};
  cmd.push_back(worker.string());
  cmd.insert(cmd.end(), args.begin(), args.end());
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) throw core::RuntimeFailure("cannot start " + cmd.front());
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : cmd) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::setenv("OPENBLAS_NUM_THREADS", "1", 0);
    ::execvp(argv[0], argv.data());
    std::perror(argv[0]);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw core::RuntimeFailure("the real run failed (" + cmd.front() + " exited with status " +
                               std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
}

std::string worker_temp_path(const std::string& stem) {
  return (std::filesystem::temp_directory_path() / (stem + "-" + std::to_string(::getpid()) + ".json")).string();
}

}  // namespace moesys::studies
