#pragma once
// The training program on real CPU ranks: `moesys-exec-worker train CONFIG.json OUT.json` (under mpirun, one
// process per rank) plans the training config, runs the very program the simulator runs on the CPU runtime, and
// writes from rank 0 every rank's spans, memory peaks and counters (see cli/cmd_train.cpp for the reader).
//
// With `probe` (`moesys-exec-worker validate-train ...`, for `moesys validate --preset`), the ranks first measure
// this machine (exec/cpu/machine_probe) at the config's shapes, run the program on the cluster description built
// from those rates, and write the description, calibration and rates too: probe and run share one window.
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::exec::tools {
/// Makes the rank's runtime on the (possibly measured) cluster; the CPU runtime when empty.
using RuntimeFactory = std::function<std::unique_ptr<core::Runtime>(const core::ClusterSpec&)>;
int run_train_worker(int rank, int size, const char* config_path, const char* out_path, bool probe = false,
                     const RuntimeFactory& make_runtime = {});

/// Rank 0 receives every rank's document (MPI_Gatherv of the serialised text); other ranks get an empty list.
std::vector<std::string> gather_text(const std::string& mine, int rank, int size);
/// Writes `doc` to `path` through a temporary file and a rename (nothing half-written is left).
void write_json_file(const std::string& path, const nlohmann::json& doc);
}
