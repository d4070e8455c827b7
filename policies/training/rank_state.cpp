#include "policies/training/rank_state.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "policies/training/memory_plan.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/tensor_parallel.hpp"

namespace moesys::policies::training {

namespace {
using core::Tier;
using I = std::int64_t;

std::uint64_t B(double elems, double bytes_per) { return static_cast<std::uint64_t>(elems * bytes_per); }
I round_up(I n, I k) { return (n + k - 1) / k * k; }
const char* tag(MemoryUse u) { return to_string(u); }
}  // namespace

core::Buffer Carver::take(std::uint64_t bytes) {
  bytes = (bytes + 15) / 16 * 16;  // keep every view aligned
  core::Buffer v;
  if (block_) v = block_.slice(used_, bytes);
  used_ += bytes;
  return v;
}

std::vector<std::vector<std::int64_t>> unit_tensors(const core::ModelConfig& m, const TrainingPolicy& p) {
  std::vector<std::vector<std::int64_t>> u;
  auto emb = embedding_tensors(m);
  if (p.embedding == Embedding::partition) emb[0] = 0;  // the table is column-sharded apart
  u.push_back(emb);
  for (int l = 0; l < m.layers; ++l) u.push_back(layer_dense_tensors(m, l));
  return u;
}

std::vector<std::vector<std::int64_t>> stage_unit_tensors(const core::ModelConfig& m, const TrainingPolicy& p,
                                                          const Layout& l, int stage) {
  auto u = unit_tensors(m, p);
  if (l.pp == 1) return u;
  // Every unit keeps its place (unit l + 1 is layer l) so that the program indexes units alike on every stage; the
  // stage holds only its layers, the lookup's tables on the first stage, the final norm and output layer on the last.
  // A tied token table is the last stage's output layer too, and multi-token prediction modules on the last stage
  // look up the next tokens in it: then both stages hold a copy (their gradients are summed over the embedding
  // group, grad_sync.cpp, so the copies stay equal).
  for (int layer = 0; layer < m.layers; ++layer)
    if (l.stage_of_layer(layer) != stage)
      std::fill(u[static_cast<std::size_t>(layer + 1)].begin(), u[static_cast<std::size_t>(layer + 1)].end(), 0);
  auto& emb = u[0];
  if (stage != 0) emb[kPositions] = 0;
  if (stage != 0 && !(shares_token_table(m) && stage == l.pp - 1)) emb[kTokenTable] = 0;
  if (stage != l.pp - 1)
    for (int t : {kFinalNorm, kFinalNormBias, kOutputLayer})
      if (static_cast<std::size_t>(t) < emb.size()) emb[static_cast<std::size_t>(t)] = 0;
  return u;
}

ActivationViews carve_activations(const core::ModelConfig& m, int kind, std::int64_t n, std::int64_t rows_computed,
                                  std::int64_t rows_returned, Carver& c, bool forward_only, bool carve_out,
                                  const RecomputeModules& redo, const Workspace* ws, int tp) {
  const double a = core::dtype_bytes(m.dtype), h = m.hidden, N = static_cast<double>(n);
  const double NF = N * tp;  // attention and the dense FFN see every token of the tensor-parallel group
  const double E = m.experts, k = m.top_k, V = m.vocab, in = m.ffn_in_factor();
  const double qw = static_cast<double>(m.q_width()), kw = static_cast<double>(m.kv_width());
  // GeLU may run in place when nothing is kept for a backward pass; SwiGLU's output is half its input's width.
  const bool in_place = forward_only && m.activation == core::Activation::gelu;
  ActivationViews v;
  // A part selective recompute drops is a view of the workspace's scratch, which every layer reuses.
  auto kept = [&](std::uint64_t bytes, bool dropped, const core::Buffer& scratch) {
    return dropped && ws ? scratch.slice(0, bytes) : c.take(bytes);
  };
  if (kind == 0) {
    v.out = c.take(B(N * h, a));
    return v;
  }
  if (kind == 4) {
    v.out = c.take(B(N * h, a));
    v.mtp_emb = c.take(B(N * h, a));
    v.mtp_enorm = c.take(B(N * h, a));
    v.mtp_emean = c.take(B(N, a));
    v.mtp_erstd = c.take(B(N, a));
    v.mtp_hnorm = c.take(B(N * h, a));
    v.mtp_hmean = c.take(B(N, a));
    v.mtp_hrstd = c.take(B(N, a));
    return v;
  }
  if (kind == 3) {
    v.lnf = c.take(B(N * h, a));
    v.meanf = c.take(B(N, a));
    v.rstdf = c.take(B(N, a));
    v.logits = c.take(B(N * V, a));
    if (!forward_only) v.dlogits = c.take(B(N * V, a));
    return v;
  }
  v.ln1 = kept(B(N * h, a), redo.layernorm, ws ? ws->redo_ln1 : core::Buffer{});
  v.mean1 = c.take(B(N, a));
  v.rstd1 = c.take(B(N, a));
  const bool mla = m.attention == core::AttentionKind::mla;
  v.qkv = kept(B(NF * (qw + static_cast<double>(m.k_width()) + kw), a), mla && redo.mla_up_proj,
               ws ? ws->redo_qkv : core::Buffer{});
  if (mla) {
    const double ql = m.mla.q_lora_rank, kvl = m.mla.kv_lora_rank;
    if (ql > 0) {
      v.cq = c.take(B(NF * ql, a));
      v.cq_normed = c.take(B(NF * ql, a));
      v.cq_mean = c.take(B(NF, a));
      v.cq_rstd = c.take(B(NF, a));
    }
    v.ckv = c.take(B(NF * kvl, a));
    v.ckv_normed = c.take(B(NF * kvl, a));
    v.ckv_mean = c.take(B(NF, a));
    v.ckv_rstd = c.take(B(NF, a));
    v.k_nope = kept(B(NF * m.heads * m.mla.qk_nope_head_dim, a), redo.mla_up_proj, ws ? ws->redo_k_nope : core::Buffer{});
    v.k_rope = c.take(B(NF * m.mla.qk_rope_head_dim, a));
  }
  if (m.qk_norm) {
    const double head_rows = NF * (m.heads + m.kv_head_count());
    v.qk_normed = c.take(B(NF * (qw + kw), a));
    v.qk_mean = c.take(B(head_rows, a));
    v.qk_rstd = c.take(B(head_rows, a));
  }
  v.ctx = c.take(B(NF * static_cast<double>(m.ctx_width()), a));
  v.mid = c.take(B(N * h, a));
  v.ln2 = kept(B(N * h, a), redo.layernorm, ws ? ws->redo_ln2 : core::Buffer{});
  v.mean2 = c.take(B(N, a));
  v.rstd2 = c.take(B(N, a));
  if (!forward_only && carve_out) v.out = c.take(B(N * h, a));
  if (kind == 1) {
    const double f = m.expert_hidden(), rows = static_cast<double>(rows_computed);
    v.probs = c.take(B(N * E, a));
    v.experts = c.take(B(N * k, 4));
    v.slots = c.take(B(N * k, 4));
    v.weights = c.take(B(N * k, a));
    v.xin = c.take(B(rows * h, a));
    v.pre = c.take(B(rows * in * f, a));
    v.post = in_place ? v.pre : kept(B(rows * f, a), redo.moe_act, ws ? ws->redo_expert_post : core::Buffer{});
    v.ret = c.take(B(static_cast<double>(rows_returned) * h, a));
    if (m.shared_experts > 0) {
      const double sf = static_cast<double>(m.shared_hidden());
      v.shared_pre = c.take(B(N * in * sf, a));
      v.shared_post =
          in_place ? v.shared_pre : kept(B(N * sf, a), redo.moe_act, ws ? ws->redo_shared_post : core::Buffer{});
      v.shared_out = c.take(B(N * h, a));
    }
  } else {
    const double f = m.ffn_hidden();
    v.pre = kept(B(NF * in * f, a), redo.mlp, ws ? ws->redo_ffn_pre : core::Buffer{});
    v.post = in_place ? v.pre : kept(B(NF * f, a), redo.mlp, ws ? ws->redo_ffn_post : core::Buffer{});
  }
  return v;
}

namespace {

/// Buckets over the replicated layout in backward order. ddp and ZeRO-2 fuse consecutive tensors until a
/// bucket reaches `bucket_bytes` (0: one tensor each); ZeRO-3 reduces one unit at a time, because its shards are
/// per unit. ZeRO-2/3 keep the embedding unit (used by the first and the last kernel of backward) whole.
void plan_buckets(RankState& s, const TrainingPolicy& p, double grad_bytes, int world, int group) {
  const bool sharded = p.dense == DenseSharding::zero2 || p.dense == DenseSharding::zero3;
  const int last_fused_unit = sharded ? 1 : 0;
  auto close = [&](I lo, I hi, int done_unit) {
    if (hi <= lo) return;
    GradBucket b;
    b.lo = lo, b.hi = hi, b.done_unit = done_unit;
    b.padded = round_up(hi - lo, group);
    b.piece = b.padded / group;
    s.buckets.push_back(b);
  };
  if (p.dense == DenseSharding::zero3) {
    for (int u = static_cast<int>(s.units.size()) - 1; u >= 0; --u)
      close(s.units[static_cast<std::size_t>(u)].offset,
            s.units[static_cast<std::size_t>(u)].offset + s.units[static_cast<std::size_t>(u)].elems, u);
  } else {
    I hi = -1, lo = 0;
    double pending = 0;
    int unit_of_lo = 0;
    for (int u = static_cast<int>(s.units.size()) - 1; u >= last_fused_unit; --u) {
      const DenseUnit& du = s.units[static_cast<std::size_t>(u)];
      for (int t = static_cast<int>(du.tensor_offsets.size()) - 1; t >= 0; --t) {
        const I len = du.tensor_elems[static_cast<std::size_t>(t)];
        if (len == 0) continue;
        const I start = du.offset + du.tensor_offsets[static_cast<std::size_t>(t)];
        if (hi < 0) hi = start + len;
        lo = start;
        unit_of_lo = u;
        pending += grad_bytes * static_cast<double>(len);
        if (p.bucket_bytes <= 0 || pending >= p.bucket_bytes) {
          close(lo, hi, unit_of_lo);
          hi = -1;
          pending = 0;
        }
      }
    }
    if (hi >= 0) close(lo, hi, unit_of_lo);
    if (sharded) close(s.units[0].offset, s.units[0].offset + s.units[0].elems, 0);
  }
  (void)world;
}

/// ZeRO-2 bucket buffers: enough that no bucket is reused while a unit still writes into an earlier one.
int assign_bucket_buffers(RankState& s, const TrainingPolicy& p) {
  if (p.dense == DenseSharding::ddp || p.dense == DenseSharding::distributed) return 0;
  int most = 1;
  for (const DenseUnit& u : s.units) {
    int overlapping = 0;
    for (const GradBucket& b : s.buckets)
      if (b.lo < u.offset + u.elems && b.hi > u.offset) ++overlapping;
    most = std::max(most, overlapping);
  }
  const int n = most + 1;
  int next = 0;
  for (GradBucket& b : s.buckets) b.buffer = b.done_unit == 0 ? -1 : (next++ % n);
  return n;
}

}  // namespace

ExpertShape expert_shape(const TrainingPlan& plan) {
  const core::ModelConfig& m = plan.config.model;
  ExpertShape s;
  s.layers = m.moe_layers();
  s.local = plan.layout.local_experts;
  s.expert_elems = m.expert_params_per_expert();
  s.a = m.param_bytes_per_param(), s.g = m.grad_bytes_per_param(), s.o = m.optimizer_bytes_per_param();
  return s;
}

ResidencySettings residency_settings(const TrainingPlan& plan, std::int64_t cache_entries) {
  const TrainingConfig& c = plan.config;
  ResidencySettings r;
  r.strategy = c.policy.prefetch == Prefetch::routed ? ResidencyStrategy::routed : ResidencyStrategy::layer_ahead;
  r.home = c.policy.offload == Offload::nvme ? Tier::ssd : Tier::dram;
  r.slots = 2;  // the layer computing and the one being fetched
  r.cache_entries = cache_entries;
  r.cache = c.policy.cache;
  r.host_sharers = c.cluster.node.gpus;
  if (c.cluster.node.host_memory.bytes_per_s > 0)
    r.host_cost_scale = c.cluster.node.gpu.hbm_bytes_per_s / c.cluster.node.host_memory.bytes_per_s;
  r.adam.lr = c.learning_rate;  // the dense optimizer's settings (rank_trainer.cpp)
  r.dtype = c.model.dtype;
  if (plan.generation.enabled) {  // read-only values: ring memory or ZeRO-Inference's layer ahead
    r.strategy = plan.generation.ring ? ResidencyStrategy::ring : ResidencyStrategy::layer_ahead;
    r.slots = plan.generation.slots;
    r.train = false;
    r.pageable = plan.generation.pageable;
  }
  return r;
}

RankState allocate_rank_state(const TrainingPlan& plan, core::Runtime& rt, int rank) {
  const TrainingConfig& c = plan.config;
  const TrainingPolicy& p = c.policy;
  const Layout& l = plan.layout;
  const core::ModelConfig m = rank_model(c.model, l.tp, l.etp);  // this rank's shard of the dense layers and experts
  const double a = m.param_bytes_per_param(), g = m.grad_bytes_per_param(), o = m.optimizer_bytes_per_param();
  RankState s;
  auto alloc = [&](Tier t, double bytes, MemoryUse u) {
    return bytes > 0 ? rt.alloc(t, static_cast<std::uint64_t>(bytes), tag(u)) : core::Buffer{};
  };

  // ---- dense units and buckets ----
  const int world = l.dp(), node = l.node_ranks, rails = world / node;  // the dense weights' data-parallel ranks
  const int local = l.local(rank), stage = l.stage(rank);
  const auto tensors = stage_unit_tensors(m, p, l, stage);
  s.expert_slot.assign(static_cast<std::size_t>(m.moe_layers()), -1);
  for (int v = 0; v < l.vpp; ++v) {
    const auto k = static_cast<std::size_t>(v * l.pp + stage);
    LayerChunk ch{l.chunk_first_layer[k], l.chunk_first_layer[k + 1], 0, 0};
    for (int layer = 0, moe = 0; layer < ch.end_layer; ++layer) {
      if (!m.is_moe_layer(layer)) continue;
      if (layer < ch.first_layer) {
        ch.first_moe = ++moe;
        continue;
      }
      ++ch.moe_layers;
      s.expert_slot[static_cast<std::size_t>(moe++)] = s.held_moe_layers++;
    }
    s.chunks.push_back(ch);
  }
  I offset = 0, shard_offset = 0, part_offset = 0, largest_padded = 0, full_offset = 0;
  const auto all_tensors = unit_tensors(c.model, p);  // the whole model's (the seeds of the initial values)
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    DenseUnit u;
    u.offset = offset;
    u.full_offset = full_offset;
    for (auto e : all_tensors[i]) full_offset += e;
    for (auto e : t) {
      u.tensor_offsets.push_back(u.elems);
      u.tensor_elems.push_back(e);
      u.elems += e;
    }
    u.padded = round_up(std::max<I>(u.elems, 1), world);
    if (l.tp > 1) u.tp_replicated = replicated_ranges(c.model, static_cast<int>(i), l.tp, u.tensor_elems);
    u.shard_offset = shard_offset;
    u.part_offset = part_offset;
    shard_offset += u.padded / node;
    part_offset += u.padded / world;
    offset += u.elems;
    largest_padded = std::max(largest_padded, u.padded);
    s.units.push_back(std::move(u));
  }
  const I dense = offset;
  const int group = p.dense == DenseSharding::zero3 ? node : world;  // first reduce-scatter's group
  plan_buckets(s, p, g, world, p.dense == DenseSharding::ddp ? 1 : group);
  s.bucket_buffers = assign_bucket_buffers(s, p);
  I part = 0, largest_bucket = 0, largest_padded_bucket = 0;
  for (GradBucket& b : s.buckets) {
    b.part_offset = part;
    part += b.piece;
    if (b.buffer >= 0) largest_bucket = std::max(largest_bucket, b.padded);
    largest_padded_bucket = std::max(largest_padded_bucket, b.padded);
  }
  const bool zero3 = p.dense == DenseSharding::zero3;
  const GenerationPlan& gen = plan.generation;
  if (gen.enabled) {
    // Read-only dense parameters: resident, or (ZeRO-Inference) the decoder layers' units at home in host memory
    // and fetched unit by unit into two GPU buffers, like ZeRO-3's gathered units; the embedding unit (first in the
    // layout) stays resident, since the tied table is used at both ends of every pass.
    if (p.dense != DenseSharding::ddp) throw std::invalid_argument("generation keeps dense parameters replicated");
    s.partition_elems = 0;
    if (gen.dense_from_host) {
      I largest_layer = 0;
      for (std::size_t u = 1; u < s.units.size(); ++u) largest_layer = std::max(largest_layer, s.units[u].elems);
      s.params = alloc(Tier::hbm, a * s.units[0].elems, MemoryUse::parameters);
      s.host_params = alloc(Tier::dram, a * dense, MemoryUse::parameters);
      for (auto& b : s.gathered) b = alloc(Tier::hbm, a * largest_layer, MemoryUse::parameters);
      if (gen.pageable) s.unit_staging = alloc(Tier::dram, a * largest_layer, MemoryUse::buffers);
    } else {
      s.params = alloc(Tier::hbm, a * dense, MemoryUse::parameters);
    }
  } else switch (p.dense) {
    case DenseSharding::ddp:
      s.partition_elems = dense;
      s.params = alloc(Tier::hbm, a * dense, MemoryUse::parameters);
      s.grads = alloc(Tier::hbm, g * dense, MemoryUse::gradients);
      s.opt = alloc(Tier::hbm, o * dense, MemoryUse::optimizer);
      break;
    case DenseSharding::zero2:
      s.partition_elems = part;
      s.params = alloc(Tier::hbm, a * (dense + world), MemoryUse::parameters);  // + slack for a padded tail
      s.grads = alloc(Tier::hbm, g * part, MemoryUse::gradients);
      s.opt = alloc(Tier::hbm, o * part, MemoryUse::optimizer);
      break;
    case DenseSharding::distributed:  // full gradients (+ slack: a bucket's padded tail), sharded optimizer
      s.partition_elems = part;
      s.params = alloc(Tier::hbm, a * (dense + world), MemoryUse::parameters);
      s.grads = alloc(Tier::hbm, g * (dense + world), MemoryUse::gradients);
      s.part_grads = alloc(Tier::hbm, g * part, MemoryUse::gradients);
      s.opt = alloc(Tier::hbm, o * part, MemoryUse::optimizer);
      s.gather_tmp = alloc(Tier::hbm, a * largest_padded_bucket, MemoryUse::buffers);
      break;
    case DenseSharding::zero3:
      s.partition_elems = part_offset;
      s.params = alloc(Tier::hbm, a * shard_offset, MemoryUse::parameters);
      s.node_grads = alloc(Tier::hbm, g * shard_offset, MemoryUse::gradients);
      s.grads = rails > 1 ? alloc(Tier::hbm, g * part_offset, MemoryUse::gradients) : s.node_grads;
      s.opt = alloc(Tier::hbm, o * part_offset, MemoryUse::optimizer);
      if (node > 1)
        for (auto& b : s.gathered) b = alloc(Tier::hbm, a * largest_padded, MemoryUse::buffers);
      break;
  }
  if ((p.dense == DenseSharding::zero2 || zero3) && !gen.enabled) {
    s.emb_grad = alloc(Tier::hbm, g * s.units[0].padded, MemoryUse::gradients);
    for (int i = 0; i < s.bucket_buffers; ++i)
      s.bucket_buf.push_back(alloc(Tier::hbm, g * std::max<I>(largest_bucket, 1), MemoryUse::buffers));
    const I piece = zero3 ? largest_padded / node : std::max<I>(largest_bucket, s.units[0].padded) / world;
    s.gather_tmp = alloc(Tier::hbm, a * (zero3 ? largest_padded / node : std::max<I>(largest_bucket, s.units[0].padded)),
                         MemoryUse::buffers);
    if (plan.routing.micro_batches > 1) s.reduce_tmp = alloc(Tier::hbm, g * piece, MemoryUse::buffers);
  }
  (void)largest_padded;

  // ---- experts ----
  const I pe = m.expert_params_per_expert();
  s.expert_layer_elems = I{l.local_experts} * pe;
  const I x = I{s.held_moe_layers} * s.expert_layer_elems;
  // Megatron's distributed optimizer shards the experts' optimizer states over their replicas too.
  const bool shard_experts = p.dense == DenseSharding::distributed && p.offload == Offload::none && l.edp > 1 &&
                             l.replica_slots == 0 && !gen.enabled && s.held_moe_layers > 0;
  if (shard_experts) {
    const I step = p.bucket_bytes > 0 ? std::max<I>(1, static_cast<I>(p.bucket_bytes / g)) : pe;
    for (I lo = 0; lo < s.expert_layer_elems; lo += step) {
      GradBucket b;
      b.lo = lo, b.hi = std::min(lo + step, s.expert_layer_elems);
      b.padded = round_up(b.hi - b.lo, l.edp), b.piece = b.padded / l.edp;
      b.part_offset = s.expert_piece_layer;
      s.expert_piece_layer += b.piece;
      s.expert_chunks.push_back(b);
    }
  }
  if (p.offload == Offload::none) {
    // + slack: the last chunk's padded tail reads past the last expert
    const double slack = shard_experts ? l.edp : 0;
    s.expert_params = alloc(Tier::hbm, a * (static_cast<double>(x) + slack), MemoryUse::parameters);
    if (!gen.enabled) {
      s.expert_grads = alloc(Tier::hbm, g * (static_cast<double>(x) + slack), MemoryUse::gradients);
      const double pieces = static_cast<double>(I{s.held_moe_layers} * s.expert_piece_layer);
      s.expert_opt = alloc(Tier::hbm, o * (shard_experts ? pieces : static_cast<double>(x)), MemoryUse::optimizer);
      if (shard_experts) {
        s.expert_part_grads = alloc(Tier::hbm, g * pieces, MemoryUse::gradients);
        I largest = 0;
        for (const GradBucket& b : s.expert_chunks) largest = std::max(largest, b.padded);
        s.expert_gather_tmp = alloc(Tier::hbm, a * static_cast<double>(largest), MemoryUse::buffers);
      }
    }
  } else {
    s.offloaded = allocate_expert_storage(rt, expert_shape(plan), residency_settings(plan, plan.memory.cache_entries));
  }
  if (l.replica_slots > 0 && s.held_moe_layers > 0) {
    s.replica_slots = l.replica_slots;
    const double copies = static_cast<double>(I{s.held_moe_layers} * l.replica_slots * pe);
    s.replica_params = alloc(Tier::hbm, a * copies, MemoryUse::parameters);
    if (!gen.enabled) {
      s.replica_grads = alloc(Tier::hbm, g * copies, MemoryUse::gradients);
      s.replica_inbox = alloc(Tier::hbm, g * static_cast<double>(pe), MemoryUse::buffers);
    }
    s.expert_load = alloc(Tier::hbm, 4.0 * m.experts * m.moe_layers(), MemoryUse::buffers);
  }

  // ---- token exchange, indices, data ----
  for (const auto& step : plan.routing.steps)
    for (const auto& mb : step) s.max_tokens = std::max(s.max_tokens, mb.tokens[static_cast<std::size_t>(local)]);
  const double h = m.hidden, f = m.ffn_hidden(), n = static_cast<double>(s.max_tokens);
  // The gate's slot stride: the capacity (gshard) or every token (dropless); padded dispatch in the simulator may
  // pad an expert to the largest load of its group (the routing plan's rows).
  I capacity = p.gate == Gate::gshard ? m.expert_capacity(s.max_tokens) : s.max_tokens;
  for (const auto& step : plan.routing.steps)
    for (const auto& mb : step)
      for (const auto& lr : mb.layers)
        for (auto r : lr.send_rows[static_cast<std::size_t>(local)])
          capacity = std::max<I>(capacity, (r + l.local_experts - 1) / l.local_experts);
  s.table_elems = I{m.experts} * capacity;
  // Exchange buffers: the routing plan's largest micro-batch where token counts come from the plan (simulator,
  // ledger); the gate's worst case where they come from real data (every expert full from every sender).
  core::Buffer probe = rt.alloc(Tier::dram, 16, tag(MemoryUse::buffers));
  const bool real = probe.data != nullptr;
  rt.free(probe);
  s.max_rows_sent = real ? s.table_elems : plan.routing.max_rows_sent(local);
  // A spare slot adds up to one more expert's worth of rows from every sender; with expert tensor parallelism the
  // senders are the expert group's ep x etp ranks.
  s.max_rows_recv = real ? s.table_elems * l.expert_slots() / l.local_experts * l.etp
                         : plan.routing.max_rows_received(l, local);
  // The all-gather dispatcher's table maps every slot of the group's tokens to a row of this rank's experts (or -1).
  const bool gathered = p.dispatcher == Dispatcher::all_gather;
  const double group_slots = gathered ? static_cast<double>(l.expert_group()) * n * m.top_k : 0.0;
  const double index_elems = std::max(static_cast<double>(s.table_elems + 2 * s.max_rows_recv), group_slots);
  if (s.held_moe_layers > 0) {
    s.send = alloc(Tier::hbm, a * h * static_cast<double>(gathered ? 0 : s.max_rows_sent), MemoryUse::buffers);
    s.recv = alloc(Tier::hbm, a * h * static_cast<double>(s.max_rows_recv), MemoryUse::buffers);
    s.index = alloc(Tier::hbm, 4.0 * index_elems, MemoryUse::buffers);
    s.counts = alloc(Tier::hbm, 4.0 * m.experts * (l.replica_slots > 0 ? 1 + l.ep : 2), MemoryUse::buffers);
    s.routing = alloc(Tier::hbm, 4.0 * m.experts * m.moe_layers() * plan.routing.micro_batches, MemoryUse::buffers);
  }
  s.ids = alloc(Tier::hbm, 4 * n, MemoryUse::buffers);
  if (gen.enabled) {
    // Per layer, K and V of every position of the context, position-major ([position][sequence][hidden], see
    // core::AttentionOp), and the sampled tokens of every pass.
    const double positions = static_cast<double>(gen.context()) * gen.sequences;
    for (int layer = 0; layer < m.layers; ++layer) {
      s.kv_k.push_back(alloc(Tier::hbm, a * static_cast<double>(m.k_width()) * positions, MemoryUse::kv_cache));
      s.kv_v.push_back(alloc(Tier::hbm, a * static_cast<double>(m.kv_width()) * positions, MemoryUse::kv_cache));
    }
    s.generated = alloc(Tier::hbm, 4.0 * gen.passes() * gen.sequences, MemoryUse::buffers);
  }
  s.targets = alloc(Tier::hbm, 4 * n, MemoryUse::buffers);
  const bool mtp_here = m.mtp_blocks > 0 && !gen.enabled && l.stage(rank) == l.pp - 1;  // the modules' stage
  if (mtp_here) {
    s.mtp_ids = alloc(Tier::hbm, 4 * n * m.mtp_blocks, MemoryUse::buffers);
    s.mtp_targets = alloc(Tier::hbm, 4 * n * m.mtp_blocks, MemoryUse::buffers);
  }
  const bool partition = p.embedding == Embedding::partition;
  s.staging = alloc(Tier::dram,
                    4.0 * std::max({2 * n, partition ? n * world : 0.0,
                                    index_elems + 2.0 * m.experts,
                                    l.replica_slots > 0 ? static_cast<double>(m.experts) * std::max(1 + l.ep, m.moe_layers())
                                                        : 0.0,
                                    gen.enabled ? static_cast<double>(gen.passes()) * gen.sequences : 0.0}),
                    MemoryUse::buffers);
  if (partition) {
    if (gen.enabled) throw std::invalid_argument("generation keeps the embedding table whole");
    EmbeddingShard& e = s.shard;
    const double V = m.vocab;
    e.cols = m.hidden / world;
    // The tied logits stream the table in chunks of about one fusion bucket.
    e.chunks = p.bucket_bytes > 0 ? std::max<I>(1, static_cast<I>(std::ceil(a * V * h / p.bucket_bytes))) : 1;
    e.chunks = std::min<I>(e.chunks, m.vocab);
    e.chunk_rows = (m.vocab + e.chunks - 1) / e.chunks;
    const double cols = static_cast<double>(e.cols), rows = static_cast<double>(e.chunk_rows);
    double all_tokens = 0;  // the most tokens of one micro-batch over all ranks (the lookup serves them all)
    for (const auto& step : plan.routing.steps)
      for (const auto& mb : step) {
        double sum = 0;
        for (auto t : mb.tokens) sum += static_cast<double>(t);
        all_tokens = std::max(all_tokens, sum);
      }
    e.params = alloc(Tier::hbm, a * V * cols, MemoryUse::parameters);
    e.grads = alloc(Tier::hbm, g * V * cols, MemoryUse::gradients);
    e.opt = alloc(Tier::hbm, o * V * cols, MemoryUse::optimizer);
    e.ids = alloc(Tier::hbm, 4 * n * world, MemoryUse::buffers);
    e.all_ids = alloc(Tier::hbm, 4 * all_tokens, MemoryUse::buffers);
    e.positions = alloc(Tier::hbm, 4 * n, MemoryUse::buffers);
    e.rows = alloc(Tier::hbm, a * all_tokens * cols, MemoryUse::buffers);
    e.cols_in = alloc(Tier::hbm, a * n * h, MemoryUse::buffers);
    for (auto& b : e.gathered) b = alloc(Tier::hbm, a * rows * h, MemoryUse::buffers);
    e.chunk = alloc(Tier::hbm, a * rows * h, MemoryUse::buffers);
    for (auto& b : e.chunk_grad) b = alloc(Tier::hbm, a * rows * h, MemoryUse::buffers);
    e.grad_piece = alloc(Tier::hbm, 2 * a * rows * cols, MemoryUse::buffers);
  }

  // ---- workspace ----
  const double rows = static_cast<double>(s.max_rows_recv), E = m.experts, k = m.top_k;
  const double in = m.ffn_in_factor(), ef = m.expert_hidden(), sf = static_cast<double>(m.shared_hidden());
  const double qw = static_cast<double>(m.q_width()), kw = static_cast<double>(m.kv_width());
  const bool swiglu = m.activation == core::Activation::swiglu;
  Carver measure;
  // Generation runs forward only: no gradient buffers (dx is the prefill's gather of last positions).
  const bool train = !gen.enabled;
  // Attention and the dense FFN work on all tokens of the tensor-parallel group (tensor_parallel.hpp).
  const double nf = n * l.tp;
  auto carve_ws = [&](Carver& cv) {
    Workspace w;
    w.dx = cv.take(B(n * h, a));
    if (l.cp > 1) {  // context parallelism: keys and values of the whole sequences (nf x cp tokens)
      const double seq = nf * l.cp, kw_k = static_cast<double>(m.k_width()), kw_v = static_cast<double>(m.kv_width());
      w.cp_k = cv.take(B(seq * kw_k, a));
      w.cp_v = cv.take(B(seq * kw_v, a));
      w.cp_land_k = cv.take(B(seq * kw_k, a));
      w.cp_land_v = cv.take(B(seq * kw_v, a));
      if (train) {
        w.cp_dk = cv.take(B(seq * kw_k, a));
        w.cp_dv = cv.take(B(seq * kw_v, a));
      }
    }
    if (l.tp > 1) {  // sequence parallelism: a gathered input and a partial output of all the group's tokens
      w.sp_gathered = cv.take(B(nf * h, a));
      w.sp_partial = cv.take(B(nf * h, a));
    }
    if (train) {
      w.dtmp = cv.take(B(n * h, a));
      w.dn = cv.take(B(nf * h, a));
      w.dqkv = cv.take(B(nf * (qw + static_cast<double>(m.k_width()) + kw), a));
      w.dctx = cv.take(B(nf * static_cast<double>(m.ctx_width()), a));
      if (m.attention == core::AttentionKind::mla) {
        w.mla_dk_nope = cv.take(B(nf * m.heads * m.mla.qk_nope_head_dim, a));
        w.mla_dk_rope = cv.take(B(nf * m.mla.qk_rope_head_dim, a));
        w.mla_dckv = cv.take(B(nf * m.mla.kv_lora_rank, a));
        if (m.mla.q_lora_rank > 0) w.mla_dcq = cv.take(B(nf * m.mla.q_lora_rank, a));
      }
    }
    if (m.moe_layers() > 0) {
      w.logits_gate = cv.take(B(n * E, a));
      if (train) {
        w.dlogits_gate = cv.take(B(n * E, a));
        w.dweights = cv.take(B(n * k, a));
      }
      w.slots_raw = cv.take(B(n * k, 4));
      if (gathered) {
        w.ag_tokens = cv.take(B(static_cast<double>(l.expert_group()) * n * h, a));
        w.ag_slots = cv.take(B(group_slots, 4));
        w.ag_weights = cv.take(B(group_slots, a));
        if (train) w.ag_dweights = cv.take(B(group_slots, a));
      }
      w.rows_a = cv.take(B(rows * h, a));
      if (train) w.rows_f = cv.take(B(rows * in * ef, a));
      if (train && swiglu) w.rows_g = cv.take(B(rows * ef, a));
      if (train && sf > 0) {
        w.shared_f = cv.take(B(n * in * sf, a));
        if (swiglu) w.shared_g = cv.take(B(n * sf, a));
        w.shared_dx = cv.take(B(n * h, a));
      }
    }
    if (m.dense_ffn_layers() > 0 && train) {
      w.dense_f = cv.take(B(nf * in * f, a));
      if (swiglu) w.dense_g = cv.take(B(nf * f, a));
    }
    const RecomputeModules& redo = plan.config.recompute_modules;
    if (train && plan.config.recompute == Recompute::selective) {
      if (redo.layernorm) {
        w.redo_ln1 = cv.take(B(n * h, a));
        w.redo_ln2 = cv.take(B(n * h, a));
      }
      if (redo.moe_act && m.moe_layers() > 0) {
        w.redo_expert_post = cv.take(B(rows * ef, a));
        if (sf > 0) w.redo_shared_post = cv.take(B(n * sf, a));
      }
      if (redo.mla_up_proj && m.attention == core::AttentionKind::mla) {
        w.redo_qkv = cv.take(B(nf * (qw + static_cast<double>(m.k_width()) + kw), a));
        w.redo_k_nope = cv.take(B(nf * m.heads * m.mla.qk_nope_head_dim, a));
      }
      if (redo.mlp && m.dense_ffn_layers() > 0) {
        w.redo_ffn_pre = cv.take(B(nf * in * f, a));
        w.redo_ffn_post = cv.take(B(nf * f, a));
      }
    }
    w.loss = cv.take(16);
    if (mtp_here) {
      w.mtp_dh = cv.take(B(n * h, a));
      w.mtp_loss = cv.take(16);
    }
    return w;
  };
  carve_ws(measure);
  Carver cut(alloc(Tier::hbm, static_cast<double>(measure.used()), MemoryUse::buffers));
  s.ws = carve_ws(cut);
  return s;
}

}  // namespace moesys::policies::training
