#pragma once
// Builders for the kernels of the MoE model: each returns a core::Kernel with its operands, sizes and the bytes and
// FLOPs the simulator costs it by. This header is the contract of every core::TensorOpKind: the operand order, the
// meaning of dims and scalars. Real runtimes implement the kinds (exec/cpu/cpu_kernels.cpp, exec/cuda/device_kernels.cpp).
// Floating-point operands are fp32 unless a GEMM says otherwise; integer operands are int32.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::model::ops {

using core::Buffer;
using core::TensorOp;
using I = std::int64_t;

/// C[g] = op(A[g]) * op(B[g]) (+ C[g] when accumulate) for g < batch; row-major, matrices packed back to back.
core::GemmOp gemm(I m, I n, I k, Buffer a, Buffer b, Buffer c, bool trans_a = false, bool trans_b = false,
                  bool accumulate = false, I batch = 1, core::Dtype dtype = core::Dtype::fp32);

/// Gate: softmax of logits[T,E] into probs, top-k experts[T,k], and GShard capacity: every expert takes at most C
/// tokens of this micro-batch; all first choices claim slots (in token order) before any second choice.
/// slots[T,k] = e*C + position, or -1 when dropped. weights[T,k] are the chosen probabilities, renormalised over
/// the k choices when k > 1. counts[E] = tokens routed to each expert before capacity (the routing trace).
/// in {logits}  out {probs, experts, slots, weights, counts}  dims {T, E, k, C}
TensorOp gate_topk(Buffer logits, Buffer probs, Buffer experts, Buffer slots, Buffer weights, Buffer counts, I T,
                   I E, I k, I C);
/// How a router scores and restricts experts (today's gates). Sigmoid: probs[t,e] = sigmoid(logits) and the top-k
/// is chosen by probs + bias[e] (a balancing bias that only selects; weights are the chosen probs, renormalised).
/// Groups: the experts are G equal groups; a token's experts come from the `max_groups` groups with the largest
/// sum of their two best selection scores (DeepSeek-V3's node-limited routing; 0 = every group).
struct GateRule {
  bool sigmoid = false;
  Buffer bias;  // [E] with sigmoid
  I groups = 1, max_groups = 0;
};
/// gate_topk with a rule: in {logits, bias (sigmoid)}  dims {T, E, k, C, sigmoid ? 1 : 0, G, max_groups}
TensorOp gate_topk(Buffer logits, Buffer probs, Buffer experts, Buffer slots, Buffer weights, Buffer counts, I T,
                   I E, I k, I C, const GateRule& rule);
/// d_logits from d_weights.  in {probs, experts, weights, d_weights}  out {d_logits}  dims {T, E, k, sigmoid ? 1 : 0}
TensorOp gate_bwd(Buffer probs, Buffer experts, Buffer weights, Buffer d_weights, Buffer d_logits, I T, I E, I k,
                  bool sigmoid = false);
/// send[S,H] = 0; send[slots[t,j]] = x[t].  in {x, slots}  out {send}  dims {T, H, k, S}
TensorOp dispatch(Buffer x, Buffer slots, Buffer send, I T, I H, I k, I S);
/// d_x[t] = sum_j d_send[slots[t,j]].  in {d_send, slots}  out {d_x}  dims {T, H, k, S}
TensorOp dispatch_bwd(Buffer d_send, Buffer slots, Buffer d_x, I T, I H, I k, I S);
/// out[t] = sum_j weights[t,j] * y[slots[t,j]] (dropped choices add nothing).  in {y, slots, weights}  out {out}
TensorOp combine(Buffer y, Buffer slots, Buffer weights, Buffer out, I T, I H, I k, I S);
/// d_y[slot] = w * d_out[t] (0 for unused slots); d_weights[t,j] = <d_out[t], y[slot]>.
/// in {d_out, y, slots, weights}  out {d_y, d_weights}  dims {T, H, k, S}
TensorOp combine_bwd(Buffer d_out, Buffer y, Buffer slots, Buffer weights, Buffer d_y, Buffer d_weights, I T, I H,
                     I k, I S);
/// y[b][a][:] = x[a][b][:] for blocks of n floats.  in {x}  out {y}  dims {A, B, n}
TensorOp block_transpose(Buffer x, Buffer y, I A, I B, I n);
/// x[g][m][:] += bias[g][:] in place.  in {bias}  out {x}  dims {G, M, N}
TensorOp add_bias(Buffer x, Buffer bias, I G, I M, I N);
/// db[g][:] (+)= sum_m d[g][m][:].  in {d}  out {db}  dims {G, M, N}  scalars {accumulate ? 1 : 0}
TensorOp bias_grad(Buffer d, Buffer db, I G, I M, I N, bool accumulate = false);
/// y = gelu(x) (tanh form); y may alias x.  in {x}  out {y}  dims {n}
TensorOp gelu(Buffer x, Buffer y, I n);
/// dx = gelu'(x) * dy.  in {x, dy}  out {dx}  dims {n}
TensorOp gelu_bwd(Buffer x, Buffer dy, Buffer dx, I n);
/// SwiGLU of rows whose first half is the gate g and second half the up projection u: y[r][i] = silu(g[r][i]) *
/// u[r][i], silu(g) = g * sigmoid(g).  in {x [R][2f]}  out {y [R][f]}  dims {R, f}
TensorOp swiglu(Buffer x, Buffer y, I R, I f);
/// dx[r] = [dy * u * silu'(g), dy * silu(g)].  in {x [R][2f], dy [R][f]}  out {dx [R][2f]}  dims {R, f}
TensorOp swiglu_bwd(Buffer x, Buffer dy, Buffer dx, I R, I f);
/// Rotary positions in place on rows of `heads` heads of D elements (D even): the pair (2i, 2i+1) of a head of
/// token t turns by p * base^(-2i/D), p = first + t mod S; `inverse` turns back (the backward of the rotation).
/// With a head stride > D, only the D elements from `offset` of each head turn (MLA's rotary part of a query head).
/// out {x}  dims {T, heads, D, S, first, inverse ? 1 : 0, stride, offset}  scalars {base}
TensorOp rope(Buffer x, I T, I heads, I D, I S, I first, bool inverse, double base = 10000.0, I stride = 0,
              I offset = 0);
/// MLA keys: k[t][h] = [nope[t][h] (dn), rope[t] (dr)], the rotary part shared by every head.
/// in {nope [T][H dn], rope [T][dr]}  out {k [T][H (dn + dr)]}  dims {T, H, dn, dr}
TensorOp mla_keys(Buffer nope, Buffer rope, Buffer k, I T, I H, I dn, I dr);
/// d_nope[t][h] = dk[t][h][:dn]; d_rope[t] = sum over heads of dk[t][h][dn:].  in {dk}  out {d_nope, d_rope}
TensorOp mla_keys_bwd(Buffer dk, Buffer d_nope, Buffer d_rope, I T, I H, I dn, I dr);
/// c = a + b elementwise; c may alias a or b.  in {a, b}  out {c}  dims {n}
TensorOp add(Buffer a, Buffer b, Buffer c, I n);
/// x *= s.  out {x}  dims {n}  scalars {s}
TensorOp scale(Buffer x, I n, double s);
/// x = v (floats).  out {x}  dims {n}  scalars {v}
TensorOp fill(Buffer x, I n, double v = 0);
/// y = (x - mean) * rstd * gamma + beta per row.  in {x, gamma, beta}  out {y, mean, rstd}  dims {T, H}  scalars {eps}
TensorOp layernorm(Buffer x, Buffer gamma, Buffer beta, Buffer y, Buffer mean, Buffer rstd, I T, I H);
/// in {x, gamma, mean, rstd, dy}  out {dx, d_gamma, d_beta} (parameter gradients accumulate)  dims {T, H}
TensorOp layernorm_bwd(Buffer x, Buffer gamma, Buffer mean, Buffer rstd, Buffer dy, Buffer dx, Buffer d_gamma,
                       Buffer d_beta, I T, I H);
/// RMSNorm: y = x * rstd * gamma per row, rstd = 1 / sqrt(mean(x^2) + eps); mean is written as 0. The layernorm
/// kind with scalars {eps, 1}; beta (in[2]) is gamma again and not read.
TensorOp rmsnorm(Buffer x, Buffer gamma, Buffer y, Buffer mean, Buffer rstd, I T, I H);
/// The layernorm_bwd kind with scalars {1}: out {dx, d_gamma, d_gamma} (the third is not written).
TensorOp rmsnorm_bwd(Buffer x, Buffer gamma, Buffer mean, Buffer rstd, Buffer dy, Buffer dx, Buffer d_gamma, I T, I H);
/// x[t] = table[ids[t]] + pos[t mod S].  in {ids, table, pos}  out {x}  dims {T, H, V, S, 1}
/// Without a position table (rotary positions): dims[4] = 0, x[t] = table[ids[t]] and pos (the table again) unread.
TensorOp embedding(Buffer ids, Buffer table, Buffer pos, Buffer x, I T, I H, I V, I S);
TensorOp embedding_no_positions(Buffer ids, Buffer table, Buffer x, I T, I H, I V);
/// d_table[ids[t]] += dx[t]; d_pos[t mod S] += dx[t] (both accumulate).  in {ids, dx}  out {d_table, d_pos}
/// dims {T, H, V, S, 1}; with dims[4] = 0 only d_table (d_pos is d_table again and not written).
TensorOp embedding_bwd(Buffer ids, Buffer dx, Buffer d_table, Buffer d_pos, I T, I H, I V, I S);
TensorOp embedding_bwd_no_positions(Buffer ids, Buffer dx, Buffer d_table, I T, I H, I V);
/// loss[0] = sum_t -log softmax(logits[t])[targets[t]]; d_logits = grad_scale * (softmax - onehot).
/// in {logits, targets}  out {d_logits, loss}  dims {T, V}  scalars {grad_scale}
TensorOp softmax_xent(Buffer logits, Buffer targets, Buffer d_logits, Buffer loss, I T, I V, double grad_scale);
/// AdamW with bias correction, decoupled weight decay.  in {grad}  out {param, m, v}  dims {n}
/// scalars {lr, beta1, beta2, eps, weight_decay, step (1-based)}
TensorOp adamw(Buffer grad, Buffer param, Buffer m, Buffer v, I n, double lr, double beta1, double beta2, double eps,
               double weight_decay, I step);

/// y[i] = x[idx[i]] for rows of n floats; rows with idx[i] < 0 become 0 (regrouping rows between the
/// peer-major order of an all-to-all and the expert-major order of the expert GEMMs).
/// in {x, idx}  out {y}  dims {R (rows of y), n, Rx (rows of x)}
TensorOp gather_rows(Buffer x, Buffer idx, Buffer y, I R, I n, I Rx);
/// y[idx[i]] += x[i] for rows of n floats, rows in order (deterministic sums); rows with idx[i] < 0 add nothing.
/// The backward of gather_rows: the column-partitioned embedding accumulates its shard's gradient with it.
/// in {x, idx}  out {y}  dims {R (rows of x), n, Ry (rows of y)}
TensorOp scatter_add_rows(Buffer x, Buffer idx, Buffer y, I R, I n, I Ry);
/// out[i] = idx[i] < 0 ? -1 : table[idx[i]] (int32): rewrites the gate's capacity slots into the rows of a
/// compact or chunk-major send buffer.  in {idx, table}  out {out}  dims {n, table size}
TensorOp remap_index(Buffer idx, Buffer table, Buffer out, I n, I table_size);

/// ids[t] = the column of the largest x[t][:] (the lowest on ties): greedy sampling of the next token from logits.
/// in {x}  out {ids}  dims {T, V}
TensorOp argmax(Buffer x, Buffer ids, I T, I V);

/// Which operands of a kind hold int32 indices (token ids, expert choices, slots, row maps), by the `in` / `out`
/// lists above: positions in op.in and in op.out. Everything else is floating point.
struct IndexOperands {
  std::vector<std::size_t> in, out;
};
IndexOperands index_operands(core::TensorOpKind kind);
/// Which floating-point operands a kind reads as non-negative (AdamW's second moment, a normalisation's 1/std):
/// positions in op.in and in op.out, as index_operands.
IndexOperands non_negative_operands(core::TensorOpKind kind);

/// The same op with floating-point operands of `dtype`: the simulator costs its float traffic at that width
/// (the builders count 4-byte elements); real runtimes check that they support the dtype.
TensorOp with_dtype(TensorOp op, core::Dtype dtype);

/// Scaled dot-product attention over q, k, v [B*S, heads*head_dim] (forward: o; backward: d_q, d_k, d_v from d_o).
core::AttentionOp attention(I batch, I seq, I heads, I head_dim, Buffer q, Buffer k, Buffer v, Buffer o);
/// Attention of the last seq_q positions of each sequence (q, o [B*seq_q, heads*head_dim]) over the first seq_kv
/// positions of a position-major KV cache (k_cache, v_cache [max context][B][heads*head_dim], see AttentionOp),
/// causal with the offset seq_kv - seq_q: the prefill (seq_q = seq_kv = prompt) and every decode step (seq_q = 1).
core::AttentionOp attention_cached(I batch, I seq_q, I seq_kv, I heads, I head_dim, Buffer q, Buffer k_cache,
                                   Buffer v_cache, Buffer o);
core::AttentionOp attention_bwd(I batch, I seq, I heads, I head_dim, Buffer q, Buffer k, Buffer v, Buffer o,
                                Buffer d_o, Buffer d_q, Buffer d_k, Buffer d_v);

}  // namespace moesys::model::ops
