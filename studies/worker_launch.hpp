#pragma once
// Runs the MPI half of a real run: moesys-exec-worker (beside this executable; SimGrid exports MPI symbols of its
// own, so MPI code lives in a program that does not link it), under mpirun for more than one rank.
#include <string>
#include <vector>

namespace moesys::studies {

/// Runs the worker with `args`; throws core::RuntimeFailure when it cannot start or exits with an error.
/// `worker` names the program beside this executable (moesys-exec-worker: CPU ranks; moesys-cuda-worker: GPUs).
void run_exec_worker(int ranks, const std::vector<std::string>& args, const std::string& worker = "moesys-exec-worker");
/// A fresh path in the temporary directory for the worker's files (this process's id in the name).
std::string worker_temp_path(const std::string& stem);

}  // namespace moesys::studies
