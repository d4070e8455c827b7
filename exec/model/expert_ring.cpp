#include "exec/model/expert_ring.hpp"

#include <limits>
#include <stdexcept>
#include <string>

#include "exec/model/ops.hpp"

namespace moesys::exec::model {

using core::streams::kCompute;
using core::streams::kD2H;
using core::streams::kH2D;
using core::streams::kNvme;

namespace {
constexpr std::size_t kNever = std::numeric_limits<std::size_t>::max();
}

ExpertRing::ExpertRing(core::Runtime& rt, std::vector<MoeLayer*> layers, ExpertOffload offload)
    : rt_(rt), layers_(std::move(layers)), o_(offload) {
  if (layers_.empty()) throw std::invalid_argument("expert ring: no MoE layers");
  if (o_.slots < 1) throw std::invalid_argument("expert ring: needs at least one slot");
  if (o_.home == core::Tier::hbm) throw std::invalid_argument("expert ring: the experts' home must be dram or ssd");
  const auto first = layers_[0]->expert_params();
  for (MoeLayer* l : layers_) {
    const auto ps = l->expert_params();
    for (std::size_t i = 0; i < ps.size(); ++i)
      if (ps[i]->value.tier != o_.home || ps[i]->value.bytes != first[i]->value.bytes)
        throw std::invalid_argument("expert ring: " + ps[i]->name + " is not in the home tier or differs in size");
  }
  for (const Param* p : first) slot_bytes_ += 2 * p->value.bytes;  // values and gradients
  slots_.resize(static_cast<std::size_t>(o_.slots));
  for (Slot& s : slots_) {
    core::Buffer* dst[] = {&s.t.w1, &s.t.b1, &s.t.w2, &s.t.b2, &s.t.d_w1, &s.t.d_b1, &s.t.d_w2, &s.t.d_b2};
    for (std::size_t i = 0; i < 8; ++i) *dst[i] = rt_.alloc(core::Tier::hbm, first[i % 4]->value.bytes, "expert-slot");
  }
}

ExpertRing::~ExpertRing() {
  try {
    rt_.synchronize();
    for (MoeLayer* l : layers_) l->unbind_experts();
    for (Slot& s : slots_)
      for (core::Buffer* b : {&s.t.w1, &s.t.b1, &s.t.w2, &s.t.b2, &s.t.d_w1, &s.t.d_b1, &s.t.d_w2, &s.t.d_b2})
        rt_.free(*b);
  } catch (...) {  // a failed runtime: its memory goes with it
  }
}

int ExpertRing::slot_of(int layer) const {
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].layer == layer) return static_cast<int>(i);
  return -1;
}

std::size_t ExpertRing::next_use(int layer, std::size_t from) const {
  for (std::size_t p = from; p < order_.size(); ++p)
    if (order_[p] == layer) return p;
  return kNever;
}

int ExpertRing::victim(std::size_t from) const {
  int best = -1;
  std::size_t best_use = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].busy) continue;
    const std::size_t use = slots_[i].layer < 0 ? kNever : next_use(slots_[i].layer, from);
    if (best < 0 || use > best_use) best = static_cast<int>(i), best_use = use;
  }
  return best;
}

void ExpertRing::fill(int slot, int layer) {
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  // Overwrite the slot only after its last reader, and read the home values only after the optimizer wrote them.
  rt_.stream_wait(kH2D, s.free_after);
  rt_.stream_wait(kH2D, updated_);
  const auto ps = layers_[static_cast<std::size_t>(layer)]->expert_params();
  const auto dst = values(s);
  for (std::size_t i = 0; i < ps.size(); ++i) {
    s.ready = rt_.copy(kH2D, *dst[i], ps[i]->value, ps[i]->value.bytes);
    stats_.h2d_bytes += ps[i]->value.bytes;
  }
  s.layer = layer;
}

void ExpertRing::fill_ahead() {
  for (std::size_t p = cursor_; p < order_.size(); ++p) {
    const int u = order_[p];
    if (slot_of(u) >= 0) continue;
    const int v = victim(cursor_);
    if (v < 0) return;
    const int held = slots_[static_cast<std::size_t>(v)].layer;
    if (held >= 0 && next_use(held, cursor_) <= p) return;  // would evict a layer needed before u
    fill(v, u);
    ++stats_.fills_ahead;
  }
}

void ExpertRing::begin_pass(std::vector<int> order) {
  for (int l : order)
    if (l < 0 || l >= static_cast<int>(layers_.size()))
      throw std::invalid_argument("expert ring: the order names layer " + std::to_string(l));
  for (Slot& s : slots_) {
    if (s.busy)
      throw std::logic_error("expert ring: a pass begins while layer " + std::to_string(s.layer) +
                             " is still acquired");
    s.layer = -1;
  }
  order_ = std::move(order);
  cursor_ = 0;
  if (o_.prefetch) fill_ahead();
}

void ExpertRing::acquire(int layer) {
  const std::size_t at = next_use(layer, cursor_);
  if (at == kNever)
    throw std::logic_error("expert ring: layer " + std::to_string(layer) + " acquired outside the pass's order");
  cursor_ = at + 1;
  int s = slot_of(layer);
  if (s >= 0) {
    ++stats_.hits;
  } else {
    s = victim(cursor_);
    if (s < 0) throw std::logic_error("expert ring: every slot is in use; more slots are needed");
    fill(s, layer);
    ++stats_.fills_on_demand;
  }
  Slot& slot = slots_[static_cast<std::size_t>(s)];
  slot.busy = true;
  rt_.stream_wait(kCompute, slot.ready);
  layers_[static_cast<std::size_t>(layer)]->bind_experts(slot.t);
  if (o_.prefetch) fill_ahead();
}

void ExpertRing::release(int layer, bool write_back_grads) {
  const int i = slot_of(layer);
  if (i < 0 || !slots_[static_cast<std::size_t>(i)].busy)
    throw std::logic_error("expert ring: layer " + std::to_string(layer) + " released but not acquired");
  Slot& s = slots_[static_cast<std::size_t>(i)];
  MoeLayer& l = *layers_[static_cast<std::size_t>(layer)];
  s.free_after = l.last_event();
  if (write_back_grads) {
    rt_.stream_wait(kD2H, s.free_after);
    const auto ps = l.expert_params();
    const core::Buffer* grads[] = {&s.t.d_w1, &s.t.d_b1, &s.t.d_w2, &s.t.d_b2};
    for (std::size_t k = 0; k < ps.size(); ++k) {
      written_back_ = rt_.copy(kD2H, ps[k]->grad, *grads[k], ps[k]->grad.bytes);
      stats_.d2h_bytes += ps[k]->grad.bytes;
    }
    s.free_after = written_back_;  // the D2H stream waited for the kernels: this covers both
  }
  s.busy = false;
  l.unbind_experts();
  if (o_.prefetch) fill_ahead();
}

void ExpertRing::adamw(Param& p, double lr, double beta1, double beta2, double eps, double weight_decay, int step) {
  if (p.value.tier != core::Tier::ssd) {  // host memory the kernels can address: update in place
    rt_.stream_wait(kCompute, written_back_);
    updated_ =
        rt_.compute(kCompute, ops::adamw(p.grad, p.value, p.m, p.v, p.elems, lr, beta1, beta2, eps, weight_decay, step),
                    "optimizer:adamw");
    return;
  }
  core::Buffer* home[] = {&p.value, &p.grad, &p.m, &p.v};
  core::Buffer st[4];
  rt_.stream_wait(kNvme, written_back_);
  core::Event e;
  for (std::size_t i = 0; i < 4; ++i) {
    st[i] = rt_.alloc(core::Tier::dram, home[i]->bytes, "staging");
    e = rt_.copy(kNvme, st[i], *home[i], home[i]->bytes);
    stats_.host_bytes += home[i]->bytes;
  }
  rt_.stream_wait(kCompute, e);
  rt_.stream_wait(
      kNvme,
      rt_.compute(kCompute, ops::adamw(st[1], st[0], st[2], st[3], p.elems, lr, beta1, beta2, eps, weight_decay, step),
                  "optimizer:adamw"));
  for (std::size_t i : {0u, 2u, 3u}) {  // the gradient is not written back: the next backward overwrites it
    updated_ = rt_.copy(kNvme, *home[i], st[i], home[i]->bytes);
    stats_.host_bytes += home[i]->bytes;
  }
  rt_.wait(updated_);  // staging is freed now: every runtime may reuse its memory at once
  for (auto& b : st) rt_.free(b);
}

}  // namespace moesys::exec::model
