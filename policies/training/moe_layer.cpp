// The MoE FFN of one layer on one rank, with real operands: gate GEMM and top-k with capacity, the token-count
// exchange (counted dispatch), the slot remap into the send layout, dispatch all-to-all(s), regroup by expert,
// expert FFNs, regroup back, combine all-to-all(s) and the weighted combine. With overlap_chunks = c > 1 every
// (peer, expert) block is split into c chunks: dispatch chunks run back to back on the communication stream while
// the compute stream works on the chunks already arrived, and combine chunks follow as their experts finish.
// Row layouts: moe_exchange.hpp. Expert tensors of a layer: L expert-major blocks of W1 [h][in x f], b1, W2 [f][h],
// b2 (rank_state.hpp; SwiGLU: in = 2); batched expert GEMMs step one expert block from product to product. Shared
// experts run as one FFN of the summed width on every token, on the compute stream while the dispatch is in flight. Offloaded experts are
// fetched into a GPU slot before the expert FFNs and their gradients go home after them (expert_residency.hpp).
#include <algorithm>

#include "core/error.hpp"
#include "model/ops.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kComm;
using core::streams::kCompute;

namespace {
/// One layer's expert values and gradients (resident, or the slot an offloaded layer was fetched into).
struct ExpertViews {
  core::Buffer params, grads;
  core::Buffer copy_params, copy_grads;  // the layer's spare slots (expert replicas), after the `local` own experts
  std::int64_t local = 0;
  std::int64_t h = 0, f = 0, in = 1, pe = 0;  // one expert block: W1 [h][in f], b1, W2 [f][h], b2
  std::int64_t b1 = 0;                        // b1's elements (0 without biases)
  double a = 4, g = 4;
  /// W1 (or its gradient) of experts [e, e + batch), one block apart.
  core::Buffer w1(std::int64_t e, std::int64_t batch, bool grad = false) const {
    return view(e, batch, 0, h * in * f, grad);
  }
  core::Buffer w2(std::int64_t e, std::int64_t batch, bool grad = false) const {
    return view(e, batch, h * in * f + b1, f * h, grad);
  }
  core::Buffer view(std::int64_t e, std::int64_t batch, std::int64_t at, std::int64_t matrix, bool grad) const {
    const double per = grad ? g : a;
    const bool copy = local > 0 && e >= local;  // a spare slot: one expert at a time (for_experts batches own ones)
    const std::int64_t first = (copy ? e - local : e) * pe + at, elems = (batch - 1) * pe + matrix;
    return (copy ? (grad ? copy_grads : copy_params) : (grad ? grads : params)).slice(static_cast<std::uint64_t>(static_cast<double>(first) * per),
                                         static_cast<std::uint64_t>(static_cast<double>(elems) * per));
  }
};

std::uint64_t bytes_of(std::int64_t elems, double per) {
  return static_cast<std::uint64_t>(static_cast<double>(elems) * per);
}
}  // namespace

MoeExchange RankTrainer::exchange_for(int moe_layer, const ActivationViews& a) {
  const int P = layout_.ep, L = layout_.expert_slots(), E = model_.experts;
  MoeExchange x;
  x.peers = P, x.local = L, x.chunks = policy_.overlap_chunks;
  const bool gshard = policy_.gate == Gate::gshard, padded = policy_.dispatch == Dispatch::padded;
  x.capacity = gshard ? model_.expert_capacity(tokens_) : tokens_;
  if (replicas_on()) x.experts = E;
  if (policy_.dispatch == Dispatch::counts && replicas_on()) {
    // Every member needs every member's counts per expert: a sender's rows for a replicated expert are split
    // over its copies by a rule all members apply (expert_replicas.hpp).
    const auto own = static_cast<std::uint64_t>(4 * E), all = own * static_cast<std::uint64_t>(P);
    rt_.stream_wait(kComm, last_compute_);
    const core::Event e = rt_.all_gather(kComm, ep_group_, st_.counts.slice(0, own), st_.counts.slice(own, all), all);
    std::vector<std::int32_t> counts(static_cast<std::size_t>(E) * static_cast<std::size_t>(1 + P));
    if (read_back(st_.counts, own + all, e, counts.data())) x = replicated_exchange(moe_layer, counts, x.capacity);
  } else if (policy_.dispatch == Dispatch::counts) {
    // Every rank tells every peer how many rows each of its experts will get; the host needs these numbers to
    // size the all-to-all(v), so it reads them back (the paper's 2D prefetch reads the same counts).
    const auto per_peer = static_cast<std::uint64_t>(4 * L);
    const std::vector<std::uint64_t> sizes(static_cast<std::size_t>(P), per_peer);
    const auto half = static_cast<std::uint64_t>(4 * E);
    rt_.stream_wait(kComm, last_compute_);
    const core::Event e = rt_.all_to_all(kComm, ep_group_, st_.counts.slice(0, half), sizes,
                                         st_.counts.slice(half, half), sizes, core::CollectiveAlgo::direct);
    std::vector<std::int32_t> counts(static_cast<std::size_t>(2 * E));
    if (read_back(st_.counts, 2 * half, e, counts.data())) {
      for (int i = 0; i < E; ++i) {
        x.send_pe.push_back(std::min<std::int64_t>(counts[static_cast<std::size_t>(i)], x.capacity));
        x.recv_pe.push_back(std::min<std::int64_t>(counts[static_cast<std::size_t>(E + i)], x.capacity));
      }
    }
  } else if (real_) {
    x.send_pe.assign(static_cast<std::size_t>(E), x.capacity);
    x.recv_pe.assign(static_cast<std::size_t>(E), x.capacity);
  }
  if (x.send_pe.empty()) {  // the simulator: the routing plan's rows
    const LayerRouting& lr = mb_->layers[static_cast<std::size_t>(moe_layer)];
    const auto& send = lr.send_rows[static_cast<std::size_t>(local_)];
    for (int p = 0; p < P; ++p)
      for (int e = 0; e < L; ++e)
        x.send_pe.push_back(MoeExchange::part(send[static_cast<std::size_t>(p)], e, L));
    x.recv_pe = matrix_with_sums(lr.recv_rows(layout_, local_), lr.expert_rows[static_cast<std::size_t>(local_)]);
    if (padded) x.capacity = std::max<std::int64_t>(x.capacity, *std::max_element(x.send_pe.begin(), x.send_pe.end()));
  }
  x.finish();
  if (x.rows_sent > st_.max_rows_sent || x.rows_recv > st_.max_rows_recv)
    throw core::RuntimeFailure("MoE layer " + std::to_string(moe_layer) + " on rank " + std::to_string(rank_) +
                               " routes " + std::to_string(x.rows_sent) + " rows out and " +
                               std::to_string(x.rows_recv) + " in, more than its exchange buffers hold (" +
                               std::to_string(st_.max_rows_sent) + ", " + std::to_string(st_.max_rows_recv) + ")");
  upload_tables(x, true);
  (void)a;
  return x;
}

void RankTrainer::upload_tables(const MoeExchange& x, bool with_slot_table) {
  // One copy of [slot table][forward regroup][backward regroup]; backward needs only the regroup indices. The
  // simulator uploads the same bytes without building them.
  const std::uint64_t table_bytes = static_cast<std::uint64_t>(st_.table_elems) * 4;
  const std::uint64_t index_bytes = static_cast<std::uint64_t>(2 * x.rows_recv) * 4;
  if (static_cast<std::int64_t>(model_.experts) * x.capacity > st_.table_elems)
    throw core::RuntimeFailure("MoE slot table of " + std::to_string(model_.experts * x.capacity) +
                               " entries exceeds its buffer of " + std::to_string(st_.table_elems));
  std::vector<std::int32_t> values;
  if (real_) {
    std::vector<std::int32_t> fwd, bwd;
    x.regroup_indices(fwd, bwd);
    if (with_slot_table) {
      values = x.slot_table();
      values.resize(static_cast<std::size_t>(st_.table_elems), -1);
    }
    values.insert(values.end(), fwd.begin(), fwd.end());
    values.insert(values.end(), bwd.begin(), bwd.end());
  }
  const core::Buffer dst = with_slot_table ? st_.index : st_.index.slice(table_bytes, index_bytes);
  rt_.stream_wait(kCompute, upload_ints(dst, values, with_slot_table ? table_bytes + index_bytes : index_bytes));
}

core::Event RankTrainer::chunk_all_to_all(const MoeExchange& x, int c, bool to_experts,
                                          const core::Buffer& send_side, const core::Buffer& expert_side) {
  // Rows to the experts may travel in FP8 (a simulator option: the rows' bytes, not their values, are modelled).
  const double row = static_cast<double>(model_.hidden) * (to_experts ? dispatch_bytes_per_elem() : a_);
  const auto so = bytes_of(x.send_offset[static_cast<std::size_t>(c)], row);
  const auto ro = bytes_of(x.recv_offset[static_cast<std::size_t>(c)], row);
  const auto sb = x.send_bytes(c, row), rb = x.recv_bytes(c, row);
  std::uint64_t st = 0, rtot = 0;
  for (auto b : sb) st += b;
  for (auto b : rb) rtot += b;
  const core::Buffer s = send_side.slice(so, st), e = expert_side.slice(ro, rtot);
  // DeepEP: this rank's tokens per node, for the dispatch it sends and the combine it receives.
  core::NodeTraffic nodes;
  if (a2a_algo_ == core::CollectiveAlgo::deepep) nodes = deepep_node_traffic(sb, row, x.chunks, !to_experts);
  return to_experts ? rt_.all_to_all(kComm, ep_group_, s, sb, e, rb, a2a_algo_, nodes)
                    : rt_.all_to_all(kComm, ep_group_, e, rb, s, sb, a2a_algo_, nodes);
}

void RankTrainer::moe_forward(int moe_layer, ActivationViews& a) {
  const std::int64_t n = tokens_, h = model_.hidden, E = model_.experts, k = model_.top_k;
  const Workspace& w = st_.ws;
  if (residency_ && moe_layer + 1 < model_.moe_layers()) residency_->prefetch(moe_layer + 1, false, {});

  {
    const ModelDtypeGemms router(*this);
    gemm(n, E, h, a.ln2, param(current_unit_, kFfnIn), w.logits_gate, "gate logits");
  }
  const std::int64_t cap = policy_.gate == Gate::gshard ? model_.expert_capacity(n) : n;
  ops::GateRule rule;
  rule.sigmoid = model_.gate == core::GateKind::sigmoid;
  if (rule.sigmoid) rule.bias = param(current_unit_, kFfnInBias);
  rule.groups = model_.expert_groups, rule.max_groups = model_.max_groups_per_token;
  tensor(ops::gate_topk(w.logits_gate, a.probs, a.experts, w.slots_raw, a.weights, st_.counts.slice(0, 4 * E), n, E,
                        k, cap, rule),
         "gate top-k");
  // The gate's counts of this micro-batch and layer, kept for the routing trace a real run writes.
  const auto slot = static_cast<std::uint64_t>(micro_ * model_.moe_layers() + moe_layer) * 4 * E;
  rt_.copy(kCompute, st_.routing.slice(slot, 4 * E), st_.counts.slice(0, 4 * E), 4 * E);
  const bool gathered = gathers_tokens();
  MoeExchange& x = exchanges_[static_cast<std::size_t>(moe_layer)] =
      gathered ? gathered_exchange(moe_layer, a) : exchange_for(moe_layer, a);
  std::vector<core::Event> arrived, computed;
  // FP8 dispatch: the tokens are quantized once before they travel (their routed copies arrive quantized).
  if (model_.fp8_dispatch) quantize_for_fp8(a.ln2, n * h);
  if (!gathered) {
    tensor(ops::remap_index(w.slots_raw, st_.index, a.slots, n * k, E * x.capacity), "slot remap");
    tensor(ops::dispatch(a.ln2, a.slots, st_.send, n, h, k, x.rows_sent), "permute");
    rt_.stream_wait(kComm, last_compute_);
    // One local expert: peer-major rows are already expert-major, so they land where the expert GEMMs read.
    for (int c = 0; c < x.chunks; ++c)
      arrived.push_back(chunk_all_to_all(x, c, true, st_.send, x.local == 1 ? a.xin : st_.recv));
  }
  if (model_.shared_experts > 0)  // every token's shared experts, while its rows travel to the routed ones
    ffn_forward({a.ln2, param(current_unit_, kSharedIn), param(current_unit_, kSharedOut), a.shared_pre,
                 a.shared_post, a.shared_out, {}, {}, model_.shared_hidden()},
                n, true);
  if (gathered) {  // ... or while the group's tokens are gathered
    gathered_permute(x, a);
    arrived.push_back(last_compute_);
  }
  if (residency_) residency_->acquire(moe_layer, false, experts_used(x), kCompute);
  if (replicas_on()) rt_.stream_wait(kCompute, replica_ready_[static_cast<std::size_t>(moe_layer)]);
  for (int c = 0; c < x.chunks; ++c) {
    rt_.stream_wait(kCompute, arrived[static_cast<std::size_t>(c)]);
    expert_ffn_forward(moe_layer, x, a, c);
    computed.push_back(last_compute_);
  }
  if (residency_) residency_->release(moe_layer, last_compute_);
  if (gathered) {
    gathered_combine(x, a);
  } else {
    core::Event returned;
    for (int c = 0; c < x.chunks; ++c) {
      rt_.stream_wait(kComm, computed[static_cast<std::size_t>(c)]);
      returned = chunk_all_to_all(x, c, false, a.ret, st_.recv);
    }
    rt_.stream_wait(kCompute, returned);
    tensor(ops::combine(a.ret, a.slots, a.weights, a.out, n, h, k, x.rows_sent), "combine");
  }
  if (model_.shared_experts > 0) tensor(ops::add(a.out, a.shared_out, a.out, n * h), "shared experts add");
  tensor(ops::add(a.out, a.mid, a.out, n * h), "residual");
}

void RankTrainer::moe_backward(int moe_layer, ActivationViews& a, int unit) {
  const std::int64_t n = tokens_, h = model_.hidden, E = model_.experts, k = model_.top_k;
  const Workspace& w = st_.ws;
  const MoeExchange& x = exchanges_[static_cast<std::size_t>(moe_layer)];
  counters_.expert_rows.push_back(x.rows_recv);  // once per layer and micro-batch (recompute re-runs forwards)
  if (residency_ && moe_layer > 0)
    residency_->prefetch(moe_layer - 1, true, experts_used(exchanges_[static_cast<std::size_t>(moe_layer - 1)]));
  const bool gathered = gathers_tokens();
  if (!gathered) upload_tables(x, false);  // st_.index holds the last forward layer's tables; this layer's go back up
  if (redo().layernorm) norm_forward(a.mid, unit, kNorm2, a.ln2, a.mean2, a.rstd2, n, "layernorm recompute");
  std::vector<core::Event> arrived, computed;
  if (gathered) {
    gather_output_grads(x, a);
  } else {
    // Gradients of the combined rows travel to the experts (the dispatch direction) ...
    tensor(ops::combine_bwd(w.dx, a.ret, a.slots, a.weights, st_.send, w.dweights, n, h, k, x.rows_sent),
           "combine bwd");
    rt_.stream_wait(kComm, last_compute_);
    for (int c = 0; c < x.chunks; ++c)
      arrived.push_back(chunk_all_to_all(x, c, true, st_.send, x.local == 1 ? w.rows_a : st_.recv));
  }
  if (model_.shared_experts > 0) {
    const FfnViews f{a.ln2, param(unit, kSharedIn), param(unit, kSharedOut), a.shared_pre, a.shared_post, {},
                     grad(unit, kSharedIn), grad(unit, kSharedOut),
                     model_.shared_hidden()};
    if (redo().moe_act) ffn_activation(f.pre, f.post, n, f.width, true);
    ffn_backward(f, w.dx, w.shared_f, w.shared_g ? w.shared_g : w.shared_f, w.shared_dx, n, true);
  }
  if (gathered) {
    gathered_combine_backward(x, a);
    arrived.push_back(last_compute_);
  }
  if (residency_) {
    residency_->acquire(moe_layer, true, experts_used(x), kCompute);
    residency_->begin_grads(moe_layer, kCompute);
  }
  for (int c = 0; c < x.chunks; ++c) {
    rt_.stream_wait(kCompute, arrived[static_cast<std::size_t>(c)]);
    expert_ffn_backward(moe_layer, x, a, c);
    computed.push_back(last_compute_);
  }
  const core::Event grads = last_compute_;
  if (residency_) {
    const bool last_micro = micro_ + 1 == plan_.routing.micro_batches;
    const core::Event reduced =
        residency_->end_grads(moe_layer, grads, experts_used(x), last_micro, edp_group_, core::streams::kComm2);
    if (last_micro && layout_.edp > 1) last_reduce_ = reduced;
  } else {
    expert_grads_done(moe_layer);
  }
  if (gathered) {
    gathered_permute_backward(x);
  } else {
    // ... and the gradients of the dispatched rows come back (the combine direction).
    core::Event returned;
    for (int c = 0; c < x.chunks; ++c) {
      rt_.stream_wait(kComm, computed[static_cast<std::size_t>(c)]);
      returned = chunk_all_to_all(x, c, false, st_.send, st_.recv);
    }
    rt_.stream_wait(kCompute, returned);
    tensor(ops::dispatch_bwd(st_.send, a.slots, w.dn, n, h, k, x.rows_sent), "permute bwd");
  }
  if (model_.shared_experts > 0) tensor(ops::add(w.dn, w.shared_dx, w.dn, n * h), "shared experts add bwd");
  tensor(ops::gate_bwd(a.probs, a.experts, a.weights, w.dweights, w.dlogits_gate, n, E, k,
                       model_.gate == core::GateKind::sigmoid),
         "gate bwd");
  {
    const ModelDtypeGemms router(*this);
    gemm(h, E, n, a.ln2, w.dlogits_gate, grad(unit, kFfnIn), "gate wgrad", true, false, true);
    gemm(n, h, E, w.dlogits_gate, param(unit, kFfnIn), w.dn, "gate dgrad", false, true, true);
  }
  norm_backward(a.mid, unit, kNorm2, a.mean2, a.rstd2, w.dn, w.dtmp, n, "layernorm bwd");
  tensor(ops::add(w.dx, w.dtmp, w.dx, n * h), "residual bwd");
}

namespace {
/// The expert weights the layer computes with: resident, or the GPU slot an offloaded layer was fetched into.
ExpertViews expert_views(const RankState& s, const ExpertResidency* residency, const core::ModelConfig& m,
                         int moe_layer, double a, double g) {
  ExpertViews v;
  v.h = m.hidden, v.f = m.expert_hidden(), v.in = m.ffn_in_factor(), v.pe = m.expert_params_per_expert();
  v.b1 = expert_tensors(m)[1], v.a = a, v.g = g;
  if (residency) {
    const ExpertResidency::Views r = residency->views(moe_layer);
    v.params = r.params, v.grads = r.grads;
    return v;
  }
  const auto layer = static_cast<std::uint64_t>(s.expert_slot[static_cast<std::size_t>(moe_layer)]);  // this stage's
  v.params = s.expert_params.slice(layer * bytes_of(s.expert_layer_elems, a), bytes_of(s.expert_layer_elems, a));
  if (s.expert_grads)  // generation keeps no gradients
    v.grads = s.expert_grads.slice(layer * bytes_of(s.expert_layer_elems, g), bytes_of(s.expert_layer_elems, g));
  if (s.replica_params) {
    v.local = s.expert_layer_elems / v.pe;
    const std::int64_t copies = s.replica_slots;
    v.copy_params = s.replica_params.slice(layer * bytes_of(copies * v.pe, a), bytes_of(copies * v.pe, a));
    if (s.replica_grads)
      v.copy_grads = s.replica_grads.slice(layer * bytes_of(copies * v.pe, g), bytes_of(copies * v.pe, g));
  }
  return v;
}

/// Calls fn(e, first row, rows) for every expert slot with rows in chunk c (rows in expert-major order), or
/// fn(-1, first, rows) once when every expert has the same rows and there are no spare slots (one batched GEMM).
template <typename Fn>
void for_experts(const MoeExchange& x, int c, Fn fn) {
  const auto& rows = x.expert_rows[static_cast<std::size_t>(c)];
  const std::int64_t first = x.recv_offset[static_cast<std::size_t>(c)];
  if (x.local > 1 && x.experts == 0 && std::all_of(rows.begin(), rows.end(), [&](std::int64_t r) { return r == rows[0]; })) {
    if (rows[0] > 0) fn(-1, first, rows[0]);
    return;
  }
  std::int64_t at = first;
  for (int e = 0; e < x.local; ++e) {
    if (rows[static_cast<std::size_t>(e)] > 0) fn(e, at, rows[static_cast<std::size_t>(e)]);
    at += rows[static_cast<std::size_t>(e)];
  }
}
/// The rows of chunk `c` in expert-major order: where they start, how many, their regroup indices in st.index
/// ([slot table][forward][backward]) and views of `width`-wide rows of a buffer.
struct ChunkRows {
  std::int64_t first = 0, R = 0;
  core::Buffer fwd_idx, bwd_idx;
  double a = 0;
  ChunkRows(const MoeExchange& x, int c, const RankState& st, double bytes_per_elem) : a(bytes_per_elem) {
    first = x.recv_offset[static_cast<std::size_t>(c)];
    for (auto v : x.expert_rows[static_cast<std::size_t>(c)]) R += v;
    if (R == 0) return;
    fwd_idx = st.index.slice(bytes_of(st.table_elems + first, 4), bytes_of(R, 4));
    bwd_idx = st.index.slice(bytes_of(st.table_elems + x.rows_recv + first, 4), bytes_of(R, 4));
  }
  core::Buffer rows(const core::Buffer& b, std::int64_t at, std::int64_t n, std::int64_t width) const {
    return b.slice(bytes_of(at * width, a), bytes_of(n * width, a));
  }
};
}  // namespace

void RankTrainer::expert_ffn_forward(int moe_layer, const MoeExchange& x, const ActivationViews& a, int c) {
  const std::int64_t h = model_.hidden, f = model_.expert_hidden(), fi = model_.ffn_in_factor() * f;
  const ChunkRows ch(x, c, st_, a_);
  if (ch.R == 0) return;
  const std::int64_t first = ch.first, R = ch.R;
  const double g = model_.grad_bytes_per_param();
  const ExpertViews ev = expert_views(st_, residency_.get(), model_, moe_layer, a_, g);
  const core::Buffer &fwd_idx = ch.fwd_idx, &bwd_idx = ch.bwd_idx;
  auto rows = [&](const core::Buffer& b, std::int64_t at, std::int64_t n, std::int64_t width) {
    return ch.rows(b, at, n, width);
  };
  // No regroup: the all-to-alls read and write the expert-major rows (one local expert), or the all-gather
  // dispatcher permuted them so and combines the experts' outputs where they are (a.ret).
  const bool direct = x.local == 1 || x.expert_major;
  if (!direct)
    tensor(ops::gather_rows(st_.recv, fwd_idx, rows(a.xin, first, R, h), R, h, x.rows_recv), "regroup by expert");
  const core::Buffer y = x.expert_major ? a.ret : direct ? st_.recv : st_.ws.rows_a;
  operand_in_fp8_ = model_.fp8_dispatch;  // the rows arrived quantized
  for_experts(x, c, [&](int e, std::int64_t at, std::int64_t r) {
    const std::int64_t batch = e < 0 ? x.local : 1, ee = e < 0 ? 0 : e;
    gemm(r, fi, h, rows(a.xin, at, r * batch, h), ev.w1(ee, batch), rows(a.pre, at, r * batch, fi), "expert fc1",
         false, false, false, batch, false, ev.pe);
  });
  operand_in_fp8_ = false;
  ffn_activation(rows(a.pre, first, R, fi), rows(a.post, first, R, f), R, f, true);
  for_experts(x, c, [&](int e, std::int64_t at, std::int64_t r) {
    const std::int64_t batch = e < 0 ? x.local : 1, ee = e < 0 ? 0 : e;
    gemm(r, h, f, rows(a.post, at, r * batch, f), ev.w2(ee, batch), rows(y, at, r * batch, h), "expert fc2", false,
         false, false, batch, false, ev.pe);
  });
  if (!direct)
    tensor(ops::gather_rows(st_.ws.rows_a, bwd_idx, rows(st_.recv, first, R, h), R, h, x.rows_recv),
           "regroup by peer");
}

void RankTrainer::expert_ffn_backward(int moe_layer, const MoeExchange& x, const ActivationViews& a, int c) {
  const std::int64_t h = model_.hidden, f = model_.expert_hidden(), fi = model_.ffn_in_factor() * f;
  const ChunkRows ch(x, c, st_, a_);
  if (ch.R == 0) return;
  const std::int64_t first = ch.first, R = ch.R;
  const double g = model_.grad_bytes_per_param();
  const ExpertViews ev = expert_views(st_, residency_.get(), model_, moe_layer, a_, g);
  const core::Buffer &fwd_idx = ch.fwd_idx, &bwd_idx = ch.bwd_idx;
  auto rows = [&](const core::Buffer& b, std::int64_t at, std::int64_t n, std::int64_t width) {
    return ch.rows(b, at, n, width);
  };
  const Workspace& w = st_.ws;
  const bool direct = x.local == 1 || x.expert_major;
  if (!direct)
    tensor(ops::gather_rows(st_.recv, fwd_idx, rows(w.rows_a, first, R, h), R, h, x.rows_recv), "regroup by expert");
  const core::Buffer dxin = direct ? st_.recv : w.rows_a;
  // The activation output's gradient: in place in rows_f for GeLU, its own rows for SwiGLU (half as wide).
  const core::Buffer d_post = w.rows_g ? w.rows_g : w.rows_f;
  // Selective recompute: the activation's output again from its kept input (fc2's weight gradient reads it).
  if (redo().moe_act) ffn_activation(rows(a.pre, first, R, fi), rows(a.post, first, R, f), R, f, true);
  for_experts(x, c, [&](int e, std::int64_t at, std::int64_t r) {
    const std::int64_t batch = e < 0 ? x.local : 1, ee = e < 0 ? 0 : e;
    gemm(r, f, h, rows(w.rows_a, at, r * batch, h), ev.w2(ee, batch), rows(d_post, at, r * batch, f),
         "expert fc2 dgrad", false, true, false, batch, false, ev.pe);
    gemm(f, h, r, rows(a.post, at, r * batch, f), rows(w.rows_a, at, r * batch, h), ev.w2(ee, batch, true),
         "expert fc2 wgrad", true, false, true, batch, false, 0, ev.pe);
  });
  ffn_activation_backward(rows(a.pre, first, R, fi), rows(d_post, first, R, f), rows(w.rows_f, first, R, fi), R, f,
                          true);
  for_experts(x, c, [&](int e, std::int64_t at, std::int64_t r) {
    const std::int64_t batch = e < 0 ? x.local : 1, ee = e < 0 ? 0 : e;
    gemm(h, fi, r, rows(a.xin, at, r * batch, h), rows(w.rows_f, at, r * batch, fi), ev.w1(ee, batch, true),
         "expert fc1 wgrad", true, false, true, batch, false, 0, ev.pe);
    gemm(r, h, fi, rows(w.rows_f, at, r * batch, fi), ev.w1(ee, batch), rows(dxin, at, r * batch, h),
         "expert fc1 dgrad", false, true, false, batch, false, ev.pe);
  });
  if (!direct)
    tensor(ops::gather_rows(w.rows_a, bwd_idx, rows(st_.recv, first, R, h), R, h, x.rows_recv), "regroup by peer");
}

}  // namespace moesys::policies::training
