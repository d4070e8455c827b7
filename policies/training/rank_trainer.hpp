#pragma once
// The training step of one rank (internal to policies/training), written once against core::Runtime with real
// operands: every kernel names its input and output buffers and every collective its send and receive buffers.
// On the simulator the buffers carry sizes only (and token counts come from the routing plan); on the CPU and
// CUDA runtimes they carry data (and token counts come from the gate).
//
// Text generation is a mode of this program rather than a second one (generation.cpp, TrainingPlan::generation):
// the forward pass of training already is the model's forward, with every policy's mechanics (expert residency,
// the MoE exchange, the unit fetches of ZeRO-3), so generation reuses the same members and layer code and adds
// only what inference has and training lacks: a KV cache the attention appends to and reads (attention_forward
// takes the cached path), positions that continue the context, the last position's logits, greedy sampling
// feeding the next pass, and read-only weights (no gradients or optimizer states are allocated). Keeping one
// class means a change to the MoE layer or a dense layer reaches both jobs at once.
// Split over files by concern:
//   rank_trainer.cpp     step loop, data, ZeRO-3 parameter gathers (or host fetches), optimizer step
//   pipeline.cpp         pipeline stages: the 1F1B order, activations and gradients to and from neighbour stages
//   generation.cpp       generation: prefill and decode passes, prompts, KV cache, sampling
//   rank_state.cpp       where every parameter, gradient, optimizer state and buffer lives (the allocations)
//   dense_layers.cpp     attention, dense FFN, embedding, tied logits
//   embedding_partition.cpp  the column-partitioned embedding (lookup, tied logits in table chunks, shard update)
//   moe_layer.cpp        gate, token-count exchange, chunked dispatch / expert FFN / combine
//   moe_exchange.cpp     the row layout of one MoE layer's exchange (per peer, local expert and chunk)
//   grad_sync.cpp        fused gradient buckets (all-reduce or reduce-scatter) and post-step all-gathers
//   sequence_parallel.cpp tensor parallelism's all-gathers and reduce-scatters of token shards, and its gradient sum
//   expert_residency.cpp offloaded experts: GPU slots, home in host memory or on the SSD, 2D prefetch, LFU cache
//   mla_attention.cpp    multi-head latent attention's projections
//   context_parallel.cpp context parallelism's zigzag blocks: key/value gathers, per-block attention
//   mtp.cpp              multi-token prediction modules after the last chunk's logits
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/runtime.hpp"
#include "policies/training/expert_residency.hpp"
#include "policies/training/moe_exchange.hpp"
#include "policies/training/rank_state.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::training {

inline constexpr core::StreamId kGatherStream = core::streams::kGather;

class RankTrainer {
 public:
  RankTrainer(const TrainingPlan& plan, core::Runtime& rt, RankCounters& counters);
  void run();

 private:
  // ---- rank_trainer.cpp ----
  /// The forward or backward pass of micro-batch `micro` through this rank's model chunk `chunk` (its layers; 0
  /// without virtual stages).
  void forward(int step, int micro, int chunk);
  void backward(int step, int micro, int chunk);
  /// Points mb_, tokens_, step_ and micro_ at micro-batch `micro` of step `step`.
  void select_micro_batch(int step, int micro);
  /// One layer's forward on input x_in into the views a (`moe` is its MoE index when it is an MoE layer).
  void layer_forward(int layer, int moe, const core::Buffer& x_in, ActivationViews& a);
  /// Layer `l` of the step on the output of the activation block on top: its forward, keeping what its backward
  /// needs (or, under full recompute, its output alone), and its backward (recomputing first), which frees them.
  void kept_layer_forward(int l, int moe);
  void kept_layer_backward(int l, int moe);
  /// Frees the activation block on top.
  void drop_activations();

  // ---- mtp.cpp ----
  /// The multi-token prediction modules of the last model chunk `ch`, after its logits (`moe`: the first module's
  /// MoE index), and their backward, which leaves ws.mtp_dh (their gradient of the last layer's output).
  void mtp_forward(const LayerChunk& ch, int moe);
  void mtp_backward(const LayerChunk& ch);
  /// Module k's tokens 1 + k positions ahead (its lookup) and 2 + k ahead (its targets).
  core::Buffer mtp_ids(int k) const;
  core::Buffer mtp_targets(int k) const;
  /// A parameter of any unit in the replicated layout (pipelines, ddp, zero2, distributed: every unit resident).
  core::Buffer held_param(int unit, int tensor) const;

  // ---- pipeline.cpp ----
  /// Model chunk `chunk` of this stage is chunk chunk x pp + stage of the model: the first one embeds, the last one
  /// computes the logits and the loss.
  int model_chunk(int chunk) const { return chunk * layout_.pp + stage_; }
  bool first_chunk(int chunk) const { return model_chunk(chunk) == 0; }
  bool last_chunk(int chunk) const { return model_chunk(chunk) == layout_.chunks() - 1; }
  bool last_stage() const { return stage_ == layout_.pp - 1; }
  /// The rank (same local index) that runs model chunk k.
  int rank_of_chunk(int k) const { return (k % layout_.pp) * layout_.world + local_; }
  /// The step's passes in (interleaved) 1F1B order (pipeline_schedule.hpp); with one stage, forward and backward
  /// alternate.
  void run_passes(int step);
  /// Receives this micro-batch's input to `chunk` from the rank of the model chunk before into `x` (the chunk's
  /// first activation block).
  void receive_chunk_input(int chunk, const core::Buffer& x);
  void send_chunk_output(int chunk, const core::Buffer& y);
  /// Receives the gradient of `chunk`'s output from the rank of the model chunk after, into ws.dx.
  void receive_output_grad(int chunk);
  /// Sends ws.dx (the gradient of `chunk`'s input) to the rank of the model chunk before.
  void send_input_grad(int chunk);
  /// The message tag of the boundary after model chunk k, per step, micro-batch and direction.
  int pipe_tag(int boundary, bool grad) const;
  /// Moves the current pass's activations and exchanges aside (1F1B keeps several in flight) and back.
  void stash_pass(int key);
  void restore_pass(int key);
  void optimizer_step(int step);
  void load_batch(int step, int micro);
  /// The synthetic task's rule: the token after t (load_batch draws sequences with it).
  std::int32_t next_token(std::int32_t t) const;
  void initialise_parameters();
  /// Real runtimes: appends the step's gate counts to counters_.routing (the routing trace of the run).
  void record_routing();
  /// Real runtimes: this step's gate counts, [micro-batch][MoE layer][expert] (after the kernels that wrote them).
  std::vector<std::int32_t> read_step_routing();
  /// ZeRO-3: gathers the parameters of use `unit` (one ahead) and points unit_params_ at them.
  void unit_begin(int unit);
  void unit_end();
  core::Event run(const core::Kernel& k, const char* name);
  core::Event gemm(std::int64_t m, std::int64_t n, std::int64_t k, const core::Buffer& a, const core::Buffer& b,
                   const core::Buffer& c, const char* name, bool trans_a = false, bool trans_b = false,
                   bool accumulate = false, std::int64_t batch = 1, bool broadcast_a = false,
                   std::int64_t stride_b = 0, std::int64_t stride_c = 0);
  core::Event tensor(core::TensorOp op, const char* name);
  /// Whether `b` lies in an allocation of parameter values (a GEMM reading one is a forward or data-gradient GEMM).
  bool is_weight(const core::Buffer& b) const;
  /// FP8 GEMMs: the quantization of their activation operand `x` (`elems` elements) before them.
  void quantize_for_fp8(const core::Buffer& x, std::int64_t elems);
  /// With fp8_gemm, GEMMs run in FP8 except inside this scope: the router and the output layer keep the model's
  /// dtype (as DeepSeek-V3 keeps them).
  class ModelDtypeGemms {
   public:
    explicit ModelDtypeGemms(RankTrainer& t) : t_(t), saved_(t.gemm_dtype_) { t.gemm_dtype_ = t.dtype_; }
    ~ModelDtypeGemms() { t_.gemm_dtype_ = saved_; }
    ModelDtypeGemms(const ModelDtypeGemms&) = delete;
    ModelDtypeGemms& operator=(const ModelDtypeGemms&) = delete;

   private:
    RankTrainer& t_;
    core::Dtype saved_;
  };
  /// Activation views of the current micro-batch: layer l's blob is acts_[l + 1] (0: embedding, last: logits).
  ActivationViews& acts(std::size_t i) { return act_views_[i]; }
  /// A parameter of the current unit (valid between unit_begin and unit_end).
  core::Buffer param(int unit, int tensor) const;
  /// Host reads a small HBM tensor (counts, loss) after `after`; false in the simulator (buffers carry no data).
  bool read_back(const core::Buffer& src, std::uint64_t bytes, core::Event after, void* out);
  /// Host writes `bytes` of int32 values into HBM through the staging buffer; returns the upload's event. The
  /// simulator passes no values (its buffers carry none) and pays for the same copy.
  core::Event upload_ints(const core::Buffer& dst, const std::vector<std::int32_t>& values, std::uint64_t bytes);
  /// Uploads an MoE layer's slot table (forward) and regroup indices.
  void upload_tables(const MoeExchange& x, bool with_slot_table);

  /// Allocates one layer's activation block of `tokens` tokens (see carve_activations) and pushes its views.
  void keep_activations(int kind, std::int64_t tokens, std::int64_t rows_computed, std::int64_t rows_returned);
  /// Full recompute: a layer block's kept part is its output alone; the rest is allocated around each run of the
  /// layer's forward (recomputed_views) and freed after it (shed_layer_rest).
  ActivationViews recomputed_views(int layer, int moe_index, const ActivationViews& kept);
  void shed_layer_rest();
  bool recompute() const { return cfg_.recompute == Recompute::full; }
  /// Selective recompute: the parts layers do not keep (none otherwise).
  RecomputeModules redo() const {
    return cfg_.recompute == Recompute::selective && !generating() ? cfg_.recompute_modules : RecomputeModules{};
  }
  std::pair<std::int64_t, std::int64_t> layer_rows(int moe) const;

  // ---- generation.cpp ----
  bool generating() const { return plan_.generation.enabled; }
  void generate();
  /// One forward pass: the prefill (pass 0) or a decode step; issues the sampling of the next tokens.
  void generation_pass(int pass);
  void load_prompts();
  /// Appends this pass's K and V rows to layer `layer`'s cache and attends over the cached context.
  void cached_attention(int layer, const core::Buffer& q, const core::Buffer& k, const core::Buffer& v,
                        const core::Buffer& out);
  /// The next token of every sequence: final layernorm and tied logits of the last position (views `a`), argmax.
  void sample(const core::Buffer& x_last, const ActivationViews& a, int pass);

  // ---- sequence_parallel.cpp ----
  /// Attention and the dense FFN run on every token of the tensor-parallel group: inside this scope tokens_ counts
  /// them (the group's shards one after another), outside it this rank's shard.
  class GroupTokens {
   public:
    explicit GroupTokens(RankTrainer& t) : t_(t), saved_(t.tokens_) { t.tokens_ *= t.layout_.tp; }
    ~GroupTokens() { t_.tokens_ = saved_; }
    GroupTokens(const GroupTokens&) = delete;
    GroupTokens& operator=(const GroupTokens&) = delete;

   private:
    RankTrainer& t_;
    std::int64_t saved_;
  };
  bool tensor_parallel() const { return layout_.tp > 1; }
  /// All-gathers this rank's token shard `local` ([tokens][hidden]) into `group` (every shard of the group, in rank
  /// order); returns `group`. The compute stream waits for it.
  core::Buffer gather_tokens(const core::Buffer& local, const core::Buffer& group);
  /// Reduce-scatters the group's partial sums `partial` ([tokens x tp][hidden]) into this rank's shard `local`.
  void scatter_tokens(const core::Buffer& partial, const core::Buffer& local);
  /// Sums over the tensor-parallel group the gradients of unit `unit`'s tensors that every member holds whole.
  void sum_replicated_grads(int unit);

  // ---- dense_layers.cpp ----
  /// One FFN of width `width` on some rows: x -> W1 -> pre -> activation -> post -> W2 -> y (g1, g2: gradients).
  struct FfnViews {
    core::Buffer x, w1, w2, pre, post, y, g1, g2;
    std::int64_t width = 0;
  };
  void ffn_forward(const FfnViews& f, std::int64_t rows, bool expert_names);
  void ffn_backward(const FfnViews& f, const core::Buffer& dy, const core::Buffer& d_pre, const core::Buffer& d_post,
                    const core::Buffer& dx, std::int64_t rows, bool expert_names);
  void ffn_activation(const core::Buffer& pre, const core::Buffer& post, std::int64_t rows, std::int64_t f,
                      bool expert);
  void ffn_activation_backward(const core::Buffer& pre, const core::Buffer& d_post, const core::Buffer& d_pre,
                               std::int64_t rows, std::int64_t f, bool expert);
  /// LayerNorm or RMSNorm with the gain (and bias) at tensor `gain` of `unit`.
  void norm_forward(const core::Buffer& x, int unit, int gain, const core::Buffer& y, const core::Buffer& mean,
                    const core::Buffer& rstd, std::int64_t rows, const char* name);
  void norm_backward(const core::Buffer& x, int unit, int gain, const core::Buffer& mean, const core::Buffer& rstd,
                     const core::Buffer& dy, const core::Buffer& dx, std::int64_t rows, const char* name);
  /// Q, K and V as attention reads them ([n][q], [n][k], [n][v] widths of the model).
  struct Qkv {
    core::Buffer q, k, v;
  };
  /// The projections of a.ln1 into Q, K, V (GQA/MHA: GEMMs, QK norms, rotation; MLA: mla_attention.cpp), and their
  /// backward from the gradients of Q, K, V into ws.dn.
  Qkv project_qkv(const ActivationViews& a, int unit);
  void project_qkv_backward(const ActivationViews& a, int unit, const Qkv& d);
  Qkv mla_project(const ActivationViews& a, int unit);
  /// MLA: the latents' up-projections into a.qkv (and a.k_nope); `again` in the backward of selective recompute.
  void mla_up_projections(const ActivationViews& a, int unit, bool again);
  void mla_project_backward(const ActivationViews& a, int unit, const Qkv& d);
  /// The Q, K, V a forward pass left for the backward (after norms and rotation).
  Qkv attention_inputs(const ActivationViews& a) const;
  core::AttentionOp attention_op(std::int64_t batch, std::int64_t len, const Qkv& x, const core::Buffer& out) const;

  // ---- context_parallel.cpp ----
  bool context_parallel() const { return layout_.cp > 1; }
  /// Positions per zigzag block (seq_len / 2 cp), and which block of every sequence member `member`'s half `half`
  /// (0: its earlier, 1: its later) holds.
  std::int64_t cp_half() const;
  int cp_block(int member, int half) const;
  /// The attention of this rank's zigzag half `half` (its queries and outputs) over the gathered keys and values.
  core::AttentionOp context_half_op(const Qkv& x, const core::Buffer& ctx, int half) const;
  /// Attention of this rank's two zigzag blocks of every sequence (x: their Q, K, V; tokens_ = their tokens), each
  /// over its sequence up to the block's end: K and V gathered over the context-parallel group, position-major.
  void context_attention(const Qkv& x, const core::Buffer& ctx);
  /// Its backward: d.q of the blocks, and d.k, d.v of the blocks summed over the group's queries (reduce-scatter).
  void context_attention_backward(const Qkv& x, const core::Buffer& ctx, const core::Buffer& dctx, const Qkv& d);
  /// All-gathers the group's rows `mine` (two blocks of [B][seq / 2 cp][width]) into `landing` and lays them out
  /// position-major in `whole` ([seq][B][width]); the compute stream waits for the gather.
  void gather_sequence(const core::Buffer& mine, const core::Buffer& landing, const core::Buffer& whole,
                       std::int64_t width);
  /// The reverse: `whole` back to chunk order in `landing`, reduce-scattered into `mine`.
  void scatter_sequence(const core::Buffer& whole, const core::Buffer& landing, const core::Buffer& mine,
                        std::int64_t width);
  /// Q and K as attention reads them: the projections, or (QK norms) their per-head RMSNorms.
  std::pair<core::Buffer, core::Buffer> normed_qk(const ActivationViews& a, int unit);
  /// Rows [row, row + rows) of this pass, whose positions are first + (offset in the run) mod span: one run, or one
  /// per zigzag half of context parallelism.
  struct PositionRun {
    std::int64_t row, rows, span, first;
  };
  std::vector<PositionRun> position_runs() const;
  /// Rotary positions in place on this pass's rows of `heads` heads (ops::rope's D, stride and offset), run by run.
  void rope(const core::Buffer& x, std::int64_t heads, std::int64_t d, bool inverse, std::int64_t stride = 0,
            std::int64_t offset = 0);
  /// Rotary positions on this pass's Q and K (no-op with learned positions); `inverse` for their gradients.
  void rotate(const core::Buffer& q, const core::Buffer& k, bool inverse);
  /// The embedding unit's tensor the logits multiply with: the token table (tied) or the output layer.
  int output_layer() const;
  void attention_forward(const core::Buffer& x_in, ActivationViews& a);
  void attention_backward(const core::Buffer& x_in, ActivationViews& a, int unit);
  void dense_ffn_forward(ActivationViews& a);
  void dense_ffn_backward(ActivationViews& a, int unit);
  void embedding_forward();
  void embedding_backward();
  void logits_forward(const core::Buffer& x_last);
  void logits_backward(const core::Buffer& x_last);
  void partitioned_embedding_forward();
  void partitioned_embedding_backward();
  void partitioned_logits(bool backward);
  /// Positions of the tokens (t mod seq_len), uploaded once for the lookup's position rows.
  void upload_partition_positions();
  /// Bytes to or from each rank of the current micro-batch at `per_token` bytes per token of that rank.
  std::vector<std::uint64_t> per_peer_bytes(double per_token) const;
  /// The all-gather of chunk `c` of the table's rows from their column owners.
  core::Event gather_table_chunk(std::int64_t c);

  // ---- moe_layer.cpp ----
  void moe_forward(int moe_layer, ActivationViews& a);
  void moe_backward(int moe_layer, ActivationViews& a, int unit);
  /// The layer's row counts: from the gate (real runtimes) or the routing plan (simulator).
  MoeExchange exchange_for(int moe_layer, const ActivationViews& a);
  /// The all-to-all of chunk `c`: rows from the send layout to the experts (to_experts) or back.
  core::Event chunk_all_to_all(const MoeExchange& x, int c, bool to_experts, const core::Buffer& send_side,
                               const core::Buffer& expert_side);
  /// Expert FFN of chunk `c`, forward or backward, on the expert-major rows of the chunk.
  void expert_ffn_forward(int moe_layer, const MoeExchange& x, const ActivationViews& a, int c);
  void expert_ffn_backward(int moe_layer, const MoeExchange& x, const ActivationViews& a, int c);

  // ---- deepep_dispatch.cpp (the DeepEP dispatcher) ----
  /// Bytes of this rank's tokens that reach each node of the expert-parallel group (ascending), each token once per
  /// node, estimated from the rows it sends to each peer (`send`, bytes of `row_bytes` rows) in one of `chunks`.
  core::NodeTraffic deepep_node_traffic(const std::vector<std::uint64_t>& send, double row_bytes, int chunks,
                                        bool combine) const;

  // ---- gather_dispatch.cpp (the all-gather dispatcher) ----
  bool gathers_tokens() const { return policy_.dispatcher == Dispatcher::all_gather; }
  /// Gathers the group's slots, weights and tokens (the compute stream waits for them); the rows of this rank's
  /// experts per member (from the gathered slots on real runtimes, the routing plan in the simulator) and their slot
  /// table, uploaded into st_.index.
  MoeExchange gathered_exchange(int moe_layer, const ActivationViews& a);
  /// All-gather over the expert-parallel group of this rank's `width`-wide rows of `mine` into `group`, on kComm.
  core::Event gather_group(const core::Buffer& mine, const core::Buffer& group, std::int64_t width,
                           double bytes_per_elem);
  /// Reduce-scatter over the group of `group`'s rows; this rank's sum lands in `mine`.
  core::Event scatter_group(const core::Buffer& group, const core::Buffer& mine, std::int64_t width);
  void upload_gathered_table(const MoeExchange& x);
  /// My experts' rows (a.xin, expert-major) from the gathered tokens.
  void gathered_permute(const MoeExchange& x, const ActivationViews& a);
  /// The experts' outputs (a.ret) weighted into a partial output of every gathered token, summed into a.out.
  void gathered_combine(const MoeExchange& x, ActivationViews& a);
  /// Backward: uploads the layer's slot table again and gathers the output gradient and the weights again.
  void gather_output_grads(const MoeExchange& x, const ActivationViews& a);
  /// Once they are there: the rows' gradients (ws.rows_a) and the weights' partial gradients.
  void gathered_combine_backward(const MoeExchange& x, const ActivationViews& a);
  core::Event group_ready_;  // the group's gathered tokens (forward) or output gradients (backward)
  /// The rows' input gradients (st_.recv) into the gathered tokens' and reduce-scattered into ws.dn, with the
  /// weights' gradients into ws.dweights.
  void gathered_permute_backward(const MoeExchange& x);

  // ---- grad_sync.cpp ----
  /// Called when the backward of `unit` is complete (its gradients written): issues the buckets it completes.
  /// The gradient buffer of tensor `t` of `unit` (zeroed before backward writes into it; kernels accumulate).
  core::Buffer grad(int unit, int t);
  /// ddp and the distributed optimizer accumulate every micro-batch's gradients in one full buffer.
  bool full_grads() const {
    return policy_.dense == DenseSharding::ddp || policy_.dense == DenseSharding::distributed;
  }
  void begin_backward_grads();
  /// Zeroes the bucket buffers the unit's backward is about to write (after their previous reduction).
  void open_unit_grads(int unit);
  void unit_grads_done(int unit);
  /// A tied token table split by pipeline stages: sums the first and the last stage's gradients of their copies.
  void sum_shared_table_grads();
  void expert_grads_done(int moe_layer);
  void gather_updated_params(core::Event after);
  void reduce_bucket(std::size_t b);

  // ---- replica_sync.cpp ----
  bool replicas_on() const { return layout_.replica_slots > 0 && st_.held_moe_layers > 0; }
  /// The spare expert slots' contents for step `step`: the routing plan's in the simulator (it routed the step
  /// with them), the planner's on real runtimes (chosen from the gate's counts of the steps before).
  void begin_step_replicas(int step);
  /// The exchange of one MoE layer with replicas, from every member's token counts per expert ([E] own, then
  /// [member][E]): how this rank splits its rows over the copies and what each of its slots receives.
  MoeExchange replicated_exchange(int moe_layer, const std::vector<std::int32_t>& counts, std::int64_t capacity) const;
  /// Last micro-batch: every copy's gradient of MoE layer `moe` is added into its owner's.
  void reduce_replica_grads(int moe);
  /// Before the optimizer: the step's tokens per expert, summed over the stage (every rank then chooses the same
  /// copies for the next step).
  void measure_expert_load(int step);
  /// After the optimizer: owners send their updated experts to the next step's copies.
  void refresh_replicas(int step);
  /// Generation, before pass `pass`: the pass's copies; owners send an expert only to the slots whose content
  /// changed since `held` (weights do not change while generating), and `held` becomes the pass's maps.
  void load_replicas(int pass, std::vector<ReplicaMap>& held);
  /// Expert `slot` of MoE layer `moe` (own experts first, then the spare slots): its values or gradient.
  core::Buffer expert_slot_view(int moe, int slot, bool grad) const;
  int replica_tag(int moe, int member, int slot, bool weights) const;

  /// The local experts of an MoE layer that receive rows in this micro-batch (from the exchange).
  static std::vector<bool> experts_used(const MoeExchange& x);
  /// The order in which a micro-batch uses the MoE layers' experts: forward, then backward.
  std::vector<int> expert_pass_order() const;

  const TrainingPlan& plan_;
  const TrainingConfig& cfg_;
  const core::ModelConfig model_;  // this rank's dense shapes: the model's, or its tensor-parallel shard (rank_model)
  const TrainingPolicy& policy_;
  const Layout& layout_;
  core::Runtime& rt_;
  RankCounters& counters_;
  const int rank_;   // global (the runtime's)
  const int local_;  // inside the pipeline stage: the routing plan's index
  const int stage_;
  const core::Dtype dtype_;
  const double a_;  // bytes per activation / parameter element
  core::Dtype gemm_dtype_;  // FP8 with fp8_gemm (outside ModelDtypeGemms scopes), else dtype_
  /// Bytes per element of rows sent to the experts (dispatch, and the gradients sent to them): 1 with fp8_dispatch.
  double dispatch_bytes_per_elem() const { return model_.fp8_dispatch ? 1.0 : a_; }
  core::Group world_, ep_group_, edp_group_, node_group_, rail_group_, tp_group_, cp_group_, embedding_group_;
  core::CollectiveAlgo a2a_algo_;
  RankState st_;      // persistent allocations and their views
  bool real_ = false;  // buffers carry data: token counts come from the gate
  std::vector<std::uint64_t> weight_ids_;  // allocations of parameter values (is_weight)
  core::Buffer last_quantized_;            // the operand the last kernel (an FP8 GEMM) read quantized
  bool operand_in_fp8_ = false;            // the GEMMs being issued read rows that arrived in FP8

  // Current micro-batch.
  const MicroBatch* mb_ = nullptr;
  int step_ = 0, micro_ = 0;
  std::int64_t tokens_ = 0;
  std::vector<core::Buffer> act_blobs_;  // stack: allocated in forward, freed in backward
  std::vector<ActivationViews> act_views_;
  std::vector<MoeExchange> exchanges_;   // per MoE layer, from forward, reused by backward
  core::Event last_compute_;
  core::Event last_upload_;  // the staging buffer is free once this copy has run
  core::Event ids_ready_;    // this micro-batch's token ids are on the device

  // Pipeline: the passes whose forward has run and backward has not.
  struct InFlight {
    std::vector<core::Buffer> blobs;
    std::vector<ActivationViews> views;
    std::vector<MoeExchange> exchanges;
  };
  std::map<int, InFlight> in_flight_;
  core::Buffer layer_rest_;  // full recompute: the running layer's activations besides its output

  // Embedding partition: the shard's last update, and when each gathered chunk and chunk gradient is free again.
  core::Event shard_ready_;
  core::Event chunk_free_[2], chunk_grad_free_[2];

  // ZeRO-3 gathers: the unit sequence of this micro-batch, gather events and buffer-release events.
  std::vector<int> units_;
  std::vector<core::Event> gathered_, released_;
  int unit_pos_ = -1;
  core::Buffer unit_params_;  // the current unit's parameters (gathered copy or the replicated blob)
  int current_unit_ = -1;

  // Gradient buckets: which are open (buffer zeroed and being written) and the latest reduction.
  bool step_grads_open_ = false;  // the step's gradients are zeroed and accumulating
  std::vector<bool> bucket_open_;
  std::vector<core::Event> buffer_free_;  // per physical bucket buffer
  core::Event emb_grad_free_;             // the embedding gradient's last reduction
  core::Event last_reduce_;

  // Expert replicas: this step's maps and holders per MoE layer, the planner of real runs, when each layer's copies
  // have their weights, and the last gradient added into an owner's.
  std::vector<ReplicaMap> replicas_;
  std::vector<std::vector<std::vector<std::pair<int, int>>>> replica_holders_;
  std::unique_ptr<ReplicaPlanner> replica_planner_;
  std::vector<core::Event> replica_ready_;
  core::Event replica_reduced_;

  // Offload: where the experts live and how they reach the GPU (null when they stay resident).
  std::unique_ptr<ExpertResidency> residency_;
};

}  // namespace moesys::policies::training
