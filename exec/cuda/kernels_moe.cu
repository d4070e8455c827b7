// MoE data kernels: gate (softmax, top-k, GShard capacity), dispatch and combine permutations, their backward.
// Semantics are those of exec/cpu/cpu_kernels.cpp (see model/ops.hpp); comments say where the GPU order of
// arithmetic differs from the CPU loop.
#include <cfloat>

#include "exec/cuda/kernels.cuh"
#include "exec/cuda/launch.cuh"

namespace moesys::exec::cuda::kernels {

namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// One warp per token: softmax over experts (tree sums, so probabilities differ from the CPU's by rounding), or
// per-expert sigmoids, then top-k by repeated arg-max of the selection score (the probability, plus the balancing
// bias with the sigmoid gate) with ties to the lower expert id, exactly like the CPU loop. Group-limited routing:
// lane 0 picks the allowed groups (at most 32) from the probabilities the warp wrote, in the CPU's order.
__global__ void gate_topk_kernel(const float* __restrict__ logits, const float* __restrict__ bias,
                                 float* __restrict__ probs, int* __restrict__ experts, float* __restrict__ weights, I T,
                                 int E, int K, bool sigmoid, int G, int M) {
  const I t = (I(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (t >= T) return;  // whole warps leave together: T is a per-warp index
  const float* l = logits + t * E;
  float* p = probs + t * E;
  if (sigmoid) {
    for (int e = lane; e < E; e += 32) p[e] = 1.f / (1.f + expf(-l[e]));
  } else {
    float mx = -FLT_MAX;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, l[e]);
    mx = warp_max(mx);
    float sum = 0;
    for (int e = lane; e < E; e += 32) {
      const float v = expf(l[e] - mx);
      p[e] = v;
      sum += v;
    }
    sum = warp_sum(sum);
    for (int e = lane; e < E; e += 32) p[e] = p[e] / sum;  // each lane rereads only what it wrote
  }
  __syncwarp();
  auto score = [&](int e) { return bias ? p[e] + bias[e] : p[e]; };
  unsigned allowed = kFull;  // bit g: group g may serve this token
  if (M > 0 && M < G) {
    if (lane == 0) {
      const int per = E / G;
      float group_score[32];
      for (int g = 0; g < G; ++g) {
        float first = -FLT_MAX, second = -FLT_MAX;
        for (int e = g * per; e < (g + 1) * per; ++e) {
          const float v = score(e);
          if (v > first) second = first, first = v;
          else if (v > second) second = v;
        }
        group_score[g] = per > 1 ? first + second : first;
      }
      allowed = 0;
      for (int m = 0; m < M; ++m) {
        int best = -1;
        for (int g = 0; g < G; ++g)
          if (!(allowed >> g & 1u) && (best < 0 || group_score[g] > group_score[best])) best = g;
        allowed |= 1u << best;
      }
    }
    allowed = __shfl_sync(kFull, allowed, 0);
  }
  const int per_group = E / G;
  int chosen[kMaxTopK];
  float chosen_sum = 0, chosen_p[kMaxTopK];
  for (int j = 0; j < K; ++j) {
    float best = -FLT_MAX;
    int best_e = E;
    for (int e = lane; e < E; e += 32) {
      bool taken = !(allowed >> (e / per_group) & 1u);
      for (int i = 0; i < j; ++i) taken |= chosen[i] == e;
      if (!taken && score(e) > best) best = score(e), best_e = e;  // ascending e per lane: ties keep the lower id
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(kFull, best, o);
      const int oe = __shfl_xor_sync(kFull, best_e, o);
      if (ob > best || (ob == best && oe < best_e)) best = ob, best_e = oe;
    }
    chosen[j] = best_e, chosen_p[j] = best_e < E ? p[best_e] : 0.f;
    chosen_sum += chosen_p[j];  // in choice order, as on the CPU
  }
  if (lane != 0) return;
  for (int j = 0; j < K; ++j) {
    experts[t * K + j] = chosen[j];
    weights[t * K + j] = K > 1 ? chosen_p[j] / chosen_sum : chosen_p[j];
  }
}

// Capacity in the CPU's order: choice q = j * T + t (all first choices before any second choice) takes the next
// free position of its expert. One block walks the choices in chunks of blockDim; inside a chunk a choice's
// position is the expert's fill so far + same-expert choices in earlier warps + same-expert lanes before it
// (__match_any_sync), so the result equals the sequential loop.
__global__ void gate_capacity_kernel(const int* __restrict__ experts, int* __restrict__ slots, int* __restrict__ counts,
                                     I T, int E, int K, I C) {
  extern __shared__ int sm[];
  int* fill = sm;          // [E]
  int* per_warp = sm + E;  // [32][E]
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32, warps = int(blockDim.x) / 32;
  for (int i = tid; i < E; i += int(blockDim.x)) fill[i] = 0;
  const I total = T * K;
  for (I base = 0; base < total; base += blockDim.x) {
    for (int i = tid; i < warps * E; i += int(blockDim.x)) per_warp[i] = 0;
    __syncthreads();
    const I q = base + tid;
    const bool valid = q < total;
    const I at = valid ? (q % T) * K + q / T : 0;
    const int e = valid ? experts[at] : -1;
    const unsigned peers = __match_any_sync(kFull, e);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    if (valid && rank == 0) per_warp[warp * E + e] = __popc(peers);
    __syncthreads();
    if (valid) {
      I pos = fill[e] + rank;
      for (int w = 0; w < warp; ++w) pos += per_warp[w * E + e];
      slots[at] = pos < C ? int(e * C + pos) : -1;
    }
    __syncthreads();
    for (int i = tid; i < E; i += int(blockDim.x))
      for (int w = 0; w < warps; ++w) fill[i] += per_warp[w * E + i];
    __syncthreads();
  }
  for (int i = tid; i < E; i += int(blockDim.x)) counts[i] = fill[i];  // routed before capacity
}

// One warp per token. w_j = p_j / S over the chosen p: dp_j = (dw_j - sum_i dw_i w_i) / S; then the softmax
// backward d_logits = p * (dp - <p, dp>).
__global__ void gate_bwd_kernel(const float* __restrict__ probs, const int* __restrict__ experts,
                                const float* __restrict__ w, const float* __restrict__ dw, float* __restrict__ dl, I T,
                                int E, int K, bool sigmoid) {
  const I t = (I(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (t >= T) return;
  const float* p = probs + t * E;
  float s = 0, dot = 0;
  for (int j = 0; j < K; ++j) s += p[experts[t * K + j]], dot += dw[t * K + j] * w[t * K + j];
  auto dp_of = [&](int e) {
    float v = 0;
    for (int j = 0; j < K; ++j)
      if (experts[t * K + j] == e) v = K == 1 ? dw[t] : (dw[t * K + j] - dot) / s;
    return v;
  };
  if (sigmoid) {  // each score is its own sigmoid
    for (int e = lane; e < E; e += 32) dl[t * E + e] = dp_of(e) * p[e] * (1.f - p[e]);
    return;
  }
  float pd = 0;
  for (int e = lane; e < E; e += 32) pd += p[e] * dp_of(e);
  pd = warp_sum(pd);
  for (int e = lane; e < E; e += 32) dl[t * E + e] = p[e] * (dp_of(e) - pd);
}

__global__ void invert_slots_kernel(const int* __restrict__ slots, int* __restrict__ inverse, I n) {
  for (I i = grid_index(); i < n; i += grid_stride())
    if (slots[i] >= 0) inverse[slots[i]] = int(i);
}

// Gathers instead of scattering, so that unused slots are written (zero) in the same pass.
__global__ void dispatch_kernel(const float* __restrict__ x, const int* __restrict__ inverse, float* __restrict__ send,
                                I H, I K, I n) {
  for (I i = grid_index(); i < n; i += grid_stride()) {
    const int c = inverse[i / H];
    send[i] = c >= 0 ? x[(c / K) * H + i % H] : 0.f;
  }
}

__global__ void dispatch_bwd_kernel(const float* __restrict__ ds, const int* __restrict__ slots, float* __restrict__ dx,
                                    I H, I K, I n) {
  for (I i = grid_index(); i < n; i += grid_stride()) {
    const I t = i / H, h = i % H;
    float acc = 0;
    for (I j = 0; j < K; ++j) {
      const int s = slots[t * K + j];
      if (s >= 0) acc += ds[I(s) * H + h];  // choice order, as on the CPU
    }
    dx[i] = acc;
  }
}

__global__ void combine_kernel(const float* __restrict__ y, const int* __restrict__ slots, const float* __restrict__ w,
                               float* __restrict__ out, I H, I K, I n) {
  for (I i = grid_index(); i < n; i += grid_stride()) {
    const I t = i / H, h = i % H;
    float acc = 0;
    for (I j = 0; j < K; ++j) {
      const int s = slots[t * K + j];
      if (s >= 0) acc += w[t * K + j] * y[I(s) * H + h];
    }
    out[i] = acc;
  }
}

__global__ void combine_bwd_dy_kernel(const float* __restrict__ dout, const int* __restrict__ inverse,
                                      const float* __restrict__ w, float* __restrict__ dy, I H, I K, I n) {
  for (I i = grid_index(); i < n; i += grid_stride()) {
    const int c = inverse[i / H];
    dy[i] = c >= 0 ? w[c] * dout[(c / K) * H + i % H] : 0.f;
  }
}

// One warp per choice: d_weights = <d_out[t], y[slot]> (a tree sum; the CPU sums in order).
__global__ void combine_bwd_dw_kernel(const float* __restrict__ dout, const float* __restrict__ y,
                                      const int* __restrict__ slots, float* __restrict__ dw, I H, I K, I n) {
  const I i = (I(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (i >= n) return;
  const int s = slots[i];
  float dot = 0;
  if (s >= 0)
    for (I h = lane; h < H; h += 32) dot += dout[(i / K) * H + h] * y[I(s) * H + h];
  dot = warp_sum(dot);
  if (lane == 0) dw[i] = dot;
}

I warp_blocks(I warps) {
  return (warps * 32 + 255) / 256;
}

void invert(const int* slots, int* inverse, I T, I K, I S, cudaStream_t s) {
  check_launch(cudaMemsetAsync(inverse, 0xff, std::size_t(S) * sizeof(int), s), "slot inverse");  // -1
  invert_slots_kernel<<<blocks_for(T * K), kThreads, 0, s>>>(slots, inverse, T * K);
  check_launch(cudaGetLastError(), "slot inverse");
}

}  // namespace

void gate_topk(const float* logits, const float* bias, float* probs, int* experts, int* slots, float* weights,
               int* counts, I T, I E, I K, I C, bool sigmoid, I G, I M, cudaStream_t s) {
  require(E >= 1 && E <= kMaxGateExperts, "gate_topk: the CUDA runtime supports 1..256 experts");
  require(G >= 1 && G <= 32 && E % G == 0, "gate_topk: 1..32 groups that divide the experts");
  require(K >= 1 && K <= kMaxTopK && K <= E, "gate_topk: top-k must be in 1..8 and at most the experts");
  if (T == 0) {
    check_launch(cudaMemsetAsync(counts, 0, std::size_t(E) * sizeof(int), s), "gate_topk");
    return;
  }
  gate_topk_kernel<<<unsigned(warp_blocks(T)), kThreads, 0, s>>>(logits, bias, probs, experts, weights, T, int(E),
                                                                 int(K), sigmoid, int(G), int(M));
  check_launch(cudaGetLastError(), "gate_topk softmax");
  const std::size_t smem = std::size_t(E) * 33 * sizeof(int);
  gate_capacity_kernel<<<1, 1024, smem, s>>>(experts, slots, counts, T, int(E), int(K), C);
  check_launch(cudaGetLastError(), "gate_topk capacity");
}

void gate_bwd(const float* probs, const int* experts, const float* weights, const float* d_weights, float* d_logits,
              I T, I E, I K, bool sigmoid, cudaStream_t s) {
  if (T == 0) return;
  gate_bwd_kernel<<<unsigned(warp_blocks(T)), kThreads, 0, s>>>(probs, experts, weights, d_weights, d_logits, T, int(E),
                                                                int(K), sigmoid);
  check_launch(cudaGetLastError(), "gate_bwd");
}

void dispatch(const float* x, const int* slots, float* send, I T, I H, I K, I S, int* inverse, cudaStream_t s) {
  invert(slots, inverse, T, K, S, s);
  dispatch_kernel<<<blocks_for(S * H), kThreads, 0, s>>>(x, inverse, send, H, K, S * H);
  check_launch(cudaGetLastError(), "dispatch");
}

void dispatch_bwd(const float* d_send, const int* slots, float* d_x, I T, I H, I K, cudaStream_t s) {
  dispatch_bwd_kernel<<<blocks_for(T * H), kThreads, 0, s>>>(d_send, slots, d_x, H, K, T * H);
  check_launch(cudaGetLastError(), "dispatch_bwd");
}

void combine(const float* y, const int* slots, const float* weights, float* out, I T, I H, I K, cudaStream_t s) {
  combine_kernel<<<blocks_for(T * H), kThreads, 0, s>>>(y, slots, weights, out, H, K, T * H);
  check_launch(cudaGetLastError(), "combine");
}

void combine_bwd(const float* d_out, const float* y, const int* slots, const float* weights, float* d_y,
                 float* d_weights, I T, I H, I K, I S, int* inverse, cudaStream_t s) {
  invert(slots, inverse, T, K, S, s);
  combine_bwd_dy_kernel<<<blocks_for(S * H), kThreads, 0, s>>>(d_out, inverse, weights, d_y, H, K, S * H);
  check_launch(cudaGetLastError(), "combine_bwd d_y");
  if (T * K == 0) return;
  combine_bwd_dw_kernel<<<unsigned(warp_blocks(T * K)), kThreads, 0, s>>>(d_out, y, slots, d_weights, H, K, T * K);
  check_launch(cudaGetLastError(), "combine_bwd d_weights");
}

}  // namespace moesys::exec::cuda::kernels
