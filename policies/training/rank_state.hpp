#pragma once
// Where one rank's training state lives: every parameter, gradient, optimizer state and exchange buffer of the
// training program, allocated from the runtime in a few tagged blocks (the tags are MemoryUse names, so the
// ledger's peak-by-tag is the memory report) and carved into tensor views. The memory plan runs the program's
// allocations on a ledger-only runtime, so these allocations are the one description of the program's memory.
//
// Dense parameters are grouped into units: unit 0 = token table, position table, final layernorm gain and bias;
// unit l+1 = layer l: QKV weight [3][h][h] and bias, output weight and bias, two layernorms (gain, bias), and
// the gate [h][E] (MoE layer) or the dense FFN (W1 [h][f], b1, W2 [f][h], b2). A unit is padded to a multiple of
// the world size so that every reduce-scatter and ZeRO shard divides evenly.
// Expert parameters of one MoE layer: the L local experts back to back (expert-major), each W1 [h][f], b1 [f],
// W2 [f][h], b2 [h], so that one expert is one contiguous block (one copy between tiers) and equally loaded experts
// still run as one batched GEMM (a batch stride of one expert). Offloaded experts use the same layout in their GPU
// slots and at home (expert_residency.hpp).
#include <cstdint>
#include <utility>
#include <vector>

#include "core/runtime.hpp"
#include "policies/training/expert_residency.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::training {

/// Bytes of `rows` rows of `width` elements at `bytes_per` bytes each (a view's offset or length).
inline std::uint64_t rows_bytes(std::int64_t rows, std::int64_t width, double bytes_per) {
  return static_cast<std::uint64_t>(static_cast<double>(rows) * static_cast<double>(width) * bytes_per);
}

/// Carves consecutive views out of a block; with an empty block it only measures (the first of two passes).
class Carver {
 public:
  explicit Carver(core::Buffer block = {}) : block_(block) {}
  core::Buffer take(std::uint64_t bytes);
  std::uint64_t used() const { return used_; }

 private:
  core::Buffer block_;
  std::uint64_t used_ = 0;
};

/// The activations one layer keeps from forward to backward (views into one block per layer).
struct ActivationViews {
  core::Buffer out;                              // layer output = next layer's input [n][h]
  core::Buffer ln1, mean1, rstd1, qkv, ctx, mid;  // attention: qkv is Q [n][q], K and V [n][kv]; ctx [n][q]
  core::Buffer qk_normed, qk_mean, qk_rstd;       // QK norms: the normalised Q and K, per-head statistics
  core::Buffer cq, cq_normed, cq_mean, cq_rstd;    // MLA: the query latent [n][q_lora] and its norm
  core::Buffer ckv, ckv_normed, ckv_mean, ckv_rstd;  // MLA: the key/value latent [n][kv_lora] and its norm
  core::Buffer k_nope, k_rope;                     // MLA: per-head keys [n][heads x nope], the shared rotary key
  core::Buffer ln2, mean2, rstd2;
  core::Buffer probs, experts, slots, weights;   // MoE gate (experts and slots int32 [n][k])
  core::Buffer xin, pre, post, ret;              // expert rows in, FFN pre/post activation, returned rows
  core::Buffer shared_pre, shared_post, shared_out;  // MoE layer with shared experts: their FFN on every token
  core::Buffer lnf, meanf, rstdf, logits, dlogits;  // logits block
  // A multi-token prediction module's entry (kind 4; `out` is the projection, its block's input): the next tokens'
  // embeddings, the two norms' outputs and statistics.
  core::Buffer mtp_emb, mtp_enorm, mtp_emean, mtp_erstd, mtp_hnorm, mtp_hmean, mtp_hrstd;
};

/// Scratch shared by every layer (forward temporaries and backward gradients of activations).
struct Workspace {
  core::Buffer dx, dtmp, dn, dqkv, dctx;  // [n][h] each but dqkv ([n][q], [n][k], [n][v]) and dctx [n][ctx]
  // Tensor parallelism (tensor_parallel.hpp): [n x tp][h] each, the gathered input of attention or the dense FFN
  // (or the gathered gradient of its output) and its partial output before the reduce-scatter. dn, dqkv, dctx and
  // the dense FFN's gradients then hold n x tp rows too.
  core::Buffer sp_gathered, sp_partial;
  // Context parallelism (layout.hpp): the keys and values of the whole sequences of a micro-batch, position-major
  // ([seq][sequences][width]), their gradients, and the landing of their all-gather (chunk-major).
  core::Buffer cp_k, cp_v, cp_dk, cp_dv, cp_land_k, cp_land_v;
  core::Buffer logits_gate, dlogits_gate, dweights;  // [n][E], [n][E], [n][k]
  core::Buffer rows_a, rows_f;  // expert-major rows: [rows][h] and [rows][in x f]
  core::Buffer dense_f;         // dense FFN gradient [n][in x f] (of the activation's input)
  core::Buffer dense_g;         // SwiGLU: the gradient of the activation's output [n][f] (GeLU: in place in dense_f)
  core::Buffer rows_g;          // SwiGLU: the expert rows' activation-output gradient [rows][f]
  core::Buffer shared_f, shared_g, shared_dx;  // shared experts: [n][in x S f], [n][S f] (SwiGLU), [n][h]
  core::Buffer mla_dk_nope, mla_dk_rope, mla_dckv, mla_dcq;  // MLA: gradients of k_nope, k_rope and the latents
  core::Buffer slots_raw;       // int32 [n][k]: the gate's capacity slots before remapping
  // The all-gather dispatcher (policy.hpp), over the P members of the expert-parallel group: the group's tokens
  // [P n][h] (forward: the gathered inputs, then the partial outputs before the reduce-scatter; backward: the
  // gathered output gradients, then the partial input gradients), their capacity slots (int32) and combine weights
  // [P n][k], and the weights' partial gradients [P n][k].
  core::Buffer ag_tokens, ag_slots, ag_weights, ag_dweights;
  // Selective recompute (TrainingConfig::recompute_modules): where the parts a layer does not keep live while one
  // layer's forward or backward runs. layernorm: both norm outputs [n][h]; moe_act: the experts' activation
  // outputs [rows][f] and the shared experts' [n][S f]; mlp: the dense FFN's W1 output [n][in x f] and activation [n][f];
  // mla_up_proj: MLA's queries, keys and values as attention reads them (qkv) and the per-head keys [n][heads x nope].
  core::Buffer redo_ln1, redo_ln2, redo_expert_post, redo_shared_post, redo_ffn_pre, redo_ffn_post;
  core::Buffer redo_qkv, redo_k_nope;
  core::Buffer loss;            // one float
  // Multi-token prediction: the gradient a module's entry sends to the hidden state it read [n][h] (added to that
  // state's gradient once the head in front of it has run its backward), and the modules' loss (one float).
  core::Buffer mtp_dh, mtp_loss;
};

struct DenseUnit {
  std::int64_t offset = 0;       // first element in the replicated layout (of this rank's pipeline stage)
  std::int64_t full_offset = 0;  // ... in the layout of the whole model (the seed of its initial values)
  std::int64_t elems = 0, padded = 0;
  std::vector<std::int64_t> tensor_offsets, tensor_elems;  // unit-relative
  std::int64_t shard_offset = 0;  // ZeRO-3: this unit's node shard in the shard block
  std::int64_t part_offset = 0;   // ZeRO-3: this unit's world piece in the partition
  /// Tensor parallelism: unit-relative element ranges every member of the group holds whole (their gradients are
  /// summed over the group; tensor_parallel.hpp).
  std::vector<std::pair<std::int64_t, std::int64_t>> tp_replicated;
};

/// A fused gradient reduction: a contiguous element range of the replicated layout, reduced when the backward
/// of `done_unit` (the unit holding its lowest element) completes.
struct GradBucket {
  std::int64_t lo = 0, hi = 0;
  int done_unit = 0;
  std::int64_t padded = 0, piece = 0;  // padded length (a multiple of the group) and one member's piece
  std::int64_t part_offset = 0;        // ZeRO-2: the piece's place in the partition
  int buffer = 0;                      // ZeRO-2/3: the physical bucket buffer (-1: the embedding gradient block)
};

/// The column-partitioned embedding (embedding_partition.cpp): this rank owns columns [rank * cols, (rank + 1) *
/// cols) of the token table for every token, with their gradient and optimizer state, and the buffers of the
/// lookup's exchanges and of the tied logits' table chunks (`chunk_rows` rows of the table at a time).
struct EmbeddingShard {
  std::int64_t cols = 0, chunk_rows = 0, chunks = 0;
  core::Buffer params, grads, opt;  // [vocab][cols]
  core::Buffer ids;                 // HBM int32 [world][n]: this rank's ids once per peer (the send side)
  core::Buffer all_ids;             // HBM int32 [tokens of all ranks]: every rank's ids, peer after peer
  core::Buffer positions;           // HBM int32 [n]: each token's position in its sequence
  core::Buffer rows;                // [tokens of all ranks][cols]: looked-up columns, or their gradient
  core::Buffer cols_in;             // [world][n][cols]: the received columns, or the gradient to send back
  core::Buffer gathered[2];         // [world][chunk_rows][cols]: a gathered table chunk (one in flight)
  core::Buffer chunk;               // [chunk_rows][hidden]: the chunk row-major, for the logits GEMMs
  core::Buffer chunk_grad[2];       // [hidden][chunk_rows]: a chunk's gradient, transposed ([world][cols][rows])
  core::Buffer grad_piece;          // 2 x [chunk_rows][cols]: this rank's columns of it, received and transposed
};

/// A contiguous range of layers a pipeline stage runs (one per model chunk; one without virtual stages).
struct LayerChunk {
  int first_layer = 0, end_layer = 0;
  int first_moe = 0;  // the MoE index of the chunk's first MoE layer (MoE layers before it)
  int moe_layers = 0;
};

struct RankState {
  std::vector<LayerChunk> chunks;  // this rank's model chunks, chunk v of the stage at v
  std::vector<int> expert_slot;    // [MoE layer]: its place in this rank's expert buffers, -1 where another stage's
  int held_moe_layers = 0;         // MoE layers whose experts this rank holds
  std::vector<DenseUnit> units;
  std::vector<GradBucket> buckets;  // in issue order (backward)
  int bucket_buffers = 0;
  std::int64_t partition_elems = 0;  // dense elements this rank updates

  core::Buffer params;         // replicated dense parameters, or (ZeRO-3) this rank's node shard of every unit
  core::Buffer gathered[2];    // ZeRO-3: two gathered units (current + prefetched); generation: two fetched units
  core::Buffer host_params;    // generation from host memory: every dense unit at home (params: the embedding)
  core::Buffer unit_staging;   // ... in pageable memory: the pinned area a unit is copied through
  core::Buffer grads;          // ddp: full; ZeRO-2/3: the partition this rank updates
  core::Buffer part_grads;     // distributed optimizer: this rank's reduced pieces of the full gradient buffer
  core::Buffer node_grads;     // ZeRO-3: node shard of the gradients (between the two reduce-scatters)
  core::Buffer emb_grad;       // ZeRO-2/3: embedding unit gradient, written through the whole backward
  std::vector<core::Buffer> bucket_buf;
  core::Buffer gather_tmp;     // ZeRO-2/3: all-gather target of updated parameters
  core::Buffer reduce_tmp;     // reduce-scatter target when accumulating micro-batches
  core::Buffer opt;            // AdamW moments (+ master copy) of the dense partition

  std::int64_t expert_layer_elems = 0;  // L experts of one MoE layer
  core::Buffer expert_params, expert_grads, expert_opt;  // resident experts (offload none), per MoE layer
  // The distributed optimizer's expert shards (dense distributed, resident experts, more than one replica of each):
  // every MoE layer's experts are reduced in these chunks (lo/hi layer-relative), each reduce-scattered over the
  // expert replicas into this rank's piece (expert_part_grads, piece after piece, expert_piece_layer elements per
  // held layer); expert_opt then holds only the pieces' moments and the updated pieces are all-gathered back.
  std::vector<GradBucket> expert_chunks;
  std::int64_t expert_piece_layer = 0;
  core::Buffer expert_part_grads, expert_gather_tmp;
  ExpertStorage offloaded;  // offload: GPU slots, home in host memory (cpu) or on the SSD (nvme)
  // Expert replicas (expert_replicas.hpp): copies of other ranks' experts in spare slots, [held MoE layer][slot],
  // an owner's landing place for one replica's gradient, and the step's tokens per expert (fp32 [MoE layer][E]).
  core::Buffer replica_params, replica_grads, replica_inbox, expert_load;
  int replica_slots = 0;  // spare slots per held MoE layer

  core::Buffer send, recv;       // all-to-all rows
  core::Buffer index;            // HBM int32: slot table, forward and backward regroup indices
  core::Buffer counts;           // HBM int32: own token counts per expert, then the received ones (replicas:
                                 // every member's counts of every expert)
  core::Buffer routing;          // HBM int32 [micro-batch][MoE layer][expert]: the gate's counts of a step
  core::Buffer ids, targets;     // HBM int32 [n]
  core::Buffer mtp_ids, mtp_targets;  // HBM int32 [module][n]: the tokens 1 + k and 2 + k positions ahead
  core::Buffer staging;          // DRAM: uploads and read-backs
  std::vector<core::Buffer> kv_k, kv_v;  // generation: per layer, [context][sequence][hidden] (position-major)
  core::Buffer generated;               // generation: HBM int32 [pass][sequence], the sampled tokens
  EmbeddingShard shard;          // embedding partition: this rank's columns of the token table
  Workspace ws;

  std::int64_t max_tokens = 0, max_rows_sent = 0, max_rows_recv = 0, table_elems = 0;
};

/// Allocates the persistent state of (global) rank `rank` (throws OutOfMemory from the runtime when a tier is full).
RankState allocate_rank_state(const TrainingPlan& plan, core::Runtime& rt, int rank);
/// The experts of one rank and how the policy keeps them outside the GPU (offload = cpu | nvme).
ExpertShape expert_shape(const TrainingPlan& plan);
ResidencySettings residency_settings(const TrainingPlan& plan, std::int64_t cache_entries);

/// The activation views of one layer of a micro-batch with `tokens` tokens. kind: 0 embedding, 1 attention +
/// MoE, 2 attention + dense FFN, 3 logits, 4 a multi-token prediction module's entry. `forward_only` (generation: nothing is kept for a backward pass): the
/// layer output is not carved (the caller provides it), the FFN activation runs in place (post = pre) and the
/// logits have no gradient. Without `carve_out` a layer's output is left to the caller (full recompute keeps it apart).
/// `ws` (selective recompute): the parts `redo` names are views of ws's redo_* scratch instead of the block. `tp`:
/// the tensor-parallel size; attention's and the dense FFN's views hold all `tokens x tp` tokens of the group.
ActivationViews carve_activations(const core::ModelConfig& m, int kind, std::int64_t tokens, std::int64_t rows_computed,
                                  std::int64_t rows_returned, Carver& c, bool forward_only = false,
                                  bool carve_out = true, const RecomputeModules& redo = {},
                                  const Workspace* ws = nullptr, int tp = 1);

/// Whether the last pipeline stage needs the token table too: a tied output layer, or multi-token prediction
/// modules (they embed the next tokens).
inline bool shares_token_table(const core::ModelConfig& m) { return m.tied_embeddings || m.mtp_blocks > 0; }
/// Dense parameter tensors of each unit (element counts; see the header comment).
std::vector<std::vector<std::int64_t>> unit_tensors(const core::ModelConfig& m, const TrainingPolicy& p);
/// The same units as held by the ranks of pipeline stage `stage` (tensors of other stages have no elements).
std::vector<std::vector<std::int64_t>> stage_unit_tensors(const core::ModelConfig& m, const TrainingPolicy& p,
                                                          const Layout& l, int stage);

}  // namespace moesys::policies::training
