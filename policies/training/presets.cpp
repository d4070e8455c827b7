// The named presets. Every value below is either the baseline system's documented default or the mechanism as
// the MoESys paper describes it; none is chosen to make an experiment match the paper.
#include "core/units.hpp"
#include "policies/training/policy.hpp"

namespace moesys::policies::training {
namespace {

TrainingPolicy deepspeed() {
  TrainingPolicy p;
  p.gate = Gate::gshard;               // top-2 with capacity factor and token drop (sharded_moe.py)
  p.dispatch = Dispatch::padded;       // einsum dispatch of an [experts, capacity, hidden] tensor, then _AllToAll
  p.all_to_all = AllToAll::flat;       // one all-to-all per direction over the expert-parallel group
  p.overlap_chunks = 1;                // no overlap of the all-to-all with expert compute
  p.dense = DenseSharding::zero2;      // ZeRO stage 2
  p.bucket_bytes = 5e8 * 2;            // reduce_bucket_size default: 5e8 elements (fp16)
  p.grad_overlap = false;              // overlap_comm defaults to false for stage 2
  p.offload = Offload::none;           // ZeRO-Offload / Infinity are opt-in ("offload": "cpu" | "nvme")
  p.prefetch = Prefetch::all_experts;  // its parameter prefetch follows the module trace, not the routing
  p.placement = Placement::static_blocks;
  p.embedding = Embedding::dense;
  return p;
}

TrainingPolicy moesys() {
  TrainingPolicy p;
  p.gate = Gate::gshard;          // the authors' open code: GShard top-2, capacity factor 1.2
  p.dispatch = Dispatch::counts;  // global_scatter / global_gather: token counts first, then exact rows
  p.all_to_all = AllToAll::hierarchical;
  // Dispatch, expert FFN and combine pipelined in chunks on separate streams. Four chunks: enough to hide most of
  // one stage behind another, few enough that every chunk's GEMM stays large (a design default, not a fit).
  p.overlap_chunks = 4;
  p.dense = DenseSharding::zero3;      // horizontal prefetch: NVLink all-gather of the next layer's shards
  p.bucket_bytes = 256.0 * core::kMB;  // fusion buffers "up to ~256 MB"
  p.grad_overlap = true;
  p.offload = Offload::none;      // hierarchical storage is used when a model does not fit ("offload": "nvme")
  p.prefetch = Prefetch::routed;  // vertical prefetch from the routing through the LFU cache
  p.placement = Placement::elastic;
  // The column partition pays off where the table is replicated (ddp / zero2) and large; with zero3 the table is
  // already sharded in the node and gathered over NVLink, so the preset leaves it to the dense policy.
  p.embedding = Embedding::dense;
  return p;
}

TrainingPolicy static_multitask() {
  TrainingPolicy p = deepspeed();
  // Plain data parallelism as in PyTorch DDP: replicated parameters and optimizer, all-reduce of 25 MB buckets
  // overlapped with backward (DDP's defaults), one task per contiguous block of GPUs.
  p.dense = DenseSharding::ddp;
  p.bucket_bytes = 25.0 * core::kMiB;
  p.grad_overlap = true;
  p.placement = Placement::static_blocks;
  return p;
}

TrainingPolicy megatron() {
  TrainingPolicy p;
  p.gate = Gate::dropless;              // Megatron-Core's MoE router keeps every assignment by default
  p.dispatch = Dispatch::counts;        // the all-to-all token dispatcher: exact rows after a count exchange
  p.all_to_all = AllToAll::flat;        // one all-to-all over the expert-parallel group per direction
  p.overlap_chunks = 1;                 // expert-parallel communication overlap is opt-in
  p.dense = DenseSharding::distributed;  // --use-distributed-optimizer
  p.bucket_bytes = 40e6 * 2;            // DDP bucket default: 40M parameters (bf16 gradients)
  p.grad_overlap = true;                // --overlap-grad-reduce
  p.offload = Offload::none;
  p.prefetch = Prefetch::all_experts;
  p.placement = Placement::static_blocks;
  p.embedding = Embedding::dense;
  return p;
}

const PresetRegistrar kDeepSpeed("deepspeed",
                                 "DeepSpeed-MoE: GShard gate with padded dispatch, flat all-to-all without overlap, "
                                 "ZeRO-2 with its default 1 GB buckets and no communication overlap",
                                 deepspeed());
const PresetRegistrar kMoesys("moesys",
                              "MoESys: counted dispatch, hierarchical all-to-all pipelined with expert compute, "
                              "ZeRO-3 in the node with NVLink prefetch, 256 MB fused overlapped buckets, 2D "
                              "prefetch with an LFU cache when offloading, elastic multi-task placement",
                              moesys());
const PresetRegistrar kMegatron("megatron",
                                "Megatron-Core MoE: dropless router with the all-to-all dispatcher, distributed "
                                "optimizer with 40M-parameter buckets reduced while backward runs",
                                megatron());
const PresetRegistrar kStaticMultitask("static-multitask",
                                       "one task per GPU block with plain data parallelism (DDP), the multi-task "
                                       "baseline",
                                       static_multitask());

}  // namespace
}  // namespace moesys::policies::training
