// moesys-exec-worker: the MPI half of `moesys validate`. SimGrid's library exports the MPI symbols too (SMPI), so a
// process that links both resolves MPI_Init to SimGrid's: the real run therefore lives in this separate program,
// which links MPI but not SimGrid. It measures this machine (exec/cpu/machine_probe), trains the GPT-MoE for real
// and writes, from rank 0, one JSON document: rates, cluster description, calibration and the measured breakdown.
//   moesys-exec-worker OUT.json hidden layers heads experts top_k seq micro_batch vocab steps warmup all_to_all
//   moesys-exec-worker train CONFIG.json OUT.json      (the training program of `moesys train --runtime cpu`)
//   moesys-exec-worker validate-train CONFIG.json OUT.json   (the same after measuring this machine)
#include <cblas.h>

#include <cstdio>
#include <string>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/calibration.hpp"
#include "core/model_config.hpp"
#include "exec/cpu/cpu_runtime.hpp"
#include "exec/cpu/machine_probe.hpp"
#include "exec/model/train_program.hpp"
#include "exec/tools/train_worker.hpp"

int main(int argc, char** argv) {
  using namespace moesys;
  exec::cpu::MpiSession mpi(&argc, &argv);
  try {
    if (argc == 4 && (std::string(argv[1]) == "train" || std::string(argv[1]) == "validate-train"))
      return exec::tools::run_train_worker(mpi.rank(), mpi.size(), argv[2], argv[3],
                                           std::string(argv[1]) == "validate-train");
    if (argc != 13) throw std::invalid_argument("expected 12 arguments (see the source)");
    exec::model::GptMoeConfig c;
    c.hidden = std::atoi(argv[2]), c.layers = std::atoi(argv[3]), c.heads = std::atoi(argv[4]);
    c.experts = std::atoi(argv[5]), c.top_k = std::atoi(argv[6]), c.seq_len = std::atoi(argv[7]);
    c.micro_batch = std::atoi(argv[8]), c.vocab = std::atoi(argv[9]);
    const int steps = std::atoi(argv[10]), warmup = std::atoi(argv[11]);
    c.all_to_all = core::parse_collective_algo(argv[12]);
    const int P = mpi.size();
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    openblas_set_num_threads(std::max(1, cores / P));  // ranks share the cores

    const auto shape = exec::model::probe_shape(c, P);
    const auto rates = exec::cpu::probe_machine(shape);
    core::Calibration cal;
    const core::ClusterSpec spec = exec::cpu::cluster_from_rates(rates, shape, cal);
    exec::cpu::CpuOptions opts;
    opts.check_collectives = false;  // the safety all-reduce is not part of the modelled step
    exec::cpu::CpuRuntime rt(spec, opts);
    exec::model::train_steps(rt, c, warmup + steps);
    const auto measured = exec::model::step_breakdown(rt.spans(), warmup);
    if (mpi.rank() == 0) {
      nlohmann::json j = {{"cluster", core::cluster_to_json(spec)},
                          {"calibration", core::calibration_to_json(cal)},
                          {"rates",
                           {{"gemm_flop_per_s", rates.gemm_flop_per_s},
                            {"copy_bytes_per_s", rates.copy_bytes_per_s},
                            {"stream_bytes_per_s", rates.stream_bytes_per_s},
                            {"all_to_all_bytes_per_s", rates.all_to_all_bytes_per_s},
                            {"latency_s", rates.latency_s},
                            {"op_overhead_s", rates.op_overhead_s},
                            {"ssd_read_bytes_per_s", rates.ssd_read_bytes_per_s},
                            {"ssd_write_bytes_per_s", rates.ssd_write_bytes_per_s}}},
                          {"measured", exec::model::to_json(measured)}};
      std::ofstream out(argv[1]);
      if (!(out << j.dump(1) << "\n")) throw core::RuntimeFailure(std::string("cannot write ") + argv[1]);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesys-exec-worker: rank %d: %s\n", mpi.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
