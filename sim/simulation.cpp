#include "sim/simulation.hpp"

#include <memory>
#include <stdexcept>

#include <simgrid/Exception.hpp>
#include <xbt/log.h>

#include "core/error.hpp"
#include "sim/profile.hpp"
#include "sim/sim_runtime.hpp"

namespace moesys::sim {

SimResult simulate(const core::ClusterSpec& spec, int ranks, const RankProgram& program, const SimOptions& options) {
  if (ranks < 1 || ranks > spec.total_gpus())
    throw core::InfeasibleError("cannot run " + std::to_string(ranks) + " ranks on a cluster of " +
                                std::to_string(spec.total_gpus()) + " GPUs");
  // SimGrid's own messages (configuration changes, deadlock reports) stay quiet; failures surface as exceptions.
  xbt_log_control_set("root.thresh:critical");
  char name[] = "moesys";
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer cannot follow SimGrid's own context switches (the distribution's library carries no fiber
  // annotations) and reports stack-use-after-scope inside switched stacks; system threads are slower but exact.
  // The factory is chosen when the engine starts, so it goes on its command line.
  char factory[] = "--cfg=contexts/factory:thread";
  int argc = 2;
  char* argv[] = {name, factory, nullptr};
#else
  int argc = 1;
  char* argv[] = {name, nullptr};
#endif
  sg::sg4::Engine engine(&argc, argv);
  sg::configure_engine(engine);

  SimWorld world(spec, options.calibration,
                 {options.flow_mode, options.direct_flow_limit, options.flows_per_carrier, options.solo_flows,
                  options.max_solo_component},
                 ranks);
  std::vector<std::unique_ptr<SimRuntime>> runtimes;
  std::vector<bool> finished(static_cast<std::size_t>(ranks), false);
  SimResult result;
  result.ranks.resize(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    runtimes.push_back(std::make_unique<SimRuntime>(world, r, ranks, options.coalesce_kernels));
    SimRuntime* rt = runtimes.back().get();
    sg::sg4::Actor::create("rank" + std::to_string(r), world.platform().gpu(r), [&, rt, r] {
      profile::Scope own(profile::Phase::program);
      try {
        program(*rt);
        rt->synchronize();
        finished[static_cast<std::size_t>(r)] = true;
        result.ranks[static_cast<std::size_t>(r)].finish_s = rt->now_s();
      } catch (const simgrid::ForcefulKillException&) {
        throw;  // SimGrid ends an actor left blocked by a deadlock this way; the deadlock report follows the run
      } catch (...) {
        world.record_failure(std::current_exception());
        sg::sg4::Actor::kill_all();
      }
    });
  }
  {
    profile::InSimgrid in;
    engine.run();
  }

  if (world.failure()) std::rethrow_exception(world.failure());
  for (int r = 0; r < ranks; ++r) {
    if (!finished[static_cast<std::size_t>(r)]) {
      std::string waiting;
      for (const auto& k : world.pending_rendezvous()) waiting += (waiting.empty() ? "" : "; ") + k;
      throw core::RuntimeFailure("deadlock: rank " + std::to_string(r) + " never finished; waiting: " +
                                 (waiting.empty() ? "nothing (a wait on an event that never completes)" : waiting));
    }
  }
  profile::Scope reporting(profile::Phase::bookkeeping);
  for (int r = 0; r < ranks; ++r) {
    auto& rep = result.ranks[static_cast<std::size_t>(r)];
    rep.spans = runtimes[static_cast<std::size_t>(r)]->spans();
    rep.memory = runtimes[static_cast<std::size_t>(r)]->memory();
    result.makespan_s = std::max(result.makespan_s, rep.finish_s);
  }
  result.bytes_by_path_class = world.flows().bytes_by_class();
  result.flows = world.flows().flows_started();
  result.solo_flows = world.flows().solo_flows();
  result.met_flows = world.flows().met_flows();
  return result;
}

}  // namespace moesys::sim
