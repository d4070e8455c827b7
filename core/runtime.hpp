#pragma once
// The per-rank runtime interface. Every policy is a program that runs once per rank (one rank = one GPU) and
// talks only to this interface; three runtimes implement it:
//   sim/   SimGrid: operations take simulated time on a model of the cluster; buffers carry sizes only.
//   exec/  CPU (MPI + BLAS) and CUDA (cuBLAS + NCCL): operations run for real; buffers carry data.
//
// Semantics shared by all runtimes:
// - Every operation is issued on a stream and returns an Event at once. Operations on one stream run in issue
//   order; operations on different streams may overlap. `wait` blocks the calling rank until an event has
//   completed; `stream_wait` makes later work on a stream wait for an event (like cudaStreamWaitEvent).
// - Collectives are called by every member of the group, in the same order on every member. A collective
//   completes when every member's part has completed.
// - Sizes are bytes. Collective sizes follow nccl-tests: `bytes` is the per-rank buffer of all_reduce, the
//   per-rank input of reduce_scatter, and the per-rank output of all_gather.
// - Every operation becomes a trace Span (rank, stream, kind, name, bytes, flop, start, end).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/cluster.hpp"
#include "core/memory.hpp"
#include "core/trace.hpp"

namespace moesys::core {

/// Streams are small integers; these are the conventional ones. A runtime creates a stream on first use.
using StreamId = int;
namespace streams {
inline constexpr StreamId kCompute = 0;  // kernels
inline constexpr StreamId kComm = 1;     // collectives and point-to-point
inline constexpr StreamId kH2D = 2;      // host (or SSD) to device copies: prefetch, ring refill
inline constexpr StreamId kD2H = 3;      // device to host copies: offload, write-back
inline constexpr StreamId kNvme = 4;     // SSD <-> host memory
inline constexpr StreamId kComm2 = 5;    // a second communication stream (e.g. gradient reductions)
inline constexpr StreamId kGather = 6;   // parameter all-gathers ahead of use (ZeRO-3 prefetch)
inline constexpr StreamId kUpload = 7;   // small host-to-device uploads (token ids, routing tables) that must not
                                         // queue behind weight copies on kH2D
// Pipeline parallelism: activations to the next stage and from the previous one, gradients the other way. One
// stream per direction and kind talks to one peer only, in the same order on both sides, so that no message waits
// behind one to or from another peer.
inline constexpr StreamId kPipeSendAct = 8;
inline constexpr StreamId kPipeRecvAct = 9;
inline constexpr StreamId kPipeSendGrad = 10;
inline constexpr StreamId kPipeRecvGrad = 11;
// Expert replicas: copies' gradients to their owners and the owners' updated weights back to the copies, sends on
// one stream and receives on another, each in one global order (policies/training/replica_sync.cpp).
inline constexpr StreamId kReplicaSend = 12;
inline constexpr StreamId kReplicaRecv = 13;
}  // namespace streams
const char* stream_name(StreamId s);

/// A region of memory in a tier. In the simulator it has a size only; real runtimes set `data`.
struct Buffer {
  std::uint64_t id = 0;  // 0 = no buffer
  Tier tier = Tier::hbm;
  std::uint64_t bytes = 0;
  void* data = nullptr;
  std::uint64_t offset = 0;  // a view's start inside its allocation (see slice)
  explicit operator bool() const { return id != 0; }
  /// Typed host view of a real buffer (nullptr in the simulator, or for a tier the host cannot address).
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  /// A view of `length` bytes from `offset` (same id and tier: it is freed with its buffer, never on its own).
  /// Model code carves tensors out of a few planned allocations this way, so the ledger sees the plan's items.
  Buffer slice(std::uint64_t offset, std::uint64_t length) const;
};

/// Completion handle of an operation. Value type; 0 means "already complete".
struct Event {
  std::uint64_t id = 0;
};

/// A communicator: the global ranks that take part, in group-rank order.
/// Copies share one immutable list of members and key: a simulated rank keeps the groups it uses, and at 8192
/// ranks one world group is 75 KB, so a copy per rank would be 600 MB.
class Group {
 public:
  Group();
  explicit Group(std::vector<int> ranks);
  // Copies only (a move would leave no members behind; a copy costs one reference count).
  Group(const Group&) = default;
  Group& operator=(const Group&) = default;
  /// All ranks, 0..world_size-1; every call with the same size returns the same shared members.
  static Group world(int world_size);
  const std::vector<int>& ranks() const { return data_->ranks; }
  int size() const { return static_cast<int>(data_->ranks.size()); }
  int index_of(int global_rank) const;  // -1 if not a member
  /// Identifies the group across ranks (same members in the same order -> same key).
  const std::string& key() const { return data_->key; }
  /// Same members in the same order (cheap when both are copies of one group).
  bool same_as(const Group& other) const { return data_ == other.data_ || data_->key == other.data_->key; }

 private:
  struct Members {
    std::vector<int> ranks;
    std::string key;
  };
  std::shared_ptr<const Members> data_;
};

/// Collective algorithms. `automatic` lets the runtime choose (NCCL's choice on real hardware; the cheapest
/// of the modelled algorithms in the simulator). Policies force one to compare them.
/// How a collective is carried out. Real runtimes leave all-reduce, reduce-scatter and all-gather to their
/// library's own choice (NCCL, MPI); the simulator models the choice (sim/collectives.hpp). tree, nvls and
/// nvls_tree are all-reduce algorithms: NCCL's pipelined trees, NVLink SHARP inside an NVSwitch node, and NVLS
/// inside each node with trees across nodes. deepep and deepep_ll are all-to-all algorithms of MoE dispatch and
/// combine kernels (DeepEP's normal kernels: each token crosses the network once per node, along its rail, and is
/// forwarded over NVLink inside the node, the two overlapped; its low-latency kernels: every (token, expert) copy
/// sent directly by the GPU, NVLink inside the node). copy_engine is NCCL's copy-engine all-gather and all-to-all
/// inside an NVLink node (NCCL 2.28+, NCCL_CTA_POLICY_ZERO with symmetric buffers): DMA copies into the peers'
/// buffers between two barriers, no SMs held. Real runtimes move the same bytes directly.
enum class CollectiveAlgo { automatic, ring, direct, hierarchical, tree, nvls, nvls_tree, deepep, deepep_ll, copy_engine };
const char* to_string(CollectiveAlgo a);
CollectiveAlgo parse_collective_algo(const std::string& s);  // throws std::invalid_argument

/// A DeepEP-style all-to-all's traffic per node: the bytes one member sends to each node its group spans
/// (dispatch) or receives from it (combine: the node's members' contributions to a token are summed on the node
/// before they cross the network), nodes in ascending order, each token counted once per node however many of the
/// node's members take it. Empty: no token goes to two members of one node (the sum of the member's bytes per
/// node).
struct NodeTraffic {
  std::vector<std::uint64_t> bytes;
  bool combine = false;
};

// ---- Compute kernels, described by what they do (the simulator derives a time, real runtimes run them) ----

/// C[m,n] (+)= op(A)[m,k] * op(B)[k,n], `batch` independent products.
struct GemmOp {
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t batch = 1;
  Dtype dtype = Dtype::bf16;
  Buffer a, b, c;
  bool trans_a = false, trans_b = false, accumulate = false;
  /// Every product of the batch reads the same A (one input times several weights, e.g. Q, K and V).
  bool broadcast_a = false;
  /// Elements from one product's B (C) to the next one's; 0 = packed (k*n, m*n). Lets a batch read weights that
  /// sit inside larger per-item blocks, e.g. the W1 of every expert in an expert-major layout.
  std::int64_t stride_b = 0, stride_c = 0;
  double flop() const { return 2.0 * static_cast<double>(m) * n * k * batch; }
};

/// Scaled dot-product attention (forward, or backward when `backward`).
/// With seq_q < seq_kv the queries are the last seq_q positions of each sequence (a prefill continuing a context, or
/// a decode step with seq_q = 1): query i sits at position seq_kv - seq_q + i and, when causal, sees keys 0..that
/// position. Backward requires seq_q == seq_kv and packed K/V (training).
struct AttentionOp {
  std::int64_t batch = 1, heads = 1, seq_q = 1, seq_kv = 1, head_dim = 64;
  /// Key/value heads (grouped-query attention: query head i reads K/V head i / (heads / kv_heads)); 0 = heads.
  std::int64_t kv_heads = 0;
  std::int64_t kv_head_count() const { return kv_heads > 0 ? kv_heads : heads; }
  /// Width of a value head, and so of an output head (MLA: 128 against 192-wide query and key heads); 0 = head_dim.
  std::int64_t v_head_dim = 0;
  std::int64_t v_dim() const { return v_head_dim > 0 ? v_head_dim : head_dim; }
  bool causal = true, backward = false;
  Dtype dtype = Dtype::bf16;
  /// Real operands, rows of heads * head_dim elements (heads side by side; K and V rows kv_heads * head_dim). q, o
  /// (and the gradients) are
  /// [batch * seq_q] rows, sequence-major. k, v are [batch * seq_kv] rows sequence-major, or, with
  /// `kv_position_major`, [positions][batch] rows: the layout of a KV cache with room for the full context, where
  /// a decode step appends its new K and V rows of every sequence as one contiguous block after the previous
  /// positions (position t of sequence b is row t * batch + b; rows past seq_kv are not read).
  /// Forward reads q, k, v and writes o; backward also reads d_o and writes d_q, d_k, d_v.
  Buffer q, k, v, o, d_o, d_q, d_k, d_v;
  bool kv_position_major = false;
  /// Backward adds the K and V gradients into d_k and d_v instead of writing them: two query blocks over the same
  /// keys (context parallelism's zigzag halves) sum their contributions.
  bool accumulate_kv_grads = false;
  /// Rows between positions t and t + 1 of one sequence in k and v, and between sequences b and b + 1.
  std::int64_t kv_position_stride() const { return kv_position_major ? batch : 1; }
  std::int64_t kv_sequence_stride() const { return kv_position_major ? 1 : seq_kv; }
  /// Keys query i may see: all of them, or (causal) those up to its position seq_kv - seq_q + i.
  std::int64_t visible_keys(std::int64_t i) const { return causal ? seq_kv - seq_q + i + 1 : seq_kv; }
  double flop() const;
  double bytes() const;  // Q, K, V, O traffic (flash-attention style, no materialised scores)
};

/// Memory-bound work: layernorm, activation, optimizer update, permutation.
struct ElementwiseOp {
  std::uint64_t bytes_read = 0, bytes_written = 0;
  double flop = 0;
};

/// Gating: softmax over experts and top-k selection for `tokens` tokens.
struct GateOp {
  std::int64_t tokens = 0, experts = 0, top_k = 2;
  Dtype dtype = Dtype::fp32;
  double flop() const { return 5.0 * static_cast<double>(tokens) * experts; }
  double bytes() const { return static_cast<double>(tokens) * experts * dtype_bytes(dtype) * 2.0; }
};

/// The data kernels of an MoE transformer with real operands: gating, dispatch / combine permutations,
/// activations, normalisation, loss and optimizer. Real runtimes run them on the buffers; the simulator costs
/// them as memory-bound work (bytes_read + bytes_written, flop) like an ElementwiseOp. The operand order and the
/// meaning of dims / scalars of each kind are documented in model/ops.hpp. Integer operands are int32.
enum class TensorOpKind {
  gate_topk,
  gate_bwd,
  dispatch,
  dispatch_bwd,
  combine,
  combine_bwd,
  block_transpose,
  add_bias,
  bias_grad,
  gelu,
  gelu_bwd,
  add,
  scale,
  fill,
  layernorm,
  layernorm_bwd,
  embedding,
  embedding_bwd,
  softmax_xent,
  adamw,
  gather_rows,
  remap_index,
  argmax,
  scatter_add_rows,
  swiglu,
  swiglu_bwd,
  rope,
  mla_keys,
  mla_keys_bwd
};
const char* to_string(TensorOpKind k);

struct TensorOp {
  TensorOpKind kind = TensorOpKind::fill;
  std::vector<Buffer> in, out;
  std::vector<std::int64_t> dims;
  std::vector<double> scalars;
  Dtype dtype = Dtype::fp32;  // of the floating-point operands
  std::uint64_t bytes_read = 0, bytes_written = 0;
  double flop = 0;
};

using Kernel = std::variant<GemmOp, AttentionOp, ElementwiseOp, GateOp, TensorOp>;

/// The interface every runtime implements. One instance per rank; not shared between ranks.
class Runtime {
 public:
  virtual ~Runtime() = default;

  // ---- Identity and time ----
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const ClusterSpec& cluster() const = 0;
  /// Seconds since the start of the run (simulated or wall clock).
  virtual double now_s() const = 0;

  // ---- Memory ----
  /// Allocates in a tier; throws OutOfMemory with the numbers if the tier is full. `tag` groups memory in reports.
  virtual Buffer alloc(Tier tier, std::uint64_t bytes, const std::string& tag) = 0;
  virtual void free(Buffer& buffer) = 0;
  virtual const MemoryLedger& memory() const = 0;

  // ---- Operations (all asynchronous) ----
  virtual Event compute(StreamId stream, const Kernel& kernel, std::string_view name) = 0;
  /// Copies `bytes` between tiers of this rank: HBM<->DRAM over PCIe, DRAM<->SSD over NVMe.
  virtual Event copy(StreamId stream, const Buffer& dst, const Buffer& src, std::uint64_t bytes) = 0;
  virtual Event send(StreamId stream, int peer, const Buffer& buffer, std::uint64_t bytes, int tag) = 0;
  virtual Event recv(StreamId stream, int peer, const Buffer& buffer, std::uint64_t bytes, int tag) = 0;
  virtual Event all_reduce(StreamId stream, const Group& group, const Buffer& buffer, std::uint64_t bytes, Dtype dtype,
                           CollectiveAlgo algo = CollectiveAlgo::automatic) = 0;
  virtual Event reduce_scatter(StreamId stream, const Group& group, const Buffer& send, const Buffer& recv,
                               std::uint64_t bytes, Dtype dtype, CollectiveAlgo algo = CollectiveAlgo::automatic) = 0;
  virtual Event all_gather(StreamId stream, const Group& group, const Buffer& send, const Buffer& recv,
                           std::uint64_t bytes, CollectiveAlgo algo = CollectiveAlgo::automatic) = 0;
  /// All-to-all(v): send_bytes[i] go to group member i, recv_bytes[i] come from member i. `nodes`: with
  /// CollectiveAlgo::deepep, what the member moves over the network (see NodeTraffic); ignored otherwise.
  virtual Event all_to_all(StreamId stream, const Group& group, const Buffer& send,
                           const std::vector<std::uint64_t>& send_bytes, const Buffer& recv,
                           const std::vector<std::uint64_t>& recv_bytes,
                           CollectiveAlgo algo = CollectiveAlgo::automatic, const NodeTraffic& nodes = {}) = 0;

  // ---- Synchronisation ----
  virtual void wait(Event event) = 0;
  virtual void stream_wait(StreamId stream, Event event) = 0;
  /// Blocks until every stream of this rank is idle.
  virtual void synchronize() = 0;

  // ---- Tracing ----
  /// Opens / closes a named phase span on the host timeline (e.g. "step0/layer3/fwd").
  virtual void begin_phase(std::string_view name) = 0;
  virtual void end_phase() = 0;
  virtual const std::vector<Span>& spans() const = 0;
};

}  // namespace moesys::core
