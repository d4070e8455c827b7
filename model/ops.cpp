#include "model/ops.hpp"

namespace moesys::model::ops {

namespace {
constexpr std::uint64_t kF = 4;  // fp32 / int32 bytes

TensorOp make(core::TensorOpKind kind, std::vector<Buffer> in, std::vector<Buffer> out, std::vector<I> dims,
              double read_elems, double write_elems, double flop, std::vector<double> scalars = {}) {
  TensorOp op;
  op.kind = kind;
  op.in = std::move(in);
  op.out = std::move(out);
  op.dims = std::move(dims);
  op.scalars = std::move(scalars);
  op.bytes_read = static_cast<std::uint64_t>(read_elems) * kF;
  op.bytes_written = static_cast<std::uint64_t>(write_elems) * kF;
  op.flop = flop;
  return op;
}
double d(I v) { return static_cast<double>(v); }
}  // namespace

core::GemmOp gemm(I m, I n, I k, Buffer a, Buffer b, Buffer c, bool trans_a, bool trans_b, bool accumulate, I batch,
                  core::Dtype dtype) {
  core::GemmOp g;
  g.m = m, g.n = n, g.k = k, g.batch = batch, g.dtype = dtype;
  g.a = a, g.b = b, g.c = c;
  g.trans_a = trans_a, g.trans_b = trans_b, g.accumulate = accumulate;
  return g;
}

TensorOp gate_topk(Buffer logits, Buffer probs, Buffer experts, Buffer slots, Buffer weights, Buffer counts, I T, I E,
                   I k, I C) {
  return make(core::TensorOpKind::gate_topk, {logits}, {probs, experts, slots, weights, counts}, {T, E, k, C},
              d(T) * d(E), d(T) * d(E) + 3 * d(T) * d(k) + d(E), 5 * d(T) * d(E));
}
TensorOp gate_topk(Buffer logits, Buffer probs, Buffer experts, Buffer slots, Buffer weights, Buffer counts, I T, I E,
                   I k, I C, const GateRule& rule) {
  TensorOp op = gate_topk(logits, probs, experts, slots, weights, counts, T, E, k, C);
  if (rule.sigmoid) op.in.push_back(rule.bias);
  op.dims.insert(op.dims.end(), {rule.sigmoid ? 1 : 0, rule.groups, rule.max_groups});
  return op;
}
TensorOp gate_bwd(Buffer probs, Buffer experts, Buffer weights, Buffer d_weights, Buffer d_logits, I T, I E, I k,
                  bool sigmoid) {
  TensorOp op = make(core::TensorOpKind::gate_bwd, {probs, experts, weights, d_weights}, {d_logits}, {T, E, k},
                     d(T) * d(E) + 3 * d(T) * d(k), d(T) * d(E), 4 * d(T) * d(E));
  if (sigmoid) op.dims.push_back(1);
  return op;
}
TensorOp dispatch(Buffer x, Buffer slots, Buffer send, I T, I H, I k, I S) {
  return make(core::TensorOpKind::dispatch, {x, slots}, {send}, {T, H, k, S}, d(T) * d(k) * (d(H) + 1),
              d(S) * d(H), 0);
}
TensorOp dispatch_bwd(Buffer d_send, Buffer slots, Buffer d_x, I T, I H, I k, I S) {
  return make(core::TensorOpKind::dispatch_bwd, {d_send, slots}, {d_x}, {T, H, k, S}, d(T) * d(k) * (d(H) + 1),
              d(T) * d(H), d(T) * d(k) * d(H));
}
TensorOp combine(Buffer y, Buffer slots, Buffer weights, Buffer out, I T, I H, I k, I S) {
  return make(core::TensorOpKind::combine, {y, slots, weights}, {out}, {T, H, k, S}, d(T) * d(k) * (d(H) + 2),
              d(T) * d(H), 2 * d(T) * d(k) * d(H));
}
TensorOp combine_bwd(Buffer d_out, Buffer y, Buffer slots, Buffer weights, Buffer d_y, Buffer d_weights, I T, I H,
                     I k, I S) {
  return make(core::TensorOpKind::combine_bwd, {d_out, y, slots, weights}, {d_y, d_weights}, {T, H, k, S},
              d(T) * d(H) + d(T) * d(k) * (d(H) + 2), d(S) * d(H) + d(T) * d(k), 4 * d(T) * d(k) * d(H));
}
TensorOp block_transpose(Buffer x, Buffer y, I A, I B, I n) {
  return make(core::TensorOpKind::block_transpose, {x}, {y}, {A, B, n}, d(A) * d(B) * d(n), d(A) * d(B) * d(n), 0);
}
TensorOp add_bias(Buffer x, Buffer bias, I G, I M, I N) {
  return make(core::TensorOpKind::add_bias, {bias}, {x}, {G, M, N}, d(G) * d(M) * d(N) + d(G) * d(N),
              d(G) * d(M) * d(N), d(G) * d(M) * d(N));
}
TensorOp bias_grad(Buffer dd, Buffer db, I G, I M, I N, bool accumulate) {
  return make(core::TensorOpKind::bias_grad, {dd}, {db}, {G, M, N}, d(G) * d(M) * d(N), d(G) * d(N),
              d(G) * d(M) * d(N), {accumulate ? 1.0 : 0.0});
}
TensorOp gelu(Buffer x, Buffer y, I n) { return make(core::TensorOpKind::gelu, {x}, {y}, {n}, d(n), d(n), 12 * d(n)); }
TensorOp gelu_bwd(Buffer x, Buffer dy, Buffer dx, I n) {
  return make(core::TensorOpKind::gelu_bwd, {x, dy}, {dx}, {n}, 2 * d(n), d(n), 20 * d(n));
}
TensorOp swiglu(Buffer x, Buffer y, I R, I f) {
  return make(core::TensorOpKind::swiglu, {x}, {y}, {R, f}, 2 * d(R) * d(f), d(R) * d(f), 14 * d(R) * d(f));
}
TensorOp swiglu_bwd(Buffer x, Buffer dy, Buffer dx, I R, I f) {
  return make(core::TensorOpKind::swiglu_bwd, {x, dy}, {dx}, {R, f}, 3 * d(R) * d(f), 2 * d(R) * d(f),
              20 * d(R) * d(f));
}
TensorOp rope(Buffer x, I T, I heads, I D, I S, I first, bool inverse, double base, I stride, I offset) {
  const double n = d(T) * d(heads) * d(D);
  return make(core::TensorOpKind::rope, {}, {x}, {T, heads, D, S, first, inverse ? 1 : 0, stride > 0 ? stride : D, offset},
              n, n, 6 * n, {base});
}
TensorOp mla_keys(Buffer nope, Buffer rope, Buffer k, I T, I H, I dn, I dr) {
  return make(core::TensorOpKind::mla_keys, {nope, rope}, {k}, {T, H, dn, dr}, d(T) * (d(H) * d(dn) + d(dr)),
              d(T) * d(H) * d(dn + dr), 0);
}
TensorOp mla_keys_bwd(Buffer dk, Buffer d_nope, Buffer d_rope, I T, I H, I dn, I dr) {
  return make(core::TensorOpKind::mla_keys_bwd, {dk}, {d_nope, d_rope}, {T, H, dn, dr}, d(T) * d(H) * d(dn + dr),
              d(T) * (d(H) * d(dn) + d(dr)), d(T) * d(H) * d(dr));
}
TensorOp add(Buffer a, Buffer b, Buffer c, I n) {
  return make(core::TensorOpKind::add, {a, b}, {c}, {n}, 2 * d(n), d(n), d(n));
}
TensorOp scale(Buffer x, I n, double s) { return make(core::TensorOpKind::scale, {}, {x}, {n}, d(n), d(n), d(n), {s}); }
TensorOp fill(Buffer x, I n, double v) { return make(core::TensorOpKind::fill, {}, {x}, {n}, 0, d(n), 0, {v}); }
TensorOp layernorm(Buffer x, Buffer gamma, Buffer beta, Buffer y, Buffer mean, Buffer rstd, I T, I H) {
  return make(core::TensorOpKind::layernorm, {x, gamma, beta}, {y, mean, rstd}, {T, H}, d(T) * d(H) + 2 * d(H),
              d(T) * d(H) + 2 * d(T), 8 * d(T) * d(H), {1e-5});
}
TensorOp layernorm_bwd(Buffer x, Buffer gamma, Buffer mean, Buffer rstd, Buffer dy, Buffer dx, Buffer d_gamma,
                       Buffer d_beta, I T, I H) {
  return make(core::TensorOpKind::layernorm_bwd, {x, gamma, mean, rstd, dy}, {dx, d_gamma, d_beta}, {T, H},
              2 * d(T) * d(H) + 2 * d(T) + 3 * d(H), d(T) * d(H) + 2 * d(H), 12 * d(T) * d(H));
}
TensorOp rmsnorm(Buffer x, Buffer gamma, Buffer y, Buffer mean, Buffer rstd, I T, I H) {
  return make(core::TensorOpKind::layernorm, {x, gamma, gamma}, {y, mean, rstd}, {T, H}, d(T) * d(H) + d(H),
              d(T) * d(H) + 2 * d(T), 5 * d(T) * d(H), {1e-5, 1});
}
TensorOp rmsnorm_bwd(Buffer x, Buffer gamma, Buffer mean, Buffer rstd, Buffer dy, Buffer dx, Buffer d_gamma, I T, I H) {
  return make(core::TensorOpKind::layernorm_bwd, {x, gamma, mean, rstd, dy}, {dx, d_gamma, d_gamma}, {T, H},
              2 * d(T) * d(H) + d(T) + 2 * d(H), d(T) * d(H) + d(H), 9 * d(T) * d(H), {1});
}
TensorOp embedding(Buffer ids, Buffer table, Buffer pos, Buffer x, I T, I H, I V, I S) {
  return make(core::TensorOpKind::embedding, {ids, table, pos}, {x}, {T, H, V, S, 1}, d(T) * (2 * d(H) + 1),
              d(T) * d(H), d(T) * d(H));
}
TensorOp embedding_no_positions(Buffer ids, Buffer table, Buffer x, I T, I H, I V) {
  return make(core::TensorOpKind::embedding, {ids, table, table}, {x}, {T, H, V, 1, 0}, d(T) * (d(H) + 1),
              d(T) * d(H), 0);
}
TensorOp embedding_bwd(Buffer ids, Buffer dx, Buffer d_table, Buffer d_pos, I T, I H, I V, I S) {
  return make(core::TensorOpKind::embedding_bwd, {ids, dx}, {d_table, d_pos}, {T, H, V, S, 1}, d(T) * (3 * d(H) + 1),
              2 * d(T) * d(H), 2 * d(T) * d(H));
}
TensorOp embedding_bwd_no_positions(Buffer ids, Buffer dx, Buffer d_table, I T, I H, I V) {
  return make(core::TensorOpKind::embedding_bwd, {ids, dx}, {d_table, d_table}, {T, H, V, 1, 0},
              d(T) * (2 * d(H) + 1), d(T) * d(H), d(T) * d(H));
}
TensorOp softmax_xent(Buffer logits, Buffer targets, Buffer d_logits, Buffer loss, I T, I V, double grad_scale) {
  return make(core::TensorOpKind::softmax_xent, {logits, targets}, {d_logits, loss}, {T, V}, d(T) * d(V) + d(T),
              d(T) * d(V) + 1, 6 * d(T) * d(V), {grad_scale});
}
TensorOp adamw(Buffer grad, Buffer param, Buffer m, Buffer v, I n, double lr, double beta1, double beta2, double eps,
               double weight_decay, I step) {
  return make(core::TensorOpKind::adamw, {grad}, {param, m, v}, {n}, 4 * d(n), 3 * d(n), 12 * d(n),
              {lr, beta1, beta2, eps, weight_decay, static_cast<double>(step)});
}

TensorOp gather_rows(Buffer x, Buffer idx, Buffer y, I R, I n, I Rx) {
  return make(core::TensorOpKind::gather_rows, {x, idx}, {y}, {R, n, Rx}, d(R) * (d(n) + 1), d(R) * d(n), 0);
}
TensorOp scatter_add_rows(Buffer x, Buffer idx, Buffer y, I R, I n, I Ry) {
  return make(core::TensorOpKind::scatter_add_rows, {x, idx}, {y}, {R, n, Ry}, d(R) * (2 * d(n) + 1), d(R) * d(n),
              d(R) * d(n));
}
TensorOp remap_index(Buffer idx, Buffer table, Buffer out, I n, I table_size) {
  return make(core::TensorOpKind::remap_index, {idx, table}, {out}, {n, table_size}, 2 * d(n), d(n), 0);
}

TensorOp argmax(Buffer x, Buffer ids, I T, I V) {
  return make(core::TensorOpKind::argmax, {x}, {ids}, {T, V}, d(T) * d(V), d(T), d(T) * d(V));
}

TensorOp with_dtype(TensorOp op, core::Dtype dtype) {
  const double ratio = core::dtype_bytes(dtype) / 4.0;
  op.dtype = dtype;
  op.bytes_read = static_cast<std::uint64_t>(static_cast<double>(op.bytes_read) * ratio);
  op.bytes_written = static_cast<std::uint64_t>(static_cast<double>(op.bytes_written) * ratio);
  return op;
}

core::AttentionOp attention(I batch, I seq, I heads, I head_dim, Buffer q, Buffer k, Buffer v, Buffer o) {
  core::AttentionOp a;
  a.batch = batch, a.heads = heads, a.seq_q = seq, a.seq_kv = seq, a.head_dim = head_dim;
  a.causal = true, a.dtype = core::Dtype::fp32;
  a.q = q, a.k = k, a.v = v, a.o = o;
  return a;
}
core::AttentionOp attention_cached(I batch, I seq_q, I seq_kv, I heads, I head_dim, Buffer q, Buffer k_cache,
                                   Buffer v_cache, Buffer o) {
  core::AttentionOp a = attention(batch, seq_q, heads, head_dim, q, k_cache, v_cache, o);
  a.seq_kv = seq_kv;
  a.kv_position_major = true;
  return a;
}
core::AttentionOp attention_bwd(I batch, I seq, I heads, I head_dim, Buffer q, Buffer k, Buffer v, Buffer o,
                                Buffer d_o, Buffer d_q, Buffer d_k, Buffer d_v) {
  core::AttentionOp a = attention(batch, seq, heads, head_dim, q, k, v, o);
  a.backward = true;
  a.d_o = d_o, a.d_q = d_q, a.d_k = d_k, a.d_v = d_v;
  return a;
}

IndexOperands index_operands(core::TensorOpKind kind) {
  using K = core::TensorOpKind;
  switch (kind) {
    case K::gate_topk:
      return {{}, {1, 2, 4}};  // experts, slots, counts
    case K::gate_bwd:
    case K::dispatch:
    case K::dispatch_bwd:
    case K::combine:
    case K::softmax_xent:
    case K::gather_rows:
    case K::scatter_add_rows:
      return {{1}, {}};  // experts, slots, targets, idx
    case K::combine_bwd:
      return {{2}, {}};  // slots
    case K::embedding:
    case K::embedding_bwd:
      return {{0}, {}};  // ids
    case K::remap_index:
      return {{0, 1}, {0}};
    case K::argmax:
      return {{}, {0}};
    default:
      return {};
  }
}

IndexOperands non_negative_operands(core::TensorOpKind kind) {
  switch (kind) {
    case core::TensorOpKind::adamw:
      return {{}, {2}};  // v
    case core::TensorOpKind::layernorm_bwd:
      return {{3}, {}};  // rstd
    default:
      return {};
  }
}

}  // namespace moesys::model::ops
