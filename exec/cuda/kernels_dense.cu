// Dense data kernels: permutation of blocks, bias, GeLU, elementwise arithmetic, layernorm, embedding, softmax
// cross-entropy, AdamW and the attention softmax. Each mirrors exec/cpu/cpu_kernels.cpp: the same formulas (GeLU
// through the same polynomial exp), double accumulation where the CPU accumulates in double, and sequential
// loops where a sum over rows must come out in the CPU's order (parameter gradients).
#include <cfloat>

#include "exec/cuda/kernels.cuh"
#include "exec/cuda/launch.cuh"

namespace moesys::exec::cuda::kernels {

namespace {

constexpr unsigned kFull = 0xffffffffu;

template <typename T>
__device__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Sum over the block; every thread gets the result. `sh` holds one value per warp.
__device__ double block_sum(double v, double* sh) {
  v = warp_sum(v);
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32), warps = int(blockDim.x / 32);
  __syncthreads();  // sh may still be read from a previous call
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < warps; ++w) total += sh[w];
  return total;
}

__device__ float block_max(float v, float* sh) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32), warps = int(blockDim.x / 32);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float m = -FLT_MAX;
  for (int w = 0; w < warps; ++w) m = fmaxf(m, sh[w]);
  return m;
}

// The CPU's exp: a degree-6 polynomial after range reduction (see exec/cpu/cpu_kernels.cpp), bit for bit.
__device__ float fast_exp(float x) {
  x = fminf(88.f, fmaxf(-87.f, x));
  const float k = (x * 1.44269504f + 12582912.f) - 12582912.f;
  const float r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f;
  const float p = 1.f + r * (1.f + r * (0.5f + r * (1.f / 6 + r * (1.f / 24 + r * (1.f / 120 + r * (1.f / 720))))));
  return p * __int_as_float((int(k) + 127) << 23);
}
__device__ float gelu_f(float x) {
  return x / (1.f + fast_exp(-1.5957691216f * (x + 0.044715f * x * x * x)));
}
__device__ float gelu_d(float x) {
  const float s = 1.f / (1.f + fast_exp(-1.5957691216f * (x + 0.044715f * x * x * x)));
  return s + 2.f * x * s * (1.f - s) * 0.7978845608f * (1.f + 3.f * 0.044715f * x * x);
}

__global__ void block_transpose_kernel(const float* __restrict__ x, float* __restrict__ y, I A, I B, I n) {
  for (I o = grid_index(); o < A * B * n; o += grid_stride()) {
    const I i = o % n, ba = o / n, a = ba % A, b = ba / A;  // y[b][a][i] = x[a][b][i]
    y[o] = x[(a * B + b) * n + i];
  }
}
__global__ void gather_rows_kernel(const float* __restrict__ x, const int* __restrict__ idx, float* __restrict__ y,
                                   I R, I n) {
  for (I o = grid_index(); o < R * n; o += grid_stride()) {
    const int src = idx[o / n];
    y[o] = src < 0 ? 0.f : x[I{src} * n + o % n];
  }
}
// One thread per column, rows in order: the same sums in the same order as the CPU runtime (no atomics).
__global__ void scatter_add_rows_kernel(const float* __restrict__ x, const int* __restrict__ idx, float* __restrict__ y,
                                        I R, I n, I Ry) {
  for (I j = grid_index(); j < n; j += grid_stride())
    for (I i = 0; i < R; ++i)
      if (idx[i] >= 0 && idx[i] < Ry) y[I(idx[i]) * n + j] += x[i * n + j];
}
__global__ void remap_index_kernel(const int* __restrict__ idx, const int* __restrict__ table, int* __restrict__ out,
                                   I n) {
  for (I i = grid_index(); i < n; i += grid_stride()) out[i] = idx[i] < 0 ? -1 : table[idx[i]];
}
// One warp per row: each lane keeps its first maximum, then the warp keeps the largest, the lower column on ties.
__global__ void argmax_kernel(const float* __restrict__ x, int* __restrict__ ids, I T, I V) {
  const I row = (I(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (row >= T) return;
  const float* r = x + row * V;
  float best = -FLT_MAX;
  I at = V;
  for (I j = lane; j < V; j += 32)
    if (at == V || r[j] > best) best = r[j], at = j;
  for (int o = 16; o > 0; o >>= 1) {
    const float b = __shfl_xor_sync(kFull, best, o);
    const I a = __shfl_xor_sync(kFull, at, o);
    if (b > best || (b == best && a < at)) best = b, at = a;
  }
  if (lane == 0) ids[row] = int(at);
}
__global__ void add_bias_kernel(float* __restrict__ x, const float* __restrict__ bias, I M, I N, I total) {
  for (I i = grid_index(); i < total; i += grid_stride()) x[i] += bias[(i / (M * N)) * N + i % N];
}
// One thread per (g, n), rows in order: the same sum as the CPU's.
__global__ void bias_grad_kernel(const float* __restrict__ d, float* __restrict__ db, I G, I M, I N, bool acc) {
  for (I i = grid_index(); i < G * N; i += grid_stride()) {
    const I g = i / N, n = i % N;
    float s = acc ? db[i] : 0.f;
    for (I m = 0; m < M; ++m) s += d[(g * M + m) * N + n];
    db[i] = s;
  }
}
__global__ void gelu_kernel(const float* x, float* y, I n) {  // y may alias x
  for (I i = grid_index(); i < n; i += grid_stride()) y[i] = gelu_f(x[i]);
}
__global__ void gelu_bwd_kernel(const float* x, const float* dy, float* dx, I n) {
  for (I i = grid_index(); i < n; i += grid_stride()) dx[i] = gelu_d(x[i]) * dy[i];
}
__device__ float sigmoid_f(float x) { return 1.f / (1.f + __expf(-x)); }
// SwiGLU rows [gate | up] of 2f floats into rows of f: silu(g) * u.
__global__ void swiglu_kernel(const float* __restrict__ x, float* __restrict__ y, I R, I f) {
  for (I i = grid_index(); i < R * f; i += grid_stride()) {
    const I r = i / f, c = i % f;
    const float g = x[r * 2 * f + c], u = x[r * 2 * f + f + c];
    y[i] = g * sigmoid_f(g) * u;
  }
}
__global__ void swiglu_bwd_kernel(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                                  I R, I f) {
  for (I i = grid_index(); i < R * f; i += grid_stride()) {
    const I r = i / f, c = i % f;
    const float g = x[r * 2 * f + c], u = x[r * 2 * f + f + c], s = sigmoid_f(g);
    dx[r * 2 * f + c] = dy[i] * u * (s + g * s * (1.f - s));
    dx[r * 2 * f + f + c] = dy[i] * g * s;
  }
}
// Rotary positions, one thread per (token, head, pair): angles in double, then float, as on the CPU.
__global__ void rope_kernel(float* x, I T, I Hh, I D, I S, I first, double sign, double base, I stride, I offset) {
  const I pairs = D / 2;
  for (I i = grid_index(); i < T * Hh * pairs; i += grid_stride()) {
    const I t = i / (Hh * pairs), h = (i / pairs) % Hh, j = i % pairs;
    const double angle = sign * double(first + t % S) * pow(base, -2.0 * double(j) / double(D));
    const float c = float(cos(angle)), sn = float(sin(angle));
    float* pair = x + (t * Hh + h) * stride + offset + 2 * j;
    const float a = pair[0], b = pair[1];
    pair[0] = a * c - b * sn, pair[1] = a * sn + b * c;
  }
}
__global__ void mla_keys_kernel(const float* __restrict__ nope, const float* __restrict__ rope, float* __restrict__ k,
                                I T, I H, I dn, I dr) {
  const I w = dn + dr;
  for (I i = grid_index(); i < T * H * w; i += grid_stride()) {
    const I t = i / (H * w), h = (i / w) % H, c = i % w;
    k[i] = c < dn ? nope[(t * H + h) * dn + c] : rope[t * dr + c - dn];
  }
}
__global__ void mla_keys_bwd_nope_kernel(const float* __restrict__ dk, float* __restrict__ d_nope, I T, I H, I dn,
                                         I dr) {
  for (I i = grid_index(); i < T * H * dn; i += grid_stride()) {
    const I th = i / dn, c = i % dn;
    d_nope[i] = dk[th * (dn + dr) + c];
  }
}
// One thread per (token, rotary column) sums the heads in order, as the CPU does.
__global__ void mla_keys_bwd_rope_kernel(const float* __restrict__ dk, float* __restrict__ d_rope, I T, I H, I dn,
                                         I dr) {
  for (I i = grid_index(); i < T * dr; i += grid_stride()) {
    const I t = i / dr, c = i % dr;
    float sum = 0.f;
    for (I h = 0; h < H; ++h) sum += dk[(t * H + h) * (dn + dr) + dn + c];
    d_rope[i] = sum;
  }
}
__global__ void add_kernel(const float* a, const float* b, float* c, I n) {
  for (I i = grid_index(); i < n; i += grid_stride()) c[i] = a[i] + b[i];
}
__global__ void scale_kernel(float* x, I n, float v) {
  for (I i = grid_index(); i < n; i += grid_stride()) x[i] *= v;
}
__global__ void fill_kernel(float* x, I n, float v) {
  for (I i = grid_index(); i < n; i += grid_stride()) x[i] = v;
}

// One block per row; mean and variance in double like the CPU (tree order instead of a loop).
__global__ void layernorm_kernel(const float* __restrict__ x, const float* __restrict__ g, const float* __restrict__ b,
                                 float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd, I T, I H,
                                 double eps) {
  __shared__ double sh[32];
  for (I t = blockIdx.x; t < T; t += gridDim.x) {
    const float* r = x + t * H;
    double m = 0, v = 0;  // RMSNorm (no beta): no mean, no bias
    if (b) {
      for (I h = threadIdx.x; h < H; h += blockDim.x) m += r[h];
      m = block_sum(m, sh) / double(H);
    }
    for (I h = threadIdx.x; h < H; h += blockDim.x) v += (r[h] - m) * (r[h] - m);
    v = block_sum(v, sh);
    const float rs = float(1.0 / sqrt(v / double(H) + eps)), mf = float(m);
    if (threadIdx.x == 0) mean[t] = mf, rstd[t] = rs;
    for (I h = threadIdx.x; h < H; h += blockDim.x) y[t * H + h] = (r[h] - mf) * rs * g[h] + (b ? b[h] : 0.f);
  }
}
__global__ void layernorm_bwd_dx_kernel(const float* __restrict__ x, const float* __restrict__ g,
                                        const float* __restrict__ mean, const float* __restrict__ rstd,
                                        const float* __restrict__ dy, float* __restrict__ dx, I T, I H, bool rms) {
  __shared__ double sh[32];
  for (I t = blockIdx.x; t < T; t += gridDim.x) {
    double s1 = 0, s2 = 0;
    for (I h = threadIdx.x; h < H; h += blockDim.x) {
      const float xh = (x[t * H + h] - mean[t]) * rstd[t], d = dy[t * H + h];
      s1 += d * g[h], s2 += d * g[h] * xh;
    }
    s1 = block_sum(s1, sh) / double(H);
    s2 = block_sum(s2, sh) / double(H);
    if (rms) s1 = 0;
    for (I h = threadIdx.x; h < H; h += blockDim.x) {
      const float xh = (x[t * H + h] - mean[t]) * rstd[t];
      dx[t * H + h] = rstd[t] * (dy[t * H + h] * g[h] - float(s1) - xh * float(s2));
    }
  }
}
// Parameter gradients accumulate over rows in row order, one thread per column: bitwise the CPU's sums.
__global__ void layernorm_bwd_param_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                           const float* __restrict__ rstd, const float* __restrict__ dy,
                                           float* __restrict__ dg, float* __restrict__ db, I T, I H) {
  for (I h = grid_index(); h < H; h += grid_stride()) {
    float sg = dg[h], sb = db ? db[h] : 0.f;
    for (I t = 0; t < T; ++t) {
      const float xh = (x[t * H + h] - mean[t]) * rstd[t], d = dy[t * H + h];
      sg += d * xh, sb += d;
    }
    dg[h] = sg;
    if (db) db[h] = sb;
  }
}

__global__ void embedding_kernel(const int* __restrict__ ids, const float* __restrict__ table,
                                 const float* __restrict__ pos, float* __restrict__ x, I T, I H, I V, I S,
                                 int* status) {
  for (I i = grid_index(); i < T * H; i += grid_stride()) {
    const I t = i / H, h = i % H;
    const int id = ids[t];
    if (id < 0 || id >= V) {
      atomicOr(status, kBadTokenId);
      x[i] = 0.f;
      continue;
    }
    x[i] = table[I(id) * H + h] + (pos ? pos[(t % S) * H + h] : 0.f);
  }
}
// Deterministic scatter-add: one thread per column walks the tokens in order (no atomics, so runs repeat bitwise
// and equal the CPU's sums). Parallel over H only; embedding backward is a small part of a step.
__global__ void embedding_bwd_table_kernel(const int* __restrict__ ids, const float* __restrict__ dx,
                                           float* __restrict__ dt, I T, I H, I V) {
  for (I h = grid_index(); h < H; h += grid_stride())
    for (I t = 0; t < T; ++t)
      if (ids[t] >= 0 && ids[t] < V) dt[I(ids[t]) * H + h] += dx[t * H + h];
}
__global__ void embedding_bwd_pos_kernel(const float* __restrict__ dx, float* __restrict__ dp, I T, I H, I S) {
  for (I i = grid_index(); i < S * H; i += grid_stride()) {
    float s = dp[i];
    for (I t = i / H; t < T; t += S) s += dx[t * H + i % H];
    dp[i] = s;
  }
}

__global__ void softmax_xent_kernel(const float* __restrict__ logits, const int* __restrict__ targets,
                                    float* __restrict__ d, double* __restrict__ row_loss, I T, I V, float gs,
                                    int* status) {
  __shared__ double sh[32];
  __shared__ float shf[32];
  for (I t = blockIdx.x; t < T; t += gridDim.x) {
    const float* l = logits + t * V;
    float mx = -FLT_MAX;
    for (I v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
    mx = block_max(mx, shf);
    double sum = 0;
    for (I v = threadIdx.x; v < V; v += blockDim.x) sum += exp(double(l[v] - mx));
    sum = block_sum(sum, sh);
    const int y = targets[t];
    const bool ok = y >= 0 && y < V;
    if (threadIdx.x == 0) {
      row_loss[t] = ok ? log(sum) - double(l[y] - mx) : 0.0;
      if (!ok) atomicOr(status, kBadTarget);
    }
    for (I v = threadIdx.x; v < V; v += blockDim.x) {
      float g = gs * float(exp(double(l[v] - mx)) / sum);
      if (v == y) g -= gs;
      d[t * V + v] = g;
    }
  }
}
__global__ void sum_loss_kernel(const double* row_loss, float* loss, I T) {  // in token order, like the CPU
  double s = 0;
  for (I t = 0; t < T; ++t) s += row_loss[t];
  loss[0] = float(s);
}

__global__ void adamw_kernel(const float* __restrict__ g, float* __restrict__ p, float* __restrict__ m,
                             float* __restrict__ v, I n, float lr, float b1, float b2, float eps, float wd, float c1,
                             float c2) {
  for (I i = grid_index(); i < n; i += grid_stride()) {
    const float mi = b1 * m[i] + (1 - b1) * g[i];
    const float vi = b2 * v[i] + (1 - b2) * g[i] * g[i];
    m[i] = mi, v[i] = vi;
    p[i] -= lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * p[i]);
  }
}

// One warp per score row; sums in float like the CPU (tree order).
__global__ void attention_softmax_kernel(float* __restrict__ sc, I rows, I Sq, I S, bool causal) {
  const I row = (I(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (row >= rows) return;
  float* r = sc + row * S;
  const I n = causal ? S - Sq + row % Sq + 1 : S;  // the queries are the last Sq positions
  float mx = -FLT_MAX;
  for (I j = lane; j < n; j += 32) mx = fmaxf(mx, r[j]);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
  float sum = 0;
  for (I j = lane; j < n; j += 32) sum += (r[j] = expf(r[j] - mx));
  sum = warp_sum(sum);
  for (I j = lane; j < S; j += 32) r[j] = j < n ? r[j] / sum : 0.f;
}
__global__ void attention_softmax_bwd_kernel(const float* __restrict__ p, float* __restrict__ dp, I rows, I S) {
  const I row = (I(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (row >= rows) return;
  float dot = 0;
  for (I j = lane; j < S; j += 32) dot += dp[row * S + j] * p[row * S + j];
  dot = warp_sum(dot);
  for (I j = lane; j < S; j += 32) dp[row * S + j] = p[row * S + j] * (dp[row * S + j] - dot);
}

unsigned rows_grid(I rows) {
  return unsigned(std::min<I>(rows, I{1} << 20));
}
unsigned warp_grid(I rows) {
  return unsigned((rows * 32 + kThreads - 1) / kThreads);
}

}  // namespace

#define MOESYS_LAUNCH(kernel, grid, ...)             \
  do {                                               \
    kernel<<<(grid), kThreads, 0, s>>>(__VA_ARGS__); \
    check_launch(cudaGetLastError(), #kernel);       \
  } while (0)

void block_transpose(const float* x, float* y, I A, I B, I n, cudaStream_t s) {
  MOESYS_LAUNCH(block_transpose_kernel, blocks_for(A * B * n), x, y, A, B, n);
}
void gather_rows(const float* x, const int* idx, float* y, I R, I n, cudaStream_t s) {
  MOESYS_LAUNCH(gather_rows_kernel, blocks_for(R * n), x, idx, y, R, n);
}
void scatter_add_rows(const float* x, const int* idx, float* y, I R, I n, I Ry, cudaStream_t s) {
  MOESYS_LAUNCH(scatter_add_rows_kernel, blocks_for(n), x, idx, y, R, n, Ry);
}
void argmax(const float* x, int* ids, I T, I V, cudaStream_t s) {
  if (T == 0) return;
  MOESYS_LAUNCH(argmax_kernel, warp_grid(T), x, ids, T, V);
}
void remap_index(const int* idx, const int* table, int* out, I n, cudaStream_t s) {
  MOESYS_LAUNCH(remap_index_kernel, blocks_for(n), idx, table, out, n);
}
void add_bias(float* x, const float* bias, I G, I M, I N, cudaStream_t s) {
  MOESYS_LAUNCH(add_bias_kernel, blocks_for(G * M * N), x, bias, M, N, G * M * N);
}
void bias_grad(const float* d, float* db, I G, I M, I N, bool accumulate, cudaStream_t s) {
  MOESYS_LAUNCH(bias_grad_kernel, blocks_for(G * N), d, db, G, M, N, accumulate);
}
void gelu(const float* x, float* y, I n, cudaStream_t s) {
  MOESYS_LAUNCH(gelu_kernel, blocks_for(n), x, y, n);
}
void gelu_bwd(const float* x, const float* dy, float* dx, I n, cudaStream_t s) {
  MOESYS_LAUNCH(gelu_bwd_kernel, blocks_for(n), x, dy, dx, n);
}
void swiglu(const float* x, float* y, I R, I f, cudaStream_t s) {
  MOESYS_LAUNCH(swiglu_kernel, blocks_for(R * f), x, y, R, f);
}
void swiglu_bwd(const float* x, const float* dy, float* dx, I R, I f, cudaStream_t s) {
  MOESYS_LAUNCH(swiglu_bwd_kernel, blocks_for(R * f), x, dy, dx, R, f);
}
void rope(float* x, I T, I heads, I D, I S, I first, bool inverse, double base, I stride, I offset, cudaStream_t s) {
  MOESYS_LAUNCH(rope_kernel, blocks_for(T * heads * (D / 2)), x, T, heads, D, S, first, inverse ? -1.0 : 1.0, base,
                stride, offset);
}
void mla_keys(const float* nope, const float* rope, float* k, I T, I H, I dn, I dr, cudaStream_t s) {
  MOESYS_LAUNCH(mla_keys_kernel, blocks_for(T * H * (dn + dr)), nope, rope, k, T, H, dn, dr);
}
void mla_keys_bwd(const float* dk, float* d_nope, float* d_rope, I T, I H, I dn, I dr, cudaStream_t s) {
  MOESYS_LAUNCH(mla_keys_bwd_nope_kernel, blocks_for(T * H * dn), dk, d_nope, T, H, dn, dr);
  MOESYS_LAUNCH(mla_keys_bwd_rope_kernel, blocks_for(T * dr), dk, d_rope, T, H, dn, dr);
}
void add(const float* a, const float* b, float* c, I n, cudaStream_t s) {
  MOESYS_LAUNCH(add_kernel, blocks_for(n), a, b, c, n);
}
void scale(float* x, I n, float v, cudaStream_t s) {
  MOESYS_LAUNCH(scale_kernel, blocks_for(n), x, n, v);
}
void fill(float* x, I n, float v, cudaStream_t s) {
  MOESYS_LAUNCH(fill_kernel, blocks_for(n), x, n, v);
}

void layernorm(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd, I T, I H,
               double eps, cudaStream_t s) {
  if (T == 0) return;
  MOESYS_LAUNCH(layernorm_kernel, rows_grid(T), x, gamma, beta, y, mean, rstd, T, H, eps);
}
void layernorm_bwd(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy, float* dx,
                   float* d_gamma, float* d_beta, I T, I H, cudaStream_t s) {
  if (T == 0) return;
  MOESYS_LAUNCH(layernorm_bwd_dx_kernel, rows_grid(T), x, gamma, mean, rstd, dy, dx, T, H, d_beta == nullptr);
  MOESYS_LAUNCH(layernorm_bwd_param_kernel, blocks_for(H), x, mean, rstd, dy, d_gamma, d_beta, T, H);
}
void embedding(const int* ids, const float* table, const float* pos, float* x, I T, I H, I V, I S, int* status,
               cudaStream_t s) {
  MOESYS_LAUNCH(embedding_kernel, blocks_for(T * H), ids, table, pos, x, T, H, V, S, status);
}
void embedding_bwd(const int* ids, const float* dx, float* d_table, float* d_pos, I T, I H, I V, I S, cudaStream_t s) {
  MOESYS_LAUNCH(embedding_bwd_table_kernel, blocks_for(H), ids, dx, d_table, T, H, V);
  if (d_pos) MOESYS_LAUNCH(embedding_bwd_pos_kernel, blocks_for(S * H), dx, d_pos, T, H, S);
}
void softmax_xent(const float* logits, const int* targets, float* d_logits, float* loss, I T, I V, float grad_scale,
                  double* row_loss, int* status, cudaStream_t s) {
  if (T > 0)
    MOESYS_LAUNCH(softmax_xent_kernel, rows_grid(T), logits, targets, d_logits, row_loss, T, V, grad_scale, status);
  sum_loss_kernel<<<1, 1, 0, s>>>(row_loss, loss, T);
  check_launch(cudaGetLastError(), "sum_loss_kernel");
}
void adamw(const float* grad, float* param, float* m, float* v, I n, float lr, float beta1, float beta2, float eps,
           float weight_decay, float c1, float c2, cudaStream_t s) {
  MOESYS_LAUNCH(adamw_kernel, blocks_for(n), grad, param, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2);
}
void attention_softmax(float* scores, I mats, I Sq, I Skv, bool causal, cudaStream_t s) {
  if (mats * Sq == 0) return;
  MOESYS_LAUNCH(attention_softmax_kernel, warp_grid(mats * Sq), scores, mats * Sq, Sq, Skv, causal);
}
void attention_softmax_bwd(const float* p, float* dp, I mats, I S, cudaStream_t s) {
  if (mats * S == 0) return;
  MOESYS_LAUNCH(attention_softmax_bwd_kernel, warp_grid(mats * S), p, dp, mats * S, S);
}

}  // namespace moesys::exec::cuda::kernels
