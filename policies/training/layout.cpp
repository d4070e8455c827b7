#include "policies/training/layout.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moesys::policies::training {

namespace {
std::string str(int v) { return std::to_string(v); }

/// Layers per model chunk: the config's list, or an even split of the main layers (which must divide); the
/// multi-token prediction modules' blocks join the last chunk, after the output layer (as Megatron places them).
std::vector<int> chunk_layers(const TrainingConfig& c) {
  std::vector<int> n = c.stage_layers;
  const int chunks = c.pipeline_parallel * c.virtual_stages, layers = c.model.main_layers();
  if (n.empty()) {
    if (layers % chunks != 0)
      throw core::InfeasibleError(str(layers) + " layers cannot be divided evenly over " + str(c.pipeline_parallel) +
                                  " pipeline stages" +
                                  (c.virtual_stages > 1 ? " of " + str(c.virtual_stages) + " model chunks" : "") +
                                  "; give parallel.stage_layers (e.g. a shorter first or last stage)");
    n.assign(static_cast<std::size_t>(chunks), layers / chunks);
  }
  n.back() += c.model.mtp_blocks;
  return n;
}
/// The all-gather dispatcher (policy.hpp): what it does not combine with, and why.
void check_all_gather_dispatcher(const TrainingConfig& c, const Layout& l) {
  const std::string with = "with \"dispatcher\": \"all_gather\"";
  if (l.replica_slots > 0)
    throw core::InfeasibleError("expert replicas split an expert's rows between its copies, which needs the all-to-all "
                                "dispatcher; " + with + " every member computes only its own experts' rows");
  if (c.policy.overlap_chunks > 1)
    throw core::InfeasibleError("overlap_chunks " + str(c.policy.overlap_chunks) + " pipelines the all-to-all " +
                                "dispatcher's chunks; " + with + " set \"overlap_chunks\": 1");
  if (c.policy.all_to_all != AllToAll::flat)
    throw core::InfeasibleError(std::string("\"all_to_all\": \"") + to_string(c.policy.all_to_all) +
                                "\" is an algorithm of the all-to-all dispatcher; " + with + " set \"all_to_all\": \"flat\"");
  if (c.multitask())
    throw core::InfeasibleError("the all-gather dispatcher gathers equal token shards from every member of an "
                                "expert-parallel group; a multi-task workload gives ranks different token counts");
}

/// The DeepEP dispatcher (policy.hpp): dropless rows, its own all-to-all algorithm, and rails to forward along.
void check_deepep_dispatcher(const TrainingConfig& c, const Layout& l) {
  const std::string with = "with \"dispatcher\": \"deepep\"";
  if (c.policy.dispatch != Dispatch::counts)
    throw core::InfeasibleError("DeepEP's dispatch is dropless and sends the routed rows only; " + with +
                                " set \"dispatch\": \"counts\"");
  if (c.policy.all_to_all != AllToAll::flat)
    throw core::InfeasibleError(std::string("\"all_to_all\": \"") + to_string(c.policy.all_to_all) +
                                "\" is another all-to-all algorithm; " + with + " set \"all_to_all\": \"flat\"");
  if (l.replica_slots > 0)
    throw core::InfeasibleError("expert replicas with the DeepEP dispatcher are not modelled (its per-node token "
                                "estimate assumes the gate's layout of experts); " + with + " set \"replicas\": "
                                "{\"kind\": \"none\"}");
  if (c.cluster.node.intra_node.kind == core::IntraNodeKind::pcie_only)
    throw core::InfeasibleError("DeepEP's kernels share a node's rows over NVLink; the nodes of " + c.cluster.name +
                                " connect their GPUs through PCIe only");
  if (l.ep_members_per_node() == 0)
    throw core::InfeasibleError("DeepEP forwards a token from the GPU of the sender's local index on each node, so an "
                                "expert-parallel group must lie inside one node or hold whole nodes (expert-parallel "
                                "size " + str(l.ep) + ", " + str(l.gpus_per_node) + " GPUs per node)");
}

/// The expert all-to-all by NCCL's copy engines: intra-node only, over NVLink, so every expert group (contiguous
/// ranks) must lie inside one NVLink node.
void check_copy_engine_all_to_all(const TrainingConfig& c, const Layout& l) {
  if (c.cluster.node.intra_node.kind != core::IntraNodeKind::nvswitch)
    throw core::InfeasibleError("\"all_to_all\": \"copy_engine\" copies over NVLink; the nodes of " + c.cluster.name +
                                " connect their GPUs through PCIe only");
  if (l.gpus_per_node % l.expert_group() != 0)
    throw core::InfeasibleError("\"all_to_all\": \"copy_engine\" is NCCL's intra-node all-to-all, so an expert group (" +
                                str(l.expert_group()) + " ranks) must lie inside one node of " + str(l.gpus_per_node) +
                                " GPUs");
}

/// Expert tensor parallelism: its groups must divide the stage and the experts' width; only the all-gather
/// dispatcher runs it (the all-to-all one would need an all-gather of varying rows inside each expert-tensor group).
void check_expert_tensor_parallel(const TrainingConfig& c, const Layout& l) {
  const std::string etp = "expert-tensor-parallel size " + str(l.etp);
  if (c.policy.dispatcher != Dispatcher::all_gather)
    throw core::InfeasibleError(etp + ": runs with the all-gather dispatcher only; set the policy's "
                                "\"dispatcher\": \"all_gather\"");
  if (l.world % l.expert_group() != 0)
    throw core::InfeasibleError(etp + ": " + str(l.world) + " ranks" + (l.pp > 1 ? " of a pipeline stage" : "") +
                                " do not divide into expert groups of " + str(l.ep) + " x " + str(l.etp));
  if (c.model.expert_hidden() % l.etp != 0)
    throw core::InfeasibleError(etp + ": the experts' FFN width " + str(c.model.expert_hidden()) +
                                " does not divide over it");
  if (c.policy.offload != Offload::none)
    throw core::InfeasibleError(etp + ": offloaded experts are not modelled with it (offload none)");
}

/// Context parallelism: the chunks must divide the stage and the sequences (InfeasibleError otherwise).
void check_context_parallel(const TrainingConfig& c, const Layout& l) {
  const core::ModelConfig& m = c.model;
  const std::string cp = "context-parallel size " + str(l.cp);
  auto require = [&](bool ok, const std::string& why) {
    if (!ok) throw core::InfeasibleError(cp + ": " + why);
  };
  require(l.world % (l.tp * l.cp) == 0, str(l.world) + " ranks" + (l.pp > 1 ? " of a pipeline stage" : "") +
                                           " do not divide into " + str(l.cp) + " x tensor-parallel " + str(l.tp));
  require(m.seq_len % (2 * l.cp) == 0, "the sequence length " + str(m.seq_len) + " does not divide into " +
                                          str(2 * l.cp) + " zigzag blocks (two per member)");
  require(m.tokens_per_micro_batch() / l.cp % l.tp == 0,
          "a micro-batch's chunk of " + std::to_string(m.tokens_per_micro_batch() / l.cp) +
              " tokens does not divide into sequence shards");
  require(!m.learned_positions, "a learned position table is not modelled with it (rotary positions are)");
  require(!c.multitask(), "multi-task workloads place sequences per rank, which chunks would split");
  require(c.policy.embedding == Embedding::dense, "the embedding partition is not modelled with it");
}

/// Tensor parallelism: the shapes it cuts must divide, its groups must sit inside nodes (InfeasibleError otherwise).
void check_tensor_parallel(const TrainingConfig& c, const Layout& l) {
  if (l.tp == 1) return;
  const core::ModelConfig& m = c.model;
  const std::string tp = "tensor-parallel size " + str(l.tp);
  auto require = [&](bool ok, const std::string& why) {
    if (!ok) throw core::InfeasibleError(tp + ": " + why);
  };
  require(l.world % l.tp == 0, str(l.world) + " ranks" + (l.pp > 1 ? " of a pipeline stage" : "") +
                                   " do not divide into tensor-parallel groups of " + str(l.tp));
  require(c.cluster.node.gpus % l.tp == 0,
          "tensor-parallel groups stay inside a node, and " + str(c.cluster.node.gpus) + " GPUs per node do not divide into them");
  require(m.heads % l.tp == 0, "the model's " + str(m.heads) + " attention heads do not divide over it");
  require(m.attention == core::AttentionKind::mla || m.kv_head_count() % l.tp == 0,
          "the model's " + str(m.kv_head_count()) + " key/value heads do not divide over it");
  require(m.dense_ffn_layers() == 0 || m.ffn_hidden() % l.tp == 0,
          "the dense FFN width " + str(m.ffn_hidden()) + " does not divide over it");
  require(m.tokens_per_micro_batch() % l.tp == 0,
          "a micro-batch's " + std::to_string(m.tokens_per_micro_batch()) + " tokens do not divide into sequence shards");
  require(!m.learned_positions || (m.tokens_per_micro_batch() / l.tp) % m.seq_len == 0,
          "learned positions need whole sequences in every sequence shard (a micro-batch of " + str(m.micro_batch) +
              " sequences over " + str(l.tp) + " ranks); raise micro_batch to a multiple of it");
  require(!c.multitask(), "multi-task workloads place sequences per rank, which sequence shards would split");
  const TrainingPolicy& p = c.policy;
  require(p.dense == DenseSharding::ddp || p.dense == DenseSharding::distributed,
          "dense " + std::string(p.dense == DenseSharding::zero3 ? "zero3" : "zero2") +
              " is not modelled with it (its gradients leave the buffer before the tensor-parallel sum); use ddp or "
              "distributed");
  require(p.embedding == Embedding::dense, "the embedding partition is not modelled with it; use embedding dense");
  require(p.replicas.kind == Replication::none, "expert replicas are not modelled with it");
}
}  // namespace

Layout make_layout(const TrainingConfig& c) {
  Layout l;
  l.ranks = c.gpus;
  l.pp = c.pipeline_parallel;
  l.vpp = c.virtual_stages;
  if (c.stage_layers.empty() && l.chunks() > c.model.main_layers())
    throw core::InfeasibleError(str(l.chunks()) + (l.vpp > 1 ? " model chunks" : " pipeline stages") +
                                " exceed the model's " + str(c.model.main_layers()) + " layers");
  if (l.ranks % l.pp != 0)
    throw core::InfeasibleError(str(l.ranks) + " ranks cannot be divided into " + str(l.pp) + " pipeline stages");
  l.world = l.ranks / l.pp;
  l.tp = c.tensor_parallel;
  check_tensor_parallel(c, l);
  l.cp = c.context_parallel;
  if (l.cp > 1) check_context_parallel(c, l);
  l.chunk_first_layer = {0};
  for (int n : chunk_layers(c)) l.chunk_first_layer.push_back(l.chunk_first_layer.back() + n);
  l.ep = c.expert_parallel;
  l.etp = c.expert_tensor_parallel;
  l.experts = c.model.experts;
  l.gpus_per_node = c.cluster.node.gpus;
  l.node_ranks = std::min(l.world, l.gpus_per_node);
  const std::string in_stage = l.pp > 1 ? " of a pipeline stage" : "";
  if (l.ep > l.world)
    throw core::InfeasibleError("expert-parallel size " + str(l.ep) + " exceeds the " + str(l.world) + " ranks" +
                                in_stage);
  if (l.experts % l.ep != 0)
    throw core::InfeasibleError(str(l.experts) +
                                " experts cannot be divided evenly over an expert-parallel "
                                "group of " +
                                str(l.ep) + " ranks (experts must be a multiple of it)");
  if (l.world % l.ep != 0)
    throw core::InfeasibleError(str(l.world) + " ranks" + in_stage + " cannot be divided into expert-parallel groups of " +
                                str(l.ep));
  if (l.world % l.node_ranks != 0)
    throw core::InfeasibleError(str(l.world) + " ranks" + in_stage + " do not fill whole nodes of " +
                                str(l.gpus_per_node) + " GPUs");
  if (l.etp > 1) check_expert_tensor_parallel(c, l);
  l.edp = l.world / l.expert_group();
  l.local_experts = l.experts / l.ep;
  l.replica_slots = c.policy.replicas.kind == Replication::none ? 0 : c.policy.replicas.slots;
  if (l.replica_slots > 0 && c.policy.dispatch != Dispatch::counts)
    throw core::InfeasibleError("expert replicas split an expert's rows between its copies, which needs counted "
                                "dispatch (\"dispatch\": \"counts\"); padded dispatch sends whole capacity blocks");
  if (l.replica_slots > 0 && c.policy.offload != Offload::none)
    throw core::InfeasibleError(
        "expert replicas with offloaded experts are not modelled (training: offload none; inference: policy "
        "all-in-gpu)");
  if (l.replica_slots > 0 && c.policy.replicas.node_scope && l.ep > 1 && l.ep_members_per_node() == 1)
    throw core::InfeasibleError("node-scoped expert replicas need two or more GPUs of an expert-parallel group per "
                                "node (a node's copies hold only that node's experts); this cluster has " +
                                str(l.gpus_per_node) + " GPU per node");
  if (c.policy.dispatcher == Dispatcher::all_gather) check_all_gather_dispatcher(c, l);
  if (c.policy.dispatcher == Dispatcher::deepep) check_deepep_dispatcher(c, l);
  if (c.policy.all_to_all == AllToAll::copy_engine) check_copy_engine_all_to_all(c, l);
  if (l.replica_slots > 0 && c.policy.replicas.node_scope && l.ep_members_per_node() == 0)
    throw core::InfeasibleError("node-scoped expert replicas need expert-parallel groups that split into whole node "
                                "groups (expert-parallel size " + str(l.ep) + ", " + str(l.gpus_per_node) +
                                " GPUs per node)");
  return l;
}

int Layout::ep_members_per_node() const {
  const int per_node = std::min(ep, gpus_per_node);
  for (int base = 0; base < ranks; base += ep)
    for (int m = 0; m < ep; ++m)
      if ((base + m) / gpus_per_node != base / gpus_per_node + m / per_node || base % per_node != 0) return 0;
  return per_node;
}

int Layout::chunk_of_layer(int layer) const {
  int k = 0;
  while (k + 1 < chunks() && chunk_first_layer[static_cast<std::size_t>(k + 1)] <= layer) ++k;
  return k;
}

core::Group Layout::dp_group(int rank) const {
  std::vector<int> r;
  for (int i = tp_index(rank); i < world; i += tp) r.push_back(stage(rank) * world + i);
  return core::Group(std::move(r));
}

core::Group Layout::cp_group(int rank) const {
  std::vector<int> r;
  const int base = stage(rank) * world + replica_index(rank) * tp * cp + tp_index(rank);
  for (int c = 0; c < cp; ++c) r.push_back(base + c * tp);
  return core::Group(std::move(r));
}

core::Group Layout::tp_group(int rank) const {
  std::vector<int> r;
  for (int i = 0; i < tp; ++i) r.push_back(rank - tp_index(rank) + i);
  return core::Group(std::move(r));
}

core::Group Layout::ep_group(int rank) const {
  std::vector<int> r;
  for (int i = 0; i < expert_group(); ++i) r.push_back(ep_base(rank) + i);
  return core::Group(std::move(r));
}

core::Group Layout::edp_group(int rank) const {
  std::vector<int> r;
  const int base = stage(rank) * world;
  for (int i = 0; i < edp; ++i) r.push_back(base + rank % expert_group() + i * expert_group());
  return core::Group(std::move(r));
}

core::Group Layout::node_group(int rank) const {
  std::vector<int> r;
  const int base = rank - rank % node_ranks;
  for (int i = 0; i < node_ranks; ++i) r.push_back(base + i);
  return core::Group(std::move(r));
}

core::Group Layout::rail_group(int rank) const {
  std::vector<int> r;
  const int base = stage(rank) * world;
  for (int g = base + rank % node_ranks; g < base + world; g += node_ranks) r.push_back(g);
  return core::Group(std::move(r));
}

core::Group Layout::embedding_group(int rank) const {
  if (pp == 1) return core::Group({rank});  // one stage holds the only copy
  const int local = rank - stage(rank) * world;
  return core::Group({local, (pp - 1) * world + local});
}

}  // namespace moesys::policies::training
