// Pipeline parallelism: the stages of a run are contiguous blocks of ranks (layout.hpp), each running one or (with
// virtual stages) several model chunks of contiguous layers; the rank with the same local index in the stage of the
// next model chunk takes a chunk's output as its input. A step runs its micro-batches in (interleaved) 1F1B order
// (pipeline_schedule.hpp), so a stage holds the activations of several passes at once: a pass's are moved aside
// after its forward and back before its backward.
// Activations go forward and gradients backward as point-to-point messages, each kind and direction on its own
// stream (core/runtime.hpp: each talks to one peer, in the same order on both sides). A received input lands in the
// pass's first activation block, and an output is sent from the block that keeps it until its backward. Gradients
// travel through buffers of their own, allocated per message and freed once it is issued (the runtimes order a free
// after the work issued before it): the compute stream copies a received gradient into ws.dx and ws.dx into the one
// to send, so that no stream waits for a peer to take a message before it may write ws.dx again (such a wait, with
// passes of two stages interleaved, closes a cycle).
#include "policies/training/pipeline_schedule.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

using core::streams::kCompute;
using core::streams::kPipeRecvAct;
using core::streams::kPipeRecvGrad;
using core::streams::kPipeSendAct;
using core::streams::kPipeSendGrad;

void RankTrainer::run_passes(int step) {
  const int micro_batches = plan_.routing.micro_batches, chunks = layout_.vpp;
  for (const PipelinePass& pass : interleaved_1f1b(layout_.pp, stage_, micro_batches, chunks)) {
    const int key = pass.micro * chunks + pass.chunk;
    if (pass.forward) {
      if (residency_) residency_->begin_pass(expert_pass_order(), pass.micro + 1 == micro_batches);
      forward(step, pass.micro, pass.chunk);
      stash_pass(key);
    } else {
      restore_pass(key);
      backward(step, pass.micro, pass.chunk);
    }
  }
}

void RankTrainer::stash_pass(int key) {
  InFlight& f = in_flight_[key];
  f.blobs = std::move(act_blobs_);
  f.views = std::move(act_views_);
  f.exchanges = std::move(exchanges_);  // the next pass fills the entries of its own MoE layers
  exchanges_.assign(f.exchanges.size(), MoeExchange{});
  act_blobs_.clear();
  act_views_.clear();
}

void RankTrainer::restore_pass(int key) {
  const auto it = in_flight_.find(key);
  act_blobs_ = std::move(it->second.blobs);
  act_views_ = std::move(it->second.views);
  exchanges_ = std::move(it->second.exchanges);
  in_flight_.erase(it);
}

int RankTrainer::pipe_tag(int boundary, bool grad) const {
  // Unique per step, micro-batch, boundary and direction; kept under MPI's smallest guaranteed tag bound (32767).
  const int per_micro = layout_.chunks();
  return (((step_ * plan_.routing.micro_batches + micro_) * per_micro + boundary) * 2 + (grad ? 1 : 0)) % 32000;
}

void RankTrainer::receive_chunk_input(int chunk, const core::Buffer& x) {
  const int k = model_chunk(chunk);
  const std::uint64_t bytes = rows_bytes(tokens_, model_.hidden, a_);
  rt_.stream_wait(kCompute, rt_.recv(kPipeRecvAct, rank_of_chunk(k - 1), x, bytes, pipe_tag(k - 1, false)));
}

void RankTrainer::send_chunk_output(int chunk, const core::Buffer& y) {
  const int k = model_chunk(chunk);
  rt_.stream_wait(kPipeSendAct, last_compute_);
  rt_.send(kPipeSendAct, rank_of_chunk(k + 1), y, rows_bytes(tokens_, model_.hidden, a_), pipe_tag(k, false));
}

void RankTrainer::receive_output_grad(int chunk) {
  const int k = model_chunk(chunk);
  const std::uint64_t bytes = rows_bytes(tokens_, model_.hidden, a_);
  core::Buffer message = rt_.alloc(core::Tier::hbm, bytes, "buffers");
  rt_.stream_wait(kCompute, rt_.recv(kPipeRecvGrad, rank_of_chunk(k + 1), message, bytes, pipe_tag(k, true)));
  last_compute_ = rt_.copy(kCompute, st_.ws.dx.slice(0, bytes), message, bytes);
  rt_.free(message);
}

void RankTrainer::send_input_grad(int chunk) {
  const int k = model_chunk(chunk);
  const std::uint64_t bytes = rows_bytes(tokens_, model_.hidden, a_);
  core::Buffer message = rt_.alloc(core::Tier::hbm, bytes, "buffers");
  last_compute_ = rt_.copy(kCompute, message, st_.ws.dx.slice(0, bytes), bytes);
  rt_.stream_wait(kPipeSendGrad, last_compute_);
  rt_.send(kPipeSendGrad, rank_of_chunk(k - 1), message, bytes, pipe_tag(k - 1, true));
  rt_.free(message);
}

}  // namespace moesys::policies::training
