// Pipeline parallelism: the stages of a run are contiguous blocks of ranks (layout.hpp), each running a contiguous
// range of layers; the rank with the same local index in the next stage takes this rank's output as its input. A
// step runs its micro-batches in 1F1B order (pipeline_schedule.hpp), so a stage holds the activations of several
// micro-batches at once: the current one's are moved aside after its forward and back before its backward.
// Activations go forward and gradients backward as point-to-point messages on their own send and receive streams.
// A received input lands in the micro-batch's first activation block; a received gradient lands in ws.dx once the
// kernels that still read ws.dx and the previous gradient sent from it are done (Megatron-LM's non-overlapped
// exchange: the receiving stage waits for it), and the next backward writes ws.dx only after that send has left.
#include "policies/training/pipeline_schedule.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

using core::streams::kCompute;
using core::streams::kPipeRecv;
using core::streams::kPipeSend;

void RankTrainer::run_passes(int step) {
  const int micro_batches = plan_.routing.micro_batches;
  for (const PipelinePass& pass : one_f_one_b(layout_.pp, stage_, micro_batches)) {
    if (pass.forward) {
      if (residency_) residency_->begin_pass(expert_pass_order(), pass.micro + 1 == micro_batches);
      forward(step, pass.micro);
      stash_micro_batch(pass.micro);
    } else {
      restore_micro_batch(pass.micro);
      backward(step, pass.micro);
    }
  }
}

void RankTrainer::stash_micro_batch(int micro) {
  InFlight& f = in_flight_[micro];
  f.blobs = std::move(act_blobs_);
  f.views = std::move(act_views_);
  f.exchanges = exchanges_;
  act_blobs_.clear();
  act_views_.clear();
}

void RankTrainer::restore_micro_batch(int micro) {
  const auto it = in_flight_.find(micro);
  act_blobs_ = std::move(it->second.blobs);
  act_views_ = std::move(it->second.views);
  exchanges_ = std::move(it->second.exchanges);
  in_flight_.erase(it);
}

int RankTrainer::pipe_tag(bool grad) const {
  // Unique per step, micro-batch and direction; kept under MPI's smallest guaranteed tag bound (32767).
  return ((step_ * plan_.routing.micro_batches + micro_) * 2 + (grad ? 1 : 0)) % 32000;
}

namespace {
std::uint64_t rows_bytes(std::int64_t rows, std::int64_t width, double bytes_per) {
  return static_cast<std::uint64_t>(static_cast<double>(rows * width) * bytes_per);
}
}  // namespace

void RankTrainer::receive_stage_input(const core::Buffer& x) {
  const std::uint64_t bytes = rows_bytes(tokens_, model_.hidden, a_);
  rt_.stream_wait(kCompute, rt_.recv(kPipeRecv, rank_ - layout_.world, x, bytes, pipe_tag(false)));
}

void RankTrainer::send_stage_output(const core::Buffer& y) {
  rt_.stream_wait(kPipeSend, last_compute_);
  rt_.send(kPipeSend, rank_ + layout_.world, y, rows_bytes(tokens_, model_.hidden, a_), pipe_tag(false));
}

void RankTrainer::receive_output_grad() {
  const std::uint64_t bytes = rows_bytes(tokens_, model_.hidden, a_);
  rt_.stream_wait(kPipeRecv, last_compute_);
  rt_.stream_wait(kPipeRecv, grad_sent_);
  rt_.stream_wait(kCompute, rt_.recv(kPipeRecv, rank_ + layout_.world, st_.ws.dx, bytes, pipe_tag(true)));
}

void RankTrainer::send_input_grad() {
  rt_.stream_wait(kPipeSend, last_compute_);
  grad_sent_ = rt_.send(kPipeSend, rank_ - layout_.world, st_.ws.dx, rows_bytes(tokens_, model_.hidden, a_),
                        pipe_tag(true));
}

}  // namespace moesys::policies::training
