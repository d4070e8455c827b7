#pragma once
// Launchers of the CUDA kernels behind core::TensorOp (model/ops.hpp is the contract: operand order, dims,
// scalars). Plain C++ declarations so that host code compiled by g++ can call them; the kernels live in
// kernels_moe.cu (gating, dispatch / combine) and kernels_dense.cu (elementwise, normalisation, loss, optimizer,
// attention softmax). Each mirrors exec/cpu/cpu_kernels.cpp operation by operation; kernels are compiled without
// FMA contraction so that where the order of the arithmetic is the same the results are bitwise equal to the
// CPU runtime's, and differ by rounding only where a reduction runs as a tree instead of a loop.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moesys::exec::cuda::kernels {

using I = std::int64_t;

/// Bits a kernel sets in the runtime's device status word on bad input (the host checks it when it waits).
enum StatusBit : int { kBadTokenId = 1, kBadTarget = 2 };

inline constexpr int kMaxGateExperts = 256;  // shared memory of the capacity kernel: 132 bytes per expert
inline constexpr int kMaxTopK = 8;

/// Softmax or sigmoid (with the selection bias) gate, G groups of which at most M serve a token (M = 0: all).
void gate_topk(const float* logits, const float* bias, float* probs, int* experts, int* slots, float* weights,
               int* counts, I T, I E, I K, I C, bool sigmoid, I G, I M, cudaStream_t s);
void gate_bwd(const float* probs, const int* experts, const float* weights, const float* d_weights, float* d_logits,
              I T, I E, I K, bool sigmoid, cudaStream_t s);
/// `inverse` is scratch of S ints (slot -> choice).
void dispatch(const float* x, const int* slots, float* send, I T, I H, I K, I S, int* inverse, cudaStream_t s);
void dispatch_bwd(const float* d_send, const int* slots, float* d_x, I T, I H, I K, cudaStream_t s);
void combine(const float* y, const int* slots, const float* weights, float* out, I T, I H, I K, cudaStream_t s);
void combine_bwd(const float* d_out, const float* y, const int* slots, const float* weights, float* d_y,
                 float* d_weights, I T, I H, I K, I S, int* inverse, cudaStream_t s);

void block_transpose(const float* x, float* y, I A, I B, I n, cudaStream_t s);
/// y[i] = idx[i] < 0 ? 0 : x[idx[i]] for rows of n floats.
void gather_rows(const float* x, const int* idx, float* y, I R, I n, cudaStream_t s);
void scatter_add_rows(const float* x, const int* idx, float* y, I R, I n, I Ry, cudaStream_t s);
/// out[i] = idx[i] < 0 ? -1 : table[idx[i]].
void remap_index(const int* idx, const int* table, int* out, I n, cudaStream_t s);
/// ids[t] = the column of the largest x[t][:], the lowest on ties (as std::max_element on the CPU).
void argmax(const float* x, int* ids, I T, I V, cudaStream_t s);
void add_bias(float* x, const float* bias, I G, I M, I N, cudaStream_t s);
void bias_grad(const float* d, float* db, I G, I M, I N, bool accumulate, cudaStream_t s);
void gelu(const float* x, float* y, I n, cudaStream_t s);
void gelu_bwd(const float* x, const float* dy, float* dx, I n, cudaStream_t s);
/// x rows [gate | up] of 2f floats, y rows of f (model/ops.hpp swiglu).
void swiglu(const float* x, float* y, I R, I f, cudaStream_t s);
void swiglu_bwd(const float* x, const float* dy, float* dx, I R, I f, cudaStream_t s);
void rope(float* x, I T, I heads, I D, I S, I first, bool inverse, double base, I stride, I offset, cudaStream_t s);
/// MLA keys (model/ops.hpp mla_keys); the backward sums the rotary part over heads in head order.
void mla_keys(const float* nope, const float* rope, float* k, I T, I H, I dn, I dr, cudaStream_t s);
void mla_keys_bwd(const float* dk, float* d_nope, float* d_rope, I T, I H, I dn, I dr, cudaStream_t s);
void add(const float* a, const float* b, float* c, I n, cudaStream_t s);
void scale(float* x, I n, float v, cudaStream_t s);
void fill(float* x, I n, float v, cudaStream_t s);
/// RMSNorm when beta (forward) or d_beta (backward) is null; embedding without positions when pos / d_pos is null.
void layernorm(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd, I T, I H,
               double eps, cudaStream_t s);
void layernorm_bwd(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy, float* dx,
                   float* d_gamma, float* d_beta, I T, I H, cudaStream_t s);
void embedding(const int* ids, const float* table, const float* pos, float* x, I T, I H, I V, I S, int* status,
               cudaStream_t s);
void embedding_bwd(const int* ids, const float* dx, float* d_table, float* d_pos, I T, I H, I V, I S, cudaStream_t s);
/// `row_loss` is scratch of T doubles.
void softmax_xent(const float* logits, const int* targets, float* d_logits, float* loss, I T, I V, float grad_scale,
                  double* row_loss, int* status, cudaStream_t s);
/// c1, c2: the bias corrections 1 - beta^step, computed on the host in double like the CPU runtime.
void adamw(const float* grad, float* param, float* m, float* v, I n, float lr, float beta1, float beta2, float eps,
           float weight_decay, float c1, float c2, cudaStream_t s);

/// Attention helpers over `mats` row-major [S, S] score matrices: softmax per row (causal: row i keeps j <= i,
/// the rest become 0), and its backward in place: dp = p * (dp - rowsum(dp * p)).
/// Row softmax of `mats` score matrices [Sq][Skv]; causal: row i keeps its first Skv - Sq + i + 1 entries.
void attention_softmax(float* scores, I mats, I Sq, I Skv, bool causal, cudaStream_t s);
void attention_softmax_bwd(const float* p, float* dp, I mats, I S, cudaStream_t s);

}  // namespace moesys::exec::cuda::kernels
