#include "policies/inference/program.hpp"

#include <string>

namespace moesys::policies::inference {

PreparedRun prepare_run(const InferenceConfig& c, const core::ClusterSpec& spec, const FieldNamer& names) {
  validate(c, names, spec.total_gpus());
  const auto policy = make_policy(c.policy);
  PreparedRun run{c, weight_sizes(c), make_routing(c, names.file, names.path("workload")), {}};
  run.plan = plan_memory(c, run.sizes, *policy, run.routing.max_expert_tokens, spec);
  return run;
}

namespace {

using core::streams::kComm;
using core::streams::kCompute;

// Issues the kernels of one rank's generation. The host never blocks except at the end of a pass, so copies,
// collectives and kernels overlap exactly as their streams and events allow.
class Generator {
 public:
  Generator(const PreparedRun& run, core::Runtime& rt)
      : run_(run),
        c_(run.config),
        m_(run.config.model),
        rt_(rt),
        world_(core::Group::world(run.config.gpus)),
        e_(static_cast<std::uint64_t>(m_.param_bytes_per_param())),
        h_(m_.hidden) {}

  RankRecord run() {
    RankRecord rec;
    policy_ = make_policy(c_.policy);
    policy_->setup(rt_, run_.sizes, c_, c_.forward_passes());
    core::Buffer act = rt_.alloc(core::Tier::hbm, run_.plan.activation_bytes, "activations");
    core::Buffer kv = rt_.alloc(core::Tier::hbm, run_.plan.kv_cache_bytes, "kv cache");
    for (int pass = 0; pass < c_.forward_passes(); ++pass) {
      rt_.begin_phase(pass == 0 ? "prefill" : "decode " + std::to_string(pass));
      rt_.wait(forward(pass));
      rec.pass_end_s.push_back(rt_.now_s());
      rt_.end_phase();
    }
    rt_.synchronize();
    policy_->teardown(rt_);
    rt_.free(kv);
    rt_.free(act);
    rec.h2d_bytes = policy_->h2d_bytes();
    return rec;
  }

 private:
  // One forward pass: the prefill reads the whole prompt (q = prompt tokens per sequence), a decode step one
  // new token per sequence attending to everything before it. Returns the event of the sampled tokens.
  core::Event forward(int pass) {
    const std::int64_t q = pass == 0 ? c_.prompt_tokens : 1;
    const std::int64_t ctx = pass == 0 ? c_.prompt_tokens : c_.prompt_tokens + pass;
    const std::int64_t tokens = c_.batch * q;
    elementwise(2 * tokens * h_, tokens * h_, 0, "embedding");  // token + position rows
    for (int layer = 0; layer < m_.layers; ++layer) decoder_layer(pass, layer, q, ctx);
    const std::int64_t b = c_.batch;  // only the last position of each sequence needs logits
    elementwise(b * h_, b * h_, 8.0 * b * h_, "final layernorm");
    gemm(b, m_.vocab, h_, 1, "logits");
    return elementwise(b * m_.vocab * 2, b * 2, 5.0 * b * m_.vocab, "sample");  // fp32 logits read as 2 x fp16
  }

  void decoder_layer(int pass, int layer, std::int64_t q, std::int64_t ctx) {
    const std::string at = "L" + std::to_string(layer) + " ";
    const std::int64_t tokens = c_.batch * q;
    const LayerReady ready = policy_->acquire(rt_, pass, layer);
    rt_.stream_wait(kCompute, ready.dense);
    elementwise(tokens * h_, tokens * h_, 8.0 * tokens * h_, at + "layernorm");
    gemm(tokens, 3 * h_, h_, 1, at + "qkv");
    elementwise(2 * tokens * h_, 2 * tokens * h_, 0, at + "kv append");
    core::AttentionOp attn;
    attn.batch = c_.batch;
    attn.heads = m_.heads;
    attn.seq_q = q;
    attn.seq_kv = ctx;
    attn.head_dim = m_.head_dim();
    attn.causal = q > 1;
    attn.dtype = m_.dtype;
    rt_.compute(kCompute, attn, at + "attention");
    gemm(tokens, h_, h_, 1, at + "out proj");
    elementwise(2 * tokens * h_, 2 * tokens * h_, 10.0 * tokens * h_, at + "residual+layernorm");
    const int moe = run_.sizes.moe_index[static_cast<std::size_t>(layer)];
    core::Event done;
    if (moe < 0) {
      done = ffn(tokens, 1, tokens, at + "ffn");
    } else {
      done = moe_ffn(pass, moe, tokens, ready.experts, at);
    }
    policy_->release(rt_, pass, layer, done);
  }

  // Gate, dispatch to the experts (all-to-all across ranks), the local experts, and the return trip.
  core::Event moe_ffn(int pass, int moe, std::int64_t tokens, core::Event experts_ready, const std::string& at) {
    const core::RoutingMatrix& route = run_.routing.at(pass, moe);
    const int rank = rt_.rank(), per_rank = c_.experts_per_gpu();
    gemm(tokens, m_.experts, h_, 1, at + "gate");
    core::GateOp gate;
    gate.tokens = tokens;
    gate.experts = m_.experts;
    gate.top_k = m_.top_k;
    rt_.compute(kCompute, gate, at + "top-k");
    const std::int64_t sent = route.rank_total(rank);  // tokens x top_k copies, one per chosen expert
    const core::Event permuted = elementwise(sent * h_, sent * h_, 0, at + "permute");

    std::vector<std::uint64_t> to(static_cast<std::size_t>(c_.gpus)), from(to.size());
    for (int peer = 0; peer < c_.gpus; ++peer) {
      std::int64_t out = 0, in = 0;
      for (int e = peer * per_rank; e < (peer + 1) * per_rank; ++e) out += route.at(rank, e);
      for (int e = rank * per_rank; e < (rank + 1) * per_rank; ++e) in += route.at(peer, e);
      to[static_cast<std::size_t>(peer)] = static_cast<std::uint64_t>(out) * static_cast<std::uint64_t>(h_) * e_;
      from[static_cast<std::size_t>(peer)] = static_cast<std::uint64_t>(in) * static_cast<std::uint64_t>(h_) * e_;
    }
    if (c_.gpus > 1) {
      rt_.stream_wait(kComm, permuted);
      rt_.stream_wait(kCompute, rt_.all_to_all(kComm, world_, {}, to, {}, from, c_.all_to_all));
    }

    // A grouped GEMM over the local experts that received tokens: every such expert's weights are read once
    // and the flops are those of the tokens received (mean tokens per active expert).
    std::int64_t received = 0;
    int active = 0;
    for (int e = rank * per_rank; e < (rank + 1) * per_rank; ++e) {
      received += route.expert_load(e);
      active += route.expert_load(e) > 0 ? 1 : 0;
    }
    core::Event done = permuted;
    if (received > 0) {
      rt_.stream_wait(kCompute, experts_ready);
      done = ffn(received, active, (received + active - 1) / active, at + "experts");
    }
    if (c_.gpus > 1) {
      rt_.stream_wait(kComm, done);
      rt_.stream_wait(kCompute, rt_.all_to_all(kComm, world_, {}, from, {}, to, c_.all_to_all));
    }
    elementwise(sent * h_ + tokens * h_, tokens * h_, 2.0 * sent * h_, at + "combine");
    return done;
  }

  // Two GEMMs with the activation between them; `groups` weight sets of `rows` tokens each (a grouped GEMM).
  core::Event ffn(std::int64_t tokens, std::int64_t groups, std::int64_t rows, const std::string& name) {
    const std::int64_t f = m_.ffn_hidden();
    gemm(rows, f, h_, groups, name + " fc1");
    elementwise(tokens * f, tokens * f, 8.0 * tokens * f, name + " gelu");
    return gemm(rows, h_, f, groups, name + " fc2");
  }

  core::Event gemm(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t batch, const std::string& name) {
    core::GemmOp op;
    op.m = m;
    op.n = n;
    op.k = k;
    op.batch = batch;
    op.dtype = m_.dtype;
    return rt_.compute(kCompute, op, name);
  }

  // Element counts; bytes follow the model's dtype.
  core::Event elementwise(std::int64_t read, std::int64_t written, double flop, const std::string& name) {
    core::ElementwiseOp op;
    op.bytes_read = static_cast<std::uint64_t>(read) * e_;
    op.bytes_written = static_cast<std::uint64_t>(written) * e_;
    op.flop = flop;
    return rt_.compute(kCompute, op, name);
  }

  const PreparedRun& run_;
  const InferenceConfig& c_;
  const core::ModelConfig& m_;
  core::Runtime& rt_;
  core::Group world_;
  std::uint64_t e_;
  std::int64_t h_;
  std::unique_ptr<WeightPolicy> policy_;
};

}  // namespace

std::function<void(core::Runtime&)> generation_program(const PreparedRun& run, std::vector<RankRecord>& records) {
  return [&run, &records](core::Runtime& rt) {
    records.at(static_cast<std::size_t>(rt.rank())) = Generator(run, rt).run();
  };
}

}  // namespace moesys::policies::inference
