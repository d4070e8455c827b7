#include "policies/training/rank_trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/error.hpp"
#include "model/ops.hpp"
#include "model/tensors.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/tensor_parallel.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kCompute;

namespace {
/// Combinations the program does not run (yet), refused with the reason.
void check_pipeline_policy(const TrainingConfig& c) {
  const std::string pp = std::to_string(c.pipeline_parallel) + " pipeline stages";
  if (c.pipeline_parallel > 1) {
    if (c.policy.dense == DenseSharding::zero3)
      throw core::InfeasibleError(pp + " with dense zero3 are not modelled (its unit gathers follow one micro-batch's "
                                  "forward and backward); use ddp, zero2 or distributed");
    if (c.policy.offload != Offload::none)
      throw core::InfeasibleError(pp + " with offloaded experts are not modelled; use offload none");
    if (c.policy.embedding == Embedding::partition)
      throw core::InfeasibleError(pp + " with the embedding partition are not modelled; use embedding dense");
    if (c.policy.dense == DenseSharding::zero2 && shares_token_table(c.model))
      throw core::InfeasibleError(pp + " with dense zero2 and a token table on the first and the last stage (a tied "
                                  "output layer or multi-token prediction) are not modelled: ZeRO-2 reduces every "
                                  "micro-batch's gradients, so the two copies' sum would hold the last stage until "
                                  "the first finishes each backward; use ddp or distributed");
    if (c.virtual_stages > 1 && c.policy.dense == DenseSharding::zero2)
      throw core::InfeasibleError("interleaved pipeline stages with dense zero2 are not modelled (its bucket buffers "
                                  "follow one micro-batch's backward, which virtual stages split); use ddp or "
                                  "distributed");
  }
  if (c.recompute == Recompute::full && c.policy.offload != Offload::none)
    throw core::InfeasibleError("full recompute with offloaded experts is not modelled (the expert slots follow the "
                                "forward-then-backward order); use offload none");
}
}  // namespace

/// Multi-token prediction modules: what the program runs them with.
void check_mtp_policy(const TrainingConfig& c) {
  if (c.model.mtp_layers == 0) return;
  const std::string mtp = std::to_string(c.model.mtp_layers) + " multi-token prediction module(s)";
  if (c.policy.dense == DenseSharding::zero3)
    throw core::InfeasibleError(mtp + " with dense zero3 are not modelled (a module's head reads the output layer "
                                "while its own unit is gathered); use ddp, zero2 or distributed");
  if (c.policy.offload != Offload::none)
    throw core::InfeasibleError(mtp + " with offloaded experts are not modelled; use offload none");
  if (c.policy.embedding == Embedding::partition)
    throw core::InfeasibleError(mtp + " with the embedding partition are not modelled; use embedding dense");
  if (c.model.learned_positions)
    throw core::InfeasibleError(mtp + " embed the next tokens without positions, as with rotary positions; model " +
                                c.model.name + " has a learned position table");
}

TrainingPlan make_training_plan(const TrainingConfig& declared) {
  check_mtp_policy(declared);
  TrainingPlan p;
  p.model = declared.model;
  p.config = declared;
  p.config.model = declared.model.with_mtp_blocks();  // the program runs each MTP module's block as a last layer
  const TrainingConfig& c = p.config;
  p.layout = make_layout(c);
  const int gpn = c.cluster.node.gpus, ep = p.layout.ep;
  if (c.policy.all_to_all == AllToAll::hierarchical && p.layout.world > gpn && gpn % ep != 0 && ep % gpn != 0)
    throw core::InfeasibleError(
        "the hierarchical all-to-all needs expert-parallel groups of whole nodes or inside one "
        "node: a group of " +
        std::to_string(ep) + " ranks on nodes of " + std::to_string(gpn) + " GPUs is neither");
  if (c.policy.embedding == Embedding::partition && (!c.model.tied_embeddings || !c.model.learned_positions))
    throw core::InfeasibleError("the embedding partition shards a table tied to the output layer, with learned "
                                "positions; model " + c.model.name + " has an untied output layer or rotary positions");
  if (c.policy.embedding == Embedding::partition && c.model.hidden % p.layout.world != 0)
    throw core::InfeasibleError("the embedding partition splits hidden (" + std::to_string(c.model.hidden) +
                                ") by columns over " + std::to_string(p.layout.world) +
                                " ranks, which does not divide it");
  check_pipeline_policy(c);
  p.routing = build_routing_plan(c, p.layout);
  if (p.layout.vpp > 1 && p.routing.micro_batches % p.layout.pp != 0)
    throw core::InfeasibleError("interleaved pipeline stages (vpp " + std::to_string(p.layout.vpp) + ") need the " +
                                std::to_string(p.routing.micro_batches) + " micro-batches per step to be a multiple " +
                                "of the " + std::to_string(p.layout.pp) + " stages");
  plan_memory(p);
  check_feasible(p.memory);
  return p;
}

std::function<void(core::Runtime&)> training_program(const TrainingPlan& plan, std::vector<RankCounters>& counters) {
  return [&plan, &counters](core::Runtime& rt) {
    RankTrainer trainer(plan, rt, counters.at(static_cast<std::size_t>(rt.rank())));
    trainer.run();
  };
}

RankTrainer::RankTrainer(const TrainingPlan& plan, core::Runtime& rt, RankCounters& counters)
    : plan_(plan),
      cfg_(plan.config),
      model_(rank_model(plan.config.model, plan.layout.tp, plan.layout.etp)),
      policy_(plan.config.policy),
      layout_(plan.layout),
      rt_(rt),
      counters_(counters),
      rank_(rt.rank()),
      local_(plan.layout.local(rt.rank())),
      stage_(plan.layout.stage(rt.rank())),
      dtype_(plan.config.model.dtype),
      a_(core::dtype_bytes(plan.config.model.dtype)),
      gemm_dtype_(plan.config.model.fp8_gemm ? core::Dtype::fp8 : plan.config.model.dtype),
      world_(plan.layout.dp_group(rank_)),
      ep_group_(plan.layout.ep_group(rank_)),
      edp_group_(plan.layout.edp_group(rank_)),
      node_group_(plan.layout.node_group(rank_)),
      rail_group_(plan.layout.rail_group(rank_)),
      tp_group_(plan.layout.tp_group(rank_)),
      cp_group_(plan.layout.cp_group(rank_)),
      embedding_group_(plan.layout.embedding_group(rank_)),
      a2a_algo_(policy_.dispatcher == Dispatcher::deepep        ? core::CollectiveAlgo::deepep
                : policy_.all_to_all == AllToAll::hierarchical ? core::CollectiveAlgo::hierarchical
                : policy_.all_to_all == AllToAll::copy_engine  ? core::CollectiveAlgo::copy_engine
                                                               : core::CollectiveAlgo::direct) {
  exchanges_.resize(static_cast<std::size_t>(model_.moe_layers()));
}

std::vector<bool> RankTrainer::experts_used(const MoeExchange& x) {
  std::vector<bool> used(static_cast<std::size_t>(x.local), false);
  for (const auto& chunk : x.expert_rows)
    for (std::size_t e = 0; e < chunk.size() && e < used.size(); ++e) used[e] = used[e] || chunk[e] > 0;
  return used;
}

std::vector<int> RankTrainer::expert_pass_order() const {
  std::vector<int> order;
  for (int l = 0; l < model_.moe_layers(); ++l) order.push_back(l);
  for (int l = model_.moe_layers() - 1; l >= 0; --l) order.push_back(l);
  return order;
}

void RankTrainer::run() {
  st_ = allocate_rank_state(plan_, rt_, rank_);
  real_ = st_.staging.data != nullptr;
  if (policy_.offload != Offload::none && model_.moe_layers() > 0)
    residency_ = std::make_unique<ExpertResidency>(rt_, expert_shape(plan_),
                                                   residency_settings(plan_, plan_.memory.cache_entries), st_.offloaded,
                                                   counters_);
  for (const core::Buffer& b : {st_.params, st_.gathered[0], st_.gathered[1], st_.expert_params, st_.replica_params,
                                st_.host_params, st_.shard.params, st_.shard.chunk})
    if (b) weight_ids_.push_back(b.id);
  for (const core::Buffer& b : st_.offloaded.slot_params) weight_ids_.push_back(b.id);
  bucket_open_.assign(st_.buckets.size(), false);
  buffer_free_.assign(static_cast<std::size_t>(std::max(st_.bucket_buffers, 1)), core::Event{});
  if (real_) initialise_parameters();
  if (generating()) return generate();
  if (policy_.embedding == Embedding::partition) upload_partition_positions();
  for (int s = 0; s < cfg_.steps; ++s) {
    rt_.begin_phase("step " + std::to_string(s));
    if (residency_) residency_->begin_step(s + 1);
    if (replicas_on()) begin_step_replicas(s);
    run_passes(s);
    optimizer_step(s);
    if (residency_) residency_->end_step();
    rt_.synchronize();
    rt_.end_phase();
    float loss = 0;
    if (last_stage() && read_back(st_.ws.loss, 4, {}, &loss))  // the last stage computes the loss
      counters_.losses.push_back(loss / static_cast<double>(tokens_));
    record_routing();
  }
}

void RankTrainer::initialise_parameters() {
  // The same values on every rank that holds a tensor: dense units from one seed (layernorm gains 1, everything
  // else N(0, 0.02^2), biases included), experts from a seed per expert-parallel index.
  // With the embedding partition the token table is not in the dense layout; the values are drawn as if it were
  // (the table first in unit 0, every later unit's seed at its replicated offset), so that both layouts start from
  // the same model, and this rank keeps its columns of the table.
  const bool partition = policy_.embedding == Embedding::partition;
  const std::int64_t table = partition ? static_cast<std::int64_t>(model_.vocab) * model_.hidden : 0;
  // A pipeline stage draws each unit as the whole model has it and keeps the tensors it holds, and a member of a
  // tensor-parallel group its shard of each (tensor_parallel.hpp), so that every layout starts from the same model.
  const auto whole_units = unit_tensors(cfg_.model, policy_), rank_units = unit_tensors(model_, policy_);
  std::vector<float> dense;
  for (std::size_t ui = 0; ui < st_.units.size(); ++ui) {
    const DenseUnit& u = st_.units[ui];
    const auto& whole = whole_units[ui];
    const bool first = ui == 0;
    std::int64_t whole_elems = 0;
    for (auto n : whole) whole_elems += n;
    std::vector<float> v = moesys::model::normal_floats(std::max(u.padded, whole_elems) + (first ? table : 0), 0.02,
                                                        cfg_.workload_seed * 7919 + u.full_offset + (first ? 0 : table));
    if (tensor_parallel()) {
      v.resize(static_cast<std::size_t>(whole_elems));
      v = shard_unit(cfg_.model, static_cast<int>(ui), layout_.tp, layout_.tp_index(rank_), v);
      v.resize(std::max(v.size(), static_cast<std::size_t>(u.padded)), 0.f);
    }
    if (layout_.pp > 1) {
      std::vector<float> held(static_cast<std::size_t>(u.padded), 0.f);
      std::int64_t at = 0;
      for (std::size_t t = 0; t < whole.size(); ++t) {
        if (u.tensor_elems[t] > 0)
          std::copy_n(v.begin() + at, u.tensor_elems[t], held.begin() + u.tensor_offsets[t]);
        at += rank_units[ui][t];
      }
      v = std::move(held);
    }
    if (first && partition) {
      const EmbeddingShard& e = st_.shard;
      std::vector<float> shard(static_cast<std::size_t>(model_.vocab * e.cols));
      for (std::int64_t r = 0; r < model_.vocab; ++r)
        std::copy_n(v.begin() + r * model_.hidden + rank_ * e.cols, e.cols, shard.begin() + r * e.cols);
      moesys::model::upload(rt_, e.params, shard.data(), e.params.bytes);
      v.erase(v.begin(), v.begin() + table);
    }
    std::fill(v.begin() + u.elems, v.end(), 0.f);
    const int gains[] = {first ? int{kFinalNorm} : int{kNorm1}, first ? -1 : int{kNorm2}, first ? -1 : int{kQNorm},
                         first ? -1 : int{kKNorm},      first ? -1 : int{kMtpHNorm}, first ? -1 : int{kMtpENorm},
                         first ? -1 : int{kMtpNorm}};
    for (int t : gains) {
      if (t < 0 || static_cast<std::size_t>(t) >= u.tensor_offsets.size()) continue;
      const auto at = v.begin() + u.tensor_offsets[static_cast<std::size_t>(t)];
      std::fill(at, at + u.tensor_elems[static_cast<std::size_t>(t)], 1.f);
    }
    if (policy_.dense == DenseSharding::zero3) {  // this rank's node shard of the unit
      const std::int64_t np = u.padded / node_group_.size(), first = np * node_group_.index_of(rank_);
      dense.insert(dense.end(), v.begin() + first, v.begin() + first + np);
    } else {
      dense.insert(dense.end(), v.begin(), v.begin() + u.elems);
    }
  }
  if (st_.host_params) {  // generation from host memory: the layout at home, the embedding unit also resident
    dense.resize(st_.host_params.bytes / 4, 0.f);
    moesys::model::upload(rt_, st_.host_params, dense.data(), st_.host_params.bytes);
  }
  dense.resize(std::max<std::size_t>(dense.size(), st_.params.bytes / 4), 0.f);
  moesys::model::upload(rt_, st_.params, dense.data(), st_.params.bytes);
  // Resident experts, or the home of offloaded ones: the same values in the same (expert-major) layout.
  const core::Buffer experts = st_.expert_params ? st_.expert_params : st_.offloaded.home_params;
  if (experts) {
    // One seed per expert, its values drawn for every MoE layer: every layout (expert-parallel size, pipeline
    // stages, expert tensor parallelism: each member keeps its shard of the whole expert) starts from the same experts.
    const std::int64_t pe = model_.expert_params_per_expert(), whole = cfg_.model.expert_params_per_expert();
    const std::int64_t L = layout_.local_experts;
    std::vector<float> held(experts.bytes / 4, 0.f);
    for (std::int64_t j = 0; j < L; ++j) {
      const std::int64_t expert = layout_.ep_index(local_) * L + j;
      const std::vector<float> e = moesys::model::normal_floats(model_.moe_layers() * whole, 0.02,
                                                                cfg_.workload_seed * 104729 + static_cast<std::uint64_t>(expert));
      for (std::size_t moe = 0; moe < st_.expert_slot.size(); ++moe)
        if (const int slot = st_.expert_slot[moe]; slot >= 0) {
          const float* drawn = e.data() + static_cast<std::int64_t>(moe) * whole;
          const std::vector<float> shard =
              layout_.etp > 1 ? expert_shard(cfg_.model, layout_.etp, layout_.etp_index(rank_), drawn)
                              : std::vector<float>(drawn, drawn + pe);
          std::copy_n(shard.begin(), pe, held.begin() + (slot * L + j) * pe);
        }
    }
    moesys::model::upload(rt_, experts, held.data(), experts.bytes);
  }
}

std::vector<std::int32_t> RankTrainer::read_step_routing() {
  std::vector<std::int32_t> counts(st_.routing.bytes / 4);
  const std::uint64_t chunk = std::min<std::uint64_t>(st_.routing.bytes, st_.staging.bytes);
  for (std::uint64_t at = 0; at < st_.routing.bytes; at += chunk) {
    const std::uint64_t n = std::min(chunk, st_.routing.bytes - at);
    read_back(st_.routing.slice(at, n), n, last_compute_, reinterpret_cast<char*>(counts.data()) + at);
  }
  return counts;
}

void RankTrainer::record_routing() {
  // Real runtimes only (after the step, outside its timing): every micro-batch's gate counts per MoE layer.
  if (!real_ || !st_.routing) return;
  const std::vector<std::int32_t> counts = read_step_routing();
  const auto E = static_cast<std::size_t>(model_.experts);
  for (int m = 0; m < plan_.routing.micro_batches; ++m) {
    std::vector<std::vector<std::int64_t>> layers;
    for (int l = 0; l < model_.moe_layers(); ++l) {
      const auto first = counts.begin() + static_cast<std::ptrdiff_t>((m * model_.moe_layers() + l) * E);
      layers.emplace_back(first, first + static_cast<std::ptrdiff_t>(E));
    }
    counters_.routing.push_back(std::move(layers));
  }
}

// ---- kernels ----

core::Event RankTrainer::run(const core::Kernel& k, const char* name) {
  last_quantized_ = {};  // another kernel ran since: the next GEMM quantizes its own operand
  return last_compute_ = rt_.compute(kCompute, k, name);
}

core::Event RankTrainer::gemm(std::int64_t m, std::int64_t n, std::int64_t k, const core::Buffer& a,
                              const core::Buffer& b, const core::Buffer& c, const char* name, bool trans_a,
                              bool trans_b, bool accumulate, std::int64_t batch, bool broadcast_a,
                              std::int64_t stride_b, std::int64_t stride_c) {
  if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) return last_compute_;
  // An FP8 GEMM reading weights quantizes its activation operand first, unless the operand already is: rows that
  // arrived in FP8 (fp8_dispatch), or the operand the GEMM just before quantized (Transformer Engine runs such
  // GEMMs, e.g. MLA's key/value projections, as one).
  const bool fp8 = gemm_dtype_ == core::Dtype::fp8 && dtype_ != core::Dtype::fp8 && is_weight(b);
  const bool ready = operand_in_fp8_ || (a.id == last_quantized_.id && a.offset == last_quantized_.offset &&
                                         a.bytes == last_quantized_.bytes);
  if (fp8 && !ready) quantize_for_fp8(a, broadcast_a ? m * k : m * k * batch);
  core::GemmOp op = ops::gemm(m, n, k, a, b, c, trans_a, trans_b, accumulate, batch, gemm_dtype_);
  op.broadcast_a = broadcast_a;
  op.stride_b = stride_b, op.stride_c = stride_c;
  const core::Event e = run(op, name);
  last_quantized_ = fp8 ? a : core::Buffer{};
  return e;
}

bool RankTrainer::is_weight(const core::Buffer& b) const {
  return std::find(weight_ids_.begin(), weight_ids_.end(), b.id) != weight_ids_.end();
}

void RankTrainer::quantize_for_fp8(const core::Buffer& x, std::int64_t elems) {
  // An FP8 GEMM's activation operand (the input of a forward GEMM, the output gradient of a data-gradient GEMM) is
  // quantized by a memory-bound kernel before it, as Transformer Engine does: it reads the model dtype and writes
  // one byte per element, plus in training the transposed copy the weight-gradient GEMM reads (TE's cast-transpose),
  // so weight-gradient GEMMs quantize nothing; weights are quantized once per step, which the micro-batches
  // amortise. The real runtimes compute in fp32 (FP8 is a simulator option), so the kernel is a scale by one with
  // the quantization's traffic.
  core::TensorOp q = ops::scale(x, elems, 1.0);
  q.dtype = dtype_;
  q.bytes_read = static_cast<std::uint64_t>(static_cast<double>(elems) * a_);
  q.bytes_written = static_cast<std::uint64_t>(elems) * (generating() ? 1 : 2);
  run(q, "fp8 quantize");
}

core::Event RankTrainer::tensor(core::TensorOp op, const char* name) { return run(ops::with_dtype(std::move(op), dtype_), name); }

core::Buffer RankTrainer::param(int unit, int t) const {
  const DenseUnit& u = st_.units[static_cast<std::size_t>(unit)];
  const auto off = static_cast<std::uint64_t>(static_cast<double>(u.tensor_offsets[static_cast<std::size_t>(t)]) * a_);
  const auto len = static_cast<std::uint64_t>(static_cast<double>(u.tensor_elems[static_cast<std::size_t>(t)]) * a_);
  return unit_params_.slice(off, len);
}

bool RankTrainer::read_back(const core::Buffer& src, std::uint64_t bytes, core::Event after, void* out) {
  rt_.stream_wait(core::streams::kD2H, after);
  const core::Buffer stage = st_.staging.slice(0, bytes);
  rt_.wait(last_upload_);  // the staging area is also the source of uploads
  const core::Event e = rt_.copy(core::streams::kD2H, stage, src, bytes);
  rt_.wait(e);
  if (!stage.data) return false;
  std::memcpy(out, stage.data, bytes);
  return true;
}

core::Event RankTrainer::upload_ints(const core::Buffer& dst, const std::vector<std::int32_t>& values,
                                     std::uint64_t bytes) {
  if (bytes == 0) return {};
  rt_.wait(last_upload_);
  const core::Buffer stage = st_.staging.slice(0, bytes);
  if (stage.data) std::memcpy(stage.data, values.data(), std::min<std::uint64_t>(bytes, values.size() * 4));
  // Kernels already issued may still read the old contents (the previous batch's ids, a layer's tables).
  // Uploads run on a stream of their own: on the H2D stream a layer's tables would queue behind the expert
  // weights being prefetched for later layers, putting every prefetch on the critical path.
  const core::StreamId s = core::streams::kUpload;
  rt_.stream_wait(s, last_compute_);
  return last_upload_ = rt_.copy(s, dst.slice(0, bytes), stage, bytes);
}

std::int32_t RankTrainer::next_token(std::int32_t t) const { return (t * 3 + 1) % model_.vocab; }

void RankTrainer::load_batch(int step, int micro) {
  // Synthetic next-token task t[i+1] = (3 t[i] + 1) mod vocab from a random start per sequence: real runs can
  // watch the loss fall; the simulator pays for the same uploads.
  // With tensor parallelism the group draws its replica's whole micro-batch and each rank keeps its sequence shard;
  // with context parallelism its two zigzag blocks of every sequence first.
  const std::int64_t n = tokens_, all = n * layout_.tp * layout_.cp;
  std::vector<std::int32_t> ids, targets;
  if (real_) {
    ids.resize(static_cast<std::size_t>(all));
    targets.resize(ids.size());
    std::uint64_t state = cfg_.workload_seed * 0x9E3779B97F4A7C15ull +
                          static_cast<std::uint64_t>(layout_.replica_index(rank_)) * 7907 +
                          static_cast<std::uint64_t>(step) * 131 + static_cast<std::uint64_t>(micro);
    for (std::int64_t i = 0; i < all; ++i) {
      if (i % model_.seq_len == 0) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        ids[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((state >> 33) % static_cast<std::uint64_t>(model_.vocab));
      } else {
        ids[static_cast<std::size_t>(i)] = targets[static_cast<std::size_t>(i - 1)];
      }
      targets[static_cast<std::size_t>(i)] = next_token(ids[static_cast<std::size_t>(i)]);
    }
    if (layout_.cp > 1) {  // this rank's two zigzag blocks of every sequence: the earlier ones, then the later ones
      const std::int64_t S = model_.seq_len, h = cp_half();
      std::vector<std::int32_t> ci, ct;
      for (int half = 0; half < 2; ++half)
        for (std::int64_t s = 0, at = cp_block(layout_.cp_index(rank_), half) * h; s < all; s += S) {
          ci.insert(ci.end(), ids.begin() + s + at, ids.begin() + s + at + h);
          ct.insert(ct.end(), targets.begin() + s + at, targets.begin() + s + at + h);
        }
      ids = std::move(ci), targets = std::move(ct);
    }
    const auto first = static_cast<std::ptrdiff_t>(layout_.tp_index(rank_) * n);
    ids = std::vector<std::int32_t>(ids.begin() + first, ids.begin() + first + n);
    targets = std::vector<std::int32_t>(targets.begin() + first, targets.begin() + first + n);
  }
  const auto bytes = static_cast<std::uint64_t>(n) * 4;
  if (policy_.embedding == Embedding::partition) {  // the ids once per column owner: the send side of their exchange
    const auto w = static_cast<std::size_t>(layout_.world);
    std::vector<std::int32_t> each;
    for (std::size_t r = 0; r < w && real_; ++r) each.insert(each.end(), ids.begin(), ids.end());
    ids_ready_ = upload_ints(st_.shard.ids, each, bytes * w);
  } else {
    ids_ready_ = upload_ints(st_.ids, ids, bytes);
  }
  rt_.stream_wait(kCompute, ids_ready_);
  rt_.stream_wait(kCompute, upload_ints(st_.targets, targets, bytes));
  if (model_.mtp_blocks > 0 && last_stage()) {
    // Multi-token prediction module k: the tokens 1 + k and 2 + k positions ahead of each row (the task's rule
    // continues past a sequence's end, as a loader that reads a few tokens beyond each sequence would).
    std::vector<std::int32_t> ahead = ids;
    for (int k = 0; k < model_.mtp_blocks; ++k) {
      for (auto& t : ahead) t = next_token(t);
      const auto at = static_cast<std::uint64_t>(k * st_.max_tokens) * 4;
      rt_.stream_wait(kCompute, upload_ints(st_.mtp_ids.slice(at, bytes), ahead, bytes));
      std::vector<std::int32_t> next = ahead;
      for (auto& t : next) t = next_token(t);
      rt_.stream_wait(kCompute, upload_ints(st_.mtp_targets.slice(at, bytes), next, bytes));
    }
  }
}

void RankTrainer::keep_activations(int kind, std::int64_t tokens, std::int64_t rows_computed,
                                   std::int64_t rows_returned) {
  Carver measure;
  carve_activations(model_, kind, tokens, rows_computed, rows_returned, measure, false, true, redo(), &st_.ws,
                    layout_.tp);
  act_blobs_.push_back(rt_.alloc(core::Tier::hbm, measure.used(), "activations"));
  Carver cut(act_blobs_.back());
  act_views_.push_back(
      carve_activations(model_, kind, tokens, rows_computed, rows_returned, cut, false, true, redo(), &st_.ws,
                        layout_.tp));
}

// ---- ZeRO-3 unit gathers, and ZeRO-Inference's unit fetches from host memory ----

void RankTrainer::unit_begin(int unit) {
  current_unit_ = unit;
  const DenseUnit& u = st_.units[static_cast<std::size_t>(unit)];
  // Generation with dense parameters at home in host memory: the same two-buffer pipeline, one unit ahead, with a
  // host-to-device copy of the whole unit in place of the all-gather of its shards.
  const bool fetch = plan_.generation.enabled && plan_.generation.dense_from_host && unit > 0;
  const bool gather = (policy_.dense == DenseSharding::zero3 && node_group_.size() > 1) || fetch;
  const core::StreamId stream = fetch ? core::streams::kH2D : kGatherStream;
  if (!gather) {  // the replicated layout, or a node of one rank whose shard is the whole unit
    const double start = policy_.dense == DenseSharding::zero3 ? static_cast<double>(u.shard_offset)
                                                               : static_cast<double>(u.offset);
    unit_params_ = st_.params.slice(static_cast<std::uint64_t>(start * a_),
                                    static_cast<std::uint64_t>(static_cast<double>(u.elems) * a_));
    return;
  }
  ++unit_pos_;
  auto issue = [&](std::size_t j) {
    if (j >= units_.size() || j < gathered_.size()) return;
    if (j >= 2) rt_.stream_wait(stream, released_[j - 2]);  // two gather buffers: reuse the oldest
    const DenseUnit& g = st_.units[static_cast<std::size_t>(units_[j])];
    if (fetch) {
      const auto bytes = static_cast<std::uint64_t>(static_cast<double>(g.elems) * a_);
      const core::Buffer home =
          st_.host_params.slice(static_cast<std::uint64_t>(static_cast<double>(g.offset) * a_), bytes);
      core::Buffer src = home;
      if (st_.unit_staging) {  // pageable: the host copy into pinned memory, then the DMA
        src = st_.unit_staging.slice(0, bytes);
        rt_.copy(stream, src, home, bytes);
      }
      counters_.h2d_param_bytes += static_cast<double>(bytes);
      gathered_.push_back(rt_.copy(stream, st_.gathered[j % 2].slice(0, bytes), src, bytes));
      released_.push_back(core::Event{});
      return;
    }
    const auto piece = static_cast<std::uint64_t>(static_cast<double>(g.padded / node_group_.size()) * a_);
    const core::Buffer send = st_.params.slice(static_cast<std::uint64_t>(static_cast<double>(g.shard_offset) * a_), piece);
    const core::Buffer recv = st_.gathered[j % 2].slice(0, piece * static_cast<std::uint64_t>(node_group_.size()));
    gathered_.push_back(rt_.all_gather(kGatherStream, node_group_, send, recv, recv.bytes));
    released_.push_back(core::Event{});
  };
  const auto pos = static_cast<std::size_t>(unit_pos_);
  if (pos >= units_.size() || units_[pos] != unit) throw std::logic_error("ZeRO-3 unit order out of step");
  issue(pos);
  issue(pos + 1);  // prefetch one unit ahead
  rt_.stream_wait(kCompute, gathered_[pos]);
  unit_params_ = st_.gathered[pos % 2].slice(0, static_cast<std::uint64_t>(static_cast<double>(u.elems) * a_));
}

void RankTrainer::unit_end() {
  const bool fetch = plan_.generation.enabled && plan_.generation.dense_from_host && current_unit_ > 0;
  if (!fetch && (policy_.dense != DenseSharding::zero3 || node_group_.size() == 1)) return;
  released_[static_cast<std::size_t>(unit_pos_)] = last_compute_;
}

// ---- the step ----

void RankTrainer::select_micro_batch(int step, int micro) {
  step_ = step;
  micro_ = micro;
  mb_ = &plan_.routing.at(step, micro);
  tokens_ = mb_->tokens[static_cast<std::size_t>(local_)];
}

std::pair<std::int64_t, std::int64_t> RankTrainer::layer_rows(int moe) const {
  // Activation blocks are sized by the plan's rows (the largest the buffers allow on real runtimes).
  // The all-gather dispatcher keeps the experts' outputs (expert-major) in place of the returned rows.
  if (real_) return {st_.max_rows_recv, gathers_tokens() ? st_.max_rows_recv : st_.max_rows_sent};
  const LayerRouting& lr = mb_->layers[static_cast<std::size_t>(moe)];
  return {lr.rows_computed(local_), gathers_tokens() ? lr.rows_computed(local_) : lr.rows_sent(local_)};
}

void RankTrainer::layer_forward(int layer, int moe, const core::Buffer& x_in, ActivationViews& a) {
  attention_forward(x_in, a);
  if (model_.is_moe_layer(layer))
    moe_forward(moe, a);
  else
    dense_ffn_forward(a);
}

ActivationViews RankTrainer::recomputed_views(int layer, int moe_index, const ActivationViews& kept) {
  const bool moe = model_.is_moe_layer(layer);
  const auto [computed, returned] = moe ? layer_rows(moe_index) : std::pair<std::int64_t, std::int64_t>{};
  Carver measure;
  carve_activations(model_, moe ? 1 : 2, tokens_, computed, returned, measure, false, false, {}, nullptr, layout_.tp);
  layer_rest_ = rt_.alloc(core::Tier::hbm, measure.used(), "activations");
  Carver cut(layer_rest_);
  ActivationViews v =
      carve_activations(model_, moe ? 1 : 2, tokens_, computed, returned, cut, false, false, {}, nullptr, layout_.tp);
  v.out = kept.out;
  return v;
}

void RankTrainer::shed_layer_rest() {
  if (layer_rest_) rt_.free(layer_rest_);
  layer_rest_ = {};
}

void RankTrainer::forward(int step, int micro, int chunk) {
  select_micro_batch(step, micro);
  const LayerChunk& ch = st_.chunks[static_cast<std::size_t>(chunk)];
  units_.clear();
  gathered_.clear();
  released_.clear();
  unit_pos_ = -1;
  // The order in which this micro-batch uses the dense units: embedding, layers, embedding again for the tied
  // logits (held through their backward), layers in reverse, embedding for the lookup's backward.
  units_.push_back(0);
  for (int l = 1; l <= model_.layers; ++l) units_.push_back(l);
  units_.push_back(0);
  for (int l = model_.layers; l >= 1; --l) units_.push_back(l);
  units_.push_back(0);

  rt_.begin_phase("forward");
  if (first_chunk(chunk) || last_chunk(chunk)) load_batch(step, micro);  // ids for the lookup, targets for the loss
  keep_activations(0, tokens_, 0, 0);
  if (!first_chunk(chunk)) {
    receive_chunk_input(chunk, act_views_.back().out);
  } else {
    unit_begin(0);
    if (policy_.embedding == Embedding::partition)
      partitioned_embedding_forward();
    else
      embedding_forward();
    unit_end();
  }
  if (residency_) residency_->prefetch(0, false, {});
  int moe = ch.first_moe;
  for (int l = ch.first_layer; l < ch.end_layer && !model_.is_mtp_layer(l); ++l) {
    unit_begin(l + 1);
    kept_layer_forward(l, moe);
    moe += model_.is_moe_layer(l);
    unit_end();
  }
  if (last_chunk(chunk)) {
    unit_begin(0);
    const core::Buffer x_last = act_views_.back().out;
    keep_activations(3, tokens_, 0, 0);
    if (policy_.embedding == Embedding::partition)
      partitioned_logits(false);
    else
      logits_forward(x_last);
    if (model_.mtp_blocks > 0) mtp_forward(ch, moe);
  } else {
    send_chunk_output(chunk, act_views_.back().out);
  }
  rt_.end_phase();
}

void RankTrainer::kept_layer_forward(int l, int moe) {
  const core::Buffer x_in = act_views_.back().out;
  const bool is_moe = model_.is_moe_layer(l);
  const auto [computed, returned] = is_moe ? layer_rows(moe) : std::pair<std::int64_t, std::int64_t>{};
  if (recompute()) {  // keep the output alone; the rest lives only while the layer runs
    Carver measure;
    measure.take(static_cast<std::uint64_t>(static_cast<double>(tokens_ * model_.hidden) * a_));
    act_blobs_.push_back(rt_.alloc(core::Tier::hbm, measure.used(), "activations"));
    ActivationViews kept;
    kept.out = Carver(act_blobs_.back()).take(measure.used());
    act_views_.push_back(kept);
    ActivationViews a = recomputed_views(l, moe, kept);
    layer_forward(l, moe, x_in, a);
    shed_layer_rest();
  } else {
    keep_activations(is_moe ? 1 : 2, tokens_, computed, returned);
    layer_forward(l, moe, x_in, act_views_.back());
  }
}

void RankTrainer::kept_layer_backward(int l, int moe) {
  const core::Buffer x_in = act_views_[act_views_.size() - 2].out;
  ActivationViews recomputed;
  if (recompute()) {  // the layer's forward again, collectives included, right before its backward
    recomputed = recomputed_views(l, moe, act_views_.back());
    layer_forward(l, moe, x_in, recomputed);
  }
  ActivationViews& a = recompute() ? recomputed : act_views_.back();
  if (model_.is_moe_layer(l))
    moe_backward(moe, a, l + 1);
  else
    dense_ffn_backward(a, l + 1);
  attention_backward(x_in, a, l + 1);
  shed_layer_rest();
  drop_activations();
}

void RankTrainer::drop_activations() {
  rt_.free(act_blobs_.back());
  act_blobs_.pop_back();
  act_views_.pop_back();
}

void RankTrainer::backward(int step, int micro, int chunk) {
  select_micro_batch(step, micro);
  const LayerChunk& ch = st_.chunks[static_cast<std::size_t>(chunk)];
  rt_.begin_phase("backward");
  begin_backward_grads();
  int moe = ch.first_moe + ch.moe_layers;
  if (last_chunk(chunk)) {
    // The multi-token prediction modules first (the last forward); they leave ws.mtp_dh, their gradient of the last
    // layer's output.
    if (model_.mtp_blocks > 0) {
      if (layout_.pp > 1) load_batch(step, micro);  // later micro-batches' forwards replaced the next tokens' ids
      mtp_backward(ch);
      moe -= model_.mtp_blocks;
    }
    const std::size_t last = act_views_.size() - 2;  // the last layer's block (its output feeds the logits)
    // Without pipelines the forward's last unit (the embedding unit, for the logits) is still current; with them
    // other passes ran in between (no ZeRO-3 gather to keep in order: pipelines refuse it).
    if (layout_.pp > 1 || model_.mtp_blocks > 0) unit_begin(0);
    if (policy_.embedding == Embedding::partition)
      partitioned_logits(true);
    else
      logits_backward(act_views_[last].out);
    if (model_.mtp_blocks > 0)
      tensor(ops::add(st_.ws.dx, st_.ws.mtp_dh, st_.ws.dx, tokens_ * model_.hidden), "mtp hidden grad add");
    drop_activations();
    unit_end();
  } else {
    receive_output_grad(chunk);
  }
  if (residency_) residency_->prefetch(moe - 1, true, experts_used(exchanges_[static_cast<std::size_t>(moe - 1)]));
  for (int l = std::min(ch.end_layer, model_.main_layers()) - 1; l >= ch.first_layer; --l) {
    unit_begin(l + 1);
    open_unit_grads(l + 1);
    moe -= model_.is_moe_layer(l);
    kept_layer_backward(l, moe);
    unit_grads_done(l + 1);
    unit_end();
  }
  if (first_chunk(chunk)) {
    // With later micro-batches' forwards in between (1F1B), the ids buffer holds another micro-batch's tokens.
    if (layout_.pp > 1) load_batch(step, micro);
    unit_begin(0);
    if (policy_.embedding == Embedding::partition)
      partitioned_embedding_backward();
    else
      embedding_backward();
  } else {
    send_input_grad(chunk);
  }
  drop_activations();
  // The embedding unit's gradients are complete once the micro-batch's last backward pass on this rank has run (its
  // first chunk: the lookup on the first stage, after the output layer on the last).
  if (chunk == 0) unit_grads_done(0);
  if (first_chunk(chunk)) unit_end();
  rt_.end_phase();
}

void RankTrainer::optimizer_step(int step) {
  rt_.begin_phase("optimizer");
  step_grads_open_ = false;
  rt_.stream_wait(kCompute, last_reduce_);
  rt_.stream_wait(kCompute, replica_reduced_);
  if (replicas_on()) measure_expert_load(step);
  const double o = model_.optimizer_bytes_per_param(), g = model_.grad_bytes_per_param();
  // AdamW reads master weights (or the parameters), both moments and the gradient, and writes them back with
  // the working copy: the simulator costs (o + g) bytes read and (o + a) written per parameter.
  auto adamw = [&](const core::Buffer& grad, const core::Buffer& value, const core::Buffer& opt, std::int64_t n) {
    if (n <= 0) return;
    if (model_.optimizer == "sgd") {  // plain SGD, no momentum: value -= lr x grad (the gradient is spent)
      core::TensorOp s = ops::scale(grad, n, -cfg_.learning_rate);
      s.dtype = dtype_;
      run(s, "optimizer");
      core::TensorOp u = ops::add(value, grad, value, n);
      u.dtype = dtype_;
      // The fp32 master copy (mixed precision) is read and written too.
      u.bytes_read = static_cast<std::uint64_t>((o + g + a_) * static_cast<double>(n));
      u.bytes_written = static_cast<std::uint64_t>((o + a_) * static_cast<double>(n));
      run(u, "optimizer");
      return;
    }
    const auto f = static_cast<std::uint64_t>(n) * 4;
    core::TensorOp op = ops::adamw(grad, value, opt.slice(0, f), opt.slice(f, f), n, cfg_.learning_rate, 0.9, 0.95,
                                   1e-8, 0.0, step + 1);
    op.dtype = dtype_;
    op.bytes_read = static_cast<std::uint64_t>((o + g) * static_cast<double>(n));
    op.bytes_written = static_cast<std::uint64_t>((o + a_) * static_cast<double>(n));
    run(op, "optimizer");
  };
  const auto bytes = [&](std::int64_t elems, double per) {
    return static_cast<std::uint64_t>(static_cast<double>(elems) * per);
  };
  // Dense parameters: the whole replica (ddp), or the pieces this rank owns (ZeRO).
  switch (policy_.dense) {
    case DenseSharding::ddp:
      adamw(st_.grads, st_.params, st_.opt, st_.partition_elems);
      break;
    case DenseSharding::zero2:
    case DenseSharding::distributed: {
      const int r = world_.index_of(rank_);
      const core::Buffer pieces = policy_.dense == DenseSharding::zero2 ? st_.grads : st_.part_grads;
      for (const GradBucket& b : st_.buckets) {
        const std::int64_t start = b.lo + r * b.piece, n = std::clamp<std::int64_t>(b.hi - start, 0, b.piece);
        if (n <= 0) continue;
        adamw(pieces.slice(bytes(b.part_offset, g), bytes(n, g)), st_.params.slice(bytes(start, a_), bytes(n, a_)),
              st_.opt.slice(bytes(b.part_offset, o), bytes(n, o)), n);
      }
      break;
    }
    case DenseSharding::zero3: {
      const int j = rail_group_.index_of(rank_), rails = rail_group_.size();
      for (const DenseUnit& u : st_.units) {
        const std::int64_t np = u.padded / node_group_.size(), wp = np / rails;
        adamw(st_.grads.slice(bytes(rails > 1 ? u.part_offset : u.shard_offset, g), bytes(wp, g)),
              st_.params.slice(bytes(u.shard_offset + j * wp, a_), bytes(wp, a_)),
              st_.opt.slice(bytes(u.part_offset, o), bytes(wp, o)), wp);
      }
      break;
    }
  }
  if (!st_.expert_chunks.empty()) {  // distributed optimizer: this rank's piece of every chunk of its experts
    const std::int64_t r = edp_group_.index_of(rank_), layer = st_.expert_layer_elems;
    for (int held = 0; held < st_.held_moe_layers; ++held)
      for (const GradBucket& b : st_.expert_chunks) {
        const std::int64_t start = b.lo + r * b.piece, n = std::clamp<std::int64_t>(b.hi - start, 0, b.piece);
        const std::int64_t piece = held * st_.expert_piece_layer + b.part_offset;
        if (n > 0)
          adamw(st_.expert_part_grads.slice(bytes(piece, g), bytes(n, g)),
                st_.expert_params.slice(bytes(held * layer + start, a_), bytes(n, a_)),
                st_.expert_opt.slice(bytes(piece, o), bytes(n, o)), n);
      }
  } else if (policy_.offload == Offload::none) {
    adamw(st_.expert_grads, st_.expert_params, st_.expert_opt, static_cast<std::int64_t>(st_.expert_params.bytes / a_));
  }
  if (replicas_on()) refresh_replicas(step);
  if (policy_.embedding == Embedding::partition) {  // this rank's columns of the table: complete, no reduction
    adamw(st_.shard.grads, st_.shard.params, st_.shard.opt, static_cast<std::int64_t>(model_.vocab) * st_.shard.cols);
    shard_ready_ = last_compute_;
  }
  gather_updated_params(last_compute_);
  rt_.end_phase();
}

}  // namespace moesys::policies::training
