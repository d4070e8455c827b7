// Microbenchmarks of the simulator's hot paths that run outside the SimGrid engine: building the cluster
// graph, answering routes, and planning collectives (the transfer lists handed to the flow engine).
// Whole simulations are benchmarked by `moesys collective` (it reports wall time and peak memory), because
// SimGrid allows one engine per process.
#include <benchmark/benchmark.h>

#include "core/cluster_graph.hpp"
#include "sim/collectives.hpp"

using namespace moesys;

namespace {

core::ClusterSpec cluster_of(int nodes) {
  core::ClusterGeneratorOptions o;
  o.nodes = nodes;
  return core::generate_cluster(o);
}

void BM_ClusterGraphBuild(benchmark::State& state) {
  const auto spec = cluster_of(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(core::ClusterGraph(spec, core::default_calibration()));
  state.SetLabel(std::to_string(spec.total_gpus()) + " GPUs");
}
BENCHMARK(BM_ClusterGraphBuild)->Arg(6)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond);

void BM_InterNodeRoute(benchmark::State& state) {
  const auto spec = cluster_of(512);
  const core::ClusterGraph g(spec, core::default_calibration());
  int i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(g.route(g.gpu(i % 4096), g.gpu((i * 7919 + 13) % 4096)));
    ++i;
  }
}
BENCHMARK(BM_InterNodeRoute);

sim::CollectiveCall uniform_all_to_all(int gpus) {
  sim::CollectiveCall call;
  call.op = sim::CollectiveOp::all_to_all;
  for (int g = 0; g < gpus; ++g) call.members.push_back(g);
  call.matrix.assign(static_cast<std::size_t>(gpus), std::vector<double>(static_cast<std::size_t>(gpus), 1 << 20));
  return call;
}

void BM_PlanDirectAllToAll(benchmark::State& state) {
  const int gpus = static_cast<int>(state.range(0));
  const auto spec = cluster_of(gpus / 8);
  const auto call = uniform_all_to_all(gpus);
  for (auto _ : state) benchmark::DoNotOptimize(sim::plan_direct_all_to_all(spec, core::default_calibration(), call));
}
BENCHMARK(BM_PlanDirectAllToAll)->Arg(48)->Arg(1024)->Unit(benchmark::kMillisecond);

void BM_PlanHierarchicalAllToAll(benchmark::State& state) {
  const int gpus = static_cast<int>(state.range(0));
  const auto spec = cluster_of(gpus / 8);
  const auto call = uniform_all_to_all(gpus);
  for (auto _ : state)
    benchmark::DoNotOptimize(sim::plan_hierarchical_all_to_all(spec, core::default_calibration(), call));
}
BENCHMARK(BM_PlanHierarchicalAllToAll)->Arg(48)->Arg(1024)->Unit(benchmark::kMillisecond);

void BM_PlanRingAllReduce(benchmark::State& state) {
  const int gpus = static_cast<int>(state.range(0));
  const auto spec = cluster_of(gpus / 8);
  sim::CollectiveCall call;
  call.op = sim::CollectiveOp::all_reduce;
  call.bytes = 1 << 30;
  for (int g = 0; g < gpus; ++g) call.members.push_back(g);
  for (auto _ : state) benchmark::DoNotOptimize(sim::plan_ring(spec, call, sim::Protocol::simple));
}
BENCHMARK(BM_PlanRingAllReduce)->Arg(48)->Arg(4096)->Unit(benchmark::kMillisecond);

}  // namespace
