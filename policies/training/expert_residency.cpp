#include "policies/training/expert_residency.hpp"

#include <limits>
#include <stdexcept>
#include <string>

#include "model/ops.hpp"
#include "policies/training/memory_plan.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kD2H;
using core::streams::kH2D;
using core::streams::kNvme;
using I = std::int64_t;

namespace {
constexpr std::size_t kNever = std::numeric_limits<std::size_t>::max();

std::uint64_t B(double elems, double per) { return static_cast<std::uint64_t>(elems * per); }

/// Calls fn(e0, e1) for every run of consecutive experts set in `mask`.
template <typename Fn>
void for_runs(const std::vector<bool>& mask, Fn fn) {
  const int n = static_cast<int>(mask.size());
  for (int e = 0; e < n;) {
    if (!mask[static_cast<std::size_t>(e)]) {
      ++e;
      continue;
    }
    int end = e;
    while (end < n && mask[static_cast<std::size_t>(end)]) ++end;
    fn(e, end);
    e = end;
  }
}

int count(const std::vector<bool>& mask) {
  int n = 0;
  for (bool b : mask) n += b ? 1 : 0;
  return n;
}
}  // namespace

double expert_cache_entry_bytes(const ExpertShape& s) { return (s.a + s.o) * static_cast<double>(s.expert_elems); }

double expert_host_bytes_besides_cache(const ExpertShape& s, const ResidencySettings& r) {
  const double layer = static_cast<double>(s.layer_elems()), all = layer * s.layers;
  const double o = r.train ? s.o : 0, g = r.train ? s.g : 0;
  if (r.home == core::Tier::dram) return all * (s.a + g + o);
  return all * g + 2 * layer * (s.a + o);
}

ExpertStorage allocate_expert_storage(core::Runtime& rt, const ExpertShape& s, const ResidencySettings& r) {
  if (r.home != core::Tier::dram && r.home != core::Tier::ssd)
    throw std::invalid_argument("expert residency: the experts' home must be host memory or the SSD");
  if (r.slots < 1) throw std::invalid_argument("expert residency: needs at least one slot");
  const double layer = static_cast<double>(s.layer_elems()), all = layer * s.layers;
  auto alloc = [&](core::Tier t, double bytes, MemoryUse u) {
    return bytes > 0 ? rt.alloc(t, static_cast<std::uint64_t>(bytes), to_string(u)) : core::Buffer{};
  };
  ExpertStorage st;
  for (int k = 0; k < r.slots; ++k) {
    st.slot_params.push_back(alloc(core::Tier::hbm, s.a * layer, MemoryUse::parameters));
    if (r.train) st.slot_grads.push_back(alloc(core::Tier::hbm, s.g * layer, MemoryUse::gradients));
  }
  st.home_params = alloc(r.home, s.a * all, MemoryUse::parameters);
  if (r.train) {
    st.home_grads = alloc(core::Tier::dram, s.g * all, MemoryUse::gradients);
    st.home_opt = alloc(r.home, s.o * all, MemoryUse::optimizer);
  }
  if (r.home == core::Tier::ssd)
    st.staging = alloc(core::Tier::dram, 2 * layer * (s.a + (r.train ? s.o : 0)), MemoryUse::buffers);
  else if (r.pageable)
    st.staging = alloc(core::Tier::dram, layer * s.a, MemoryUse::buffers);
  if (r.uses_cache())
    st.cache = alloc(core::Tier::dram, static_cast<double>(r.cache_entries) * expert_cache_entry_bytes(s),
                     MemoryUse::expert_cache);
  return st;
}

ExpertResidency::ExpertResidency(core::Runtime& rt, ExpertShape shape, ResidencySettings settings,
                                 ExpertStorage storage, RankCounters& counters)
    : rt_(rt), sh_(shape), set_(settings), st_(std::move(storage)), counters_(counters) {
  if (st_.slot_params.empty()) throw std::invalid_argument("expert residency: no slots");
  if (set_.train && sh_.o < 8) throw std::invalid_argument("expert residency: AdamW needs two fp32 moments");
  slots_.resize(st_.slot_params.size());
  const auto L = static_cast<std::size_t>(sh_.local), layers = static_cast<std::size_t>(sh_.layers);
  for (Slot& s : slots_) s.has.assign(L, false);
  if (set_.uses_cache()) {
    cache_ = std::make_unique<LfuCache>(set_.cache_entries, set_.cache);
    entries_.resize(static_cast<std::size_t>(set_.cache_entries));
  }
  used_last_.assign(layers, std::vector<bool>(L, true));  // before any routing is seen, predict every expert
  prefetched_.assign(layers, std::vector<bool>(L, false));
  accumulated_.assign(layers, std::vector<bool>(L, false));
  home_written_.assign(layers, core::Event{});
  grads_home_.assign(layers, core::Event{});
}

// ---- views and bookkeeping ----

ExpertResidency::Views ExpertResidency::views(int layer) const {
  const int s = find(layer);
  if (s < 0) throw std::logic_error("expert residency: layer " + std::to_string(layer) + " is not in a slot");
  Views v;
  v.params = st_.slot_params[static_cast<std::size_t>(s)];
  if (!st_.slot_grads.empty()) v.grads = st_.slot_grads[static_cast<std::size_t>(s)];
  return v;
}

std::size_t ExpertResidency::next_use(int layer, std::size_t from) const {
  for (std::size_t p = from; p < order_.size(); ++p)
    if (order_[p] == layer) return p;
  return kNever;
}

int ExpertResidency::find(int layer) const {
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].layer == layer) return static_cast<int>(i);
  return -1;
}

int ExpertResidency::victim(int layer) const {
  int best = -1;
  std::size_t best_use = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].busy) continue;
    const std::size_t use = slots_[i].layer < 0 ? kNever : next_use(slots_[i].layer, cursor_);
    if (best < 0 || use > best_use) best = static_cast<int>(i), best_use = use;
  }
  // Fetching ahead must not evict a layer that is needed before the one fetched.
  if (layer >= 0 && best >= 0 && slots_[static_cast<std::size_t>(best)].layer >= 0 &&
      best_use <= next_use(layer, cursor_))
    return -1;
  return best;
}

void ExpertResidency::begin_step(int step) {
  step_ = step;
  for (Slot& s : slots_) {
    if (s.busy) throw std::logic_error("expert residency: a step begins while a layer is acquired");
    s.layer = -1;
    s.has.assign(s.has.size(), false);
  }
  for (auto& a : accumulated_) a.assign(a.size(), false);
}

void ExpertResidency::begin_pass(std::vector<int> order, bool last_micro) {
  last_micro_ = last_micro;
  backward_ = false;
  for (int l : order)
    if (l < 0 || l >= sh_.layers) throw std::invalid_argument("expert residency: the order names layer " + std::to_string(l));
  order_ = std::move(order);
  cursor_ = 0;
  for (auto& p : prefetched_) p.assign(p.size(), false);
  if (set_.strategy == ResidencyStrategy::ring) fill_ahead();
}

void ExpertResidency::end_step() {
  if (cache_) cache_->end_step();
}

// ---- where values come from ----

core::Buffer ExpertResidency::home_values(int layer, int e0, int e1, const core::Buffer& home, double per) const {
  const double pe = static_cast<double>(sh_.expert_elems);
  return home.slice(B((static_cast<double>(layer) * sh_.local + e0) * pe, per), B((e1 - e0) * pe, per));
}

int ExpertResidency::entry_of(int layer, int e) const {
  auto it = entry_of_key_.find(std::int64_t{layer} * sh_.local + e);
  return it == entry_of_key_.end() ? -1 : it->second;
}

void ExpertResidency::cache_access(int layer, int e) {
  const std::int64_t key = std::int64_t{layer} * sh_.local + e;
  const LfuCache::Access acc = cache_->access(key);
  if (acc.hit) {
    ++counters_.cache_hits;
    return;
  }
  ++counters_.cache_misses;
  if (!acc.admitted) return;
  const double pe = static_cast<double>(sh_.expert_elems), ab = sh_.a * pe, ob = sh_.o * pe;
  int idx = -1;
  if (acc.evicted) {  // write the victim's values and states back to the SSD before the entry is reused
    ++counters_.cache_evictions;
    idx = entry_of_key_.at(*acc.evicted);
    entry_of_key_.erase(*acc.evicted);
    const int vl = static_cast<int>(*acc.evicted / sh_.local), ve = static_cast<int>(*acc.evicted % sh_.local);
    Entry& v = entries_[static_cast<std::size_t>(idx)];
    const core::Buffer at = st_.cache.slice(B(idx, ab + ob), B(1, ab + ob));
    rt_.stream_wait(kNvme, v.last);
    rt_.copy(kNvme, home_values(vl, ve, ve + 1, st_.home_params, sh_.a), at.slice(0, B(1, ab)), B(1, ab));
    v.last = home_written_[static_cast<std::size_t>(vl)] =
        rt_.copy(kNvme, home_values(vl, ve, ve + 1, st_.home_opt, sh_.o), at.slice(B(1, ab), B(1, ob)), B(1, ob));
    counters_.ssd_write_bytes += ab + ob;
  } else {
    for (std::size_t i = 0; i < entries_.size() && idx < 0; ++i)
      if (entries_[i].key < 0) idx = static_cast<int>(i);
    if (idx < 0) throw std::logic_error("expert residency: the LFU cache admitted an expert without a free entry");
  }
  Entry& en = entries_[static_cast<std::size_t>(idx)];
  en.key = key;
  entry_of_key_[key] = idx;
  const core::Buffer at = st_.cache.slice(B(idx, ab + ob), B(1, ab + ob));
  rt_.stream_wait(kNvme, en.last);
  rt_.stream_wait(kNvme, home_written_[static_cast<std::size_t>(layer)]);
  rt_.copy(kNvme, at.slice(0, B(1, ab)), home_values(layer, e, e + 1, st_.home_params, sh_.a), B(1, ab));
  en.last = rt_.copy(kNvme, at.slice(B(1, ab), B(1, ob)), home_values(layer, e, e + 1, st_.home_opt, sh_.o), B(1, ob));
  counters_.ssd_read_bytes += ab + ob;
  Stage& sg = stages_[layer % 2];  // a staged copy of this expert is no longer the one to read
  if (sg.layer == layer) sg.values[static_cast<std::size_t>(e)] = sg.states[static_cast<std::size_t>(e)] = false;
}

ExpertResidency::Stage& ExpertResidency::stage_for(int layer) {
  Stage& s = stages_[layer % 2];
  if (s.layer != layer) {
    s.layer = layer;
    s.values.assign(static_cast<std::size_t>(sh_.local), false);
    s.states.assign(static_cast<std::size_t>(sh_.local), false);
  }
  return s;
}

void ExpertResidency::stage_from_ssd(int layer, const std::vector<bool>& want, bool states) {
  Stage& s = stage_for(layer);
  const std::size_t L = static_cast<std::size_t>(sh_.local);
  std::vector<bool> values(L), opt(L);
  for (std::size_t e = 0; e < L; ++e) {
    values[e] = want[e] && !s.values[e];
    opt[e] = states && want[e] && !s.states[e];
  }
  if (count(values) + count(opt) == 0) return;
  const double pe = static_cast<double>(sh_.expert_elems);
  const core::Buffer sv = stage_values(layer % 2), so = opt.empty() || count(opt) == 0 ? core::Buffer{} : stage_states(layer % 2);
  rt_.stream_wait(kNvme, s.last);
  rt_.stream_wait(kNvme, home_written_[static_cast<std::size_t>(layer)]);
  for_runs(values, [&](int e0, int e1) {
    s.last = rt_.copy(kNvme, sv.slice(B(e0 * pe, sh_.a), B((e1 - e0) * pe, sh_.a)),
                      home_values(layer, e0, e1, st_.home_params, sh_.a), B((e1 - e0) * pe, sh_.a));
    counters_.ssd_read_bytes += (e1 - e0) * pe * sh_.a;
  });
  for_runs(opt, [&](int e0, int e1) {
    s.last = rt_.copy(kNvme, so.slice(B(e0 * pe, sh_.o), B((e1 - e0) * pe, sh_.o)),
                      home_values(layer, e0, e1, st_.home_opt, sh_.o), B((e1 - e0) * pe, sh_.o));
    counters_.ssd_read_bytes += (e1 - e0) * pe * sh_.o;
  });
  for (std::size_t e = 0; e < L; ++e) {
    s.values[e] = s.values[e] || values[e];
    s.states[e] = s.states[e] || opt[e];
  }
}

// ---- fetching ----

int ExpertResidency::fill(int si, int layer, const std::vector<bool>& want) {
  Slot& s = slots_[static_cast<std::size_t>(si)];
  const std::size_t L = static_cast<std::size_t>(sh_.local);
  if (s.layer != layer) {
    s.layer = layer;
    s.has.assign(L, false);
  }
  std::vector<bool> need(L);
  for (std::size_t e = 0; e < L; ++e) need[e] = want[e] && !s.has[e];
  const int n = count(need);
  if (n == 0) return 0;
  const double pe = static_cast<double>(sh_.expert_elems);
  const core::Buffer& slot = st_.slot_params[static_cast<std::size_t>(si)];
  auto slot_run = [&](int e0, int e1) { return slot.slice(B(e0 * pe, sh_.a), B((e1 - e0) * pe, sh_.a)); };
  rt_.stream_wait(kH2D, s.free_after);  // overwrite the slot only after its last reader
  rt_.stream_wait(kH2D, s.grads_home);
  if (set_.home == core::Tier::dram) {
    rt_.stream_wait(kH2D, home_written_[static_cast<std::size_t>(layer)]);
    for_runs(need, [&](int e0, int e1) {
      const core::Buffer home = home_values(layer, e0, e1, st_.home_params, sh_.a);
      const std::uint64_t bytes = B((e1 - e0) * pe, sh_.a);
      if (!set_.pageable) {
        s.ready = rt_.copy(kH2D, slot_run(e0, e1), home, bytes);
        return;
      }
      // Pageable memory cannot be DMA'd: a host copy into the pinned staging area first (stream order on the
      // H2D stream keeps the area's next write behind this DMA).
      const core::Buffer stage = st_.staging.slice(B(e0 * pe, sh_.a), bytes);
      rt_.copy(kH2D, stage, home, bytes);
      s.ready = rt_.copy(kH2D, slot_run(e0, e1), stage, bytes);
    });
  } else {
    if (cache_ && !backward_)
      for (std::size_t e = 0; e < L; ++e)
        if (need[e]) cache_access(layer, static_cast<int>(e));
    std::vector<bool> staged(L);
    for (std::size_t e = 0; e < L; ++e) staged[e] = need[e] && entry_of(layer, static_cast<int>(e)) < 0;
    // Backward of the last micro-batch also brings the optimizer states of what it stages: the host optimizer
    // updates the layer right after its backward.
    stage_from_ssd(layer, staged, backward_ && last_micro_ && set_.train);
    for (std::size_t e = 0; e < L; ++e) {
      const int idx = need[e] && !staged[e] ? entry_of(layer, static_cast<int>(e)) : -1;
      if (idx < 0) continue;
      Entry& en = entries_[static_cast<std::size_t>(idx)];
      rt_.stream_wait(kH2D, en.last);
      const double ab = sh_.a * pe, ob = sh_.o * pe;
      s.ready = en.last = rt_.copy(kH2D, slot_run(static_cast<int>(e), static_cast<int>(e) + 1),
                                   st_.cache.slice(B(idx, ab + ob), B(1, ab)), B(1, ab));
    }
    if (count(staged) > 0) {
      Stage& sg = stage_for(layer);
      rt_.stream_wait(kH2D, sg.last);
      const core::Buffer sv = stage_values(layer % 2);
      for_runs(staged, [&](int e0, int e1) {
        s.ready = sg.last = rt_.copy(kH2D, slot_run(e0, e1), sv.slice(B(e0 * pe, sh_.a), B((e1 - e0) * pe, sh_.a)),
                                     B((e1 - e0) * pe, sh_.a));
      });
    }
  }
  for (std::size_t e = 0; e < L; ++e) s.has[e] = s.has[e] || need[e];
  counters_.expert_fetches += n;
  counters_.h2d_param_bytes += n * pe * sh_.a;
  return n;
}

void ExpertResidency::fill_ahead() {
  const std::vector<bool> all(static_cast<std::size_t>(sh_.local), true);
  for (std::size_t p = cursor_; p < order_.size(); ++p) {
    const int u = order_[p];
    if (find(u) >= 0) continue;
    const int v = victim(u);
    if (v < 0) return;
    fill(v, u, all);
    prefetched_[static_cast<std::size_t>(u)].assign(all.size(), true);
  }
}

void ExpertResidency::prefetch(int layer, bool backward, const std::vector<bool>& used) {
  backward_ = backward;
  if (set_.strategy == ResidencyStrategy::ring) return fill_ahead();
  const auto li = static_cast<std::size_t>(layer);
  std::vector<bool> want(static_cast<std::size_t>(sh_.local), true);
  if (set_.strategy == ResidencyStrategy::routed) want = backward ? used : used_last_[li];
  int s = find(layer);
  if (s < 0) s = victim(layer);
  if (s < 0) return;  // every free slot holds a layer needed sooner: acquire fetches on demand
  const Slot& slot = slots_[static_cast<std::size_t>(s)];
  std::vector<bool> fetched(want.size());
  for (std::size_t e = 0; e < want.size(); ++e) fetched[e] = want[e] && !(slot.layer == layer && slot.has[e]);
  fill(s, layer, want);
  for (std::size_t e = 0; e < want.size(); ++e) prefetched_[li][e] = prefetched_[li][e] || fetched[e];
}

void ExpertResidency::acquire(int layer, bool backward, const std::vector<bool>& used, core::StreamId stream) {
  backward_ = backward;
  const std::size_t at = next_use(layer, cursor_);
  if (at == kNever)
    throw std::logic_error("expert residency: layer " + std::to_string(layer) + " acquired outside the pass's order");
  cursor_ = at + 1;
  const auto li = static_cast<std::size_t>(layer);
  int s = find(layer);
  if (s < 0) {
    s = victim(-1);
    if (s < 0) throw std::logic_error("expert residency: every slot is in use; more slots are needed");
  }
  const std::vector<bool> all(static_cast<std::size_t>(sh_.local), true);
  // What the host learns only from the token counts is fetched now, exposed.
  counters_.on_demand_fetches += fill(s, layer, set_.strategy == ResidencyStrategy::routed ? used : all);
  if (!backward) {
    for (std::size_t e = 0; e < used.size(); ++e)
      if (prefetched_[li][e] && !used[e]) ++counters_.wasted_fetches;
    used_last_[li] = used;
  }
  prefetched_[li].assign(prefetched_[li].size(), false);
  Slot& slot = slots_[static_cast<std::size_t>(s)];
  slot.busy = true;
  rt_.stream_wait(stream, slot.ready);
  if (set_.strategy == ResidencyStrategy::ring) fill_ahead();
}

int ExpertResidency::acquired(int layer, const char* what) const {
  const int s = find(layer);
  if (s < 0 || !slots_[static_cast<std::size_t>(s)].busy)
    throw std::logic_error(std::string("expert residency: ") + what + " of layer " + std::to_string(layer) +
                           ", which is not acquired");
  return s;
}

void ExpertResidency::release(int layer, core::Event last_use) {
  Slot& slot = slots_[static_cast<std::size_t>(acquired(layer, "release"))];
  slot.free_after = last_use;
  slot.busy = false;
  if (set_.strategy == ResidencyStrategy::ring) fill_ahead();
}

// ---- gradients and the host optimizer ----

void ExpertResidency::begin_grads(int layer, core::StreamId stream) {
  const int s = acquired(layer, "gradients");
  Slot& slot = slots_[static_cast<std::size_t>(s)];
  const core::Buffer& grads = st_.slot_grads[static_cast<std::size_t>(s)];
  const auto li = static_cast<std::size_t>(layer);
  rt_.stream_wait(stream, slot.grads_home);  // the slot's previous gradients have gone home
  core::TensorOp zero = ops::with_dtype(ops::fill(grads, sh_.layer_elems()), set_.dtype);
  const core::Event zeroed = rt_.compute(stream, zero, "zero expert gradients");
  if (count(accumulated_[li]) == 0) return;
  // Later micro-batches: the sum of the earlier ones comes back into the slot and the kernels add to it.
  const double pe = static_cast<double>(sh_.expert_elems);
  rt_.stream_wait(kH2D, zeroed);
  rt_.stream_wait(kH2D, grads_home_[li]);
  core::Event loaded;
  for_runs(accumulated_[li], [&](int e0, int e1) {
    loaded = rt_.copy(kH2D, grads.slice(B(e0 * pe, sh_.g), B((e1 - e0) * pe, sh_.g)),
                      home_values(layer, e0, e1, st_.home_grads, sh_.g), B((e1 - e0) * pe, sh_.g));
  });
  rt_.stream_wait(stream, loaded);
}

core::Event ExpertResidency::end_grads(int layer, core::Event grads_ready, const std::vector<bool>& used,
                                       bool last_micro, const core::Group& replicas, core::StreamId comm) {
  const int s = acquired(layer, "gradients");
  Slot& slot = slots_[static_cast<std::size_t>(s)];
  const core::Buffer& grads = st_.slot_grads[static_cast<std::size_t>(s)];
  const auto li = static_cast<std::size_t>(layer);
  const std::size_t L = static_cast<std::size_t>(sh_.local);
  const std::vector<bool> all(L, true);
  const bool lazy = set_.strategy == ResidencyStrategy::routed && replicas.size() <= 1;
  std::vector<bool> send = lazy ? used : all;  // routing-blind strategies move every expert's gradients
  if (last_micro && replicas.size() > 1) {
    rt_.stream_wait(comm, grads_ready);
    grads_ready = rt_.all_reduce(comm, replicas, grads, grads.bytes, set_.dtype);
  }
  const double pe = static_cast<double>(sh_.expert_elems);
  rt_.stream_wait(kD2H, grads_ready);
  rt_.stream_wait(kD2H, home_written_[li]);  // the previous update has read the previous gradients
  core::Event home = grads_ready;
  for_runs(send, [&](int e0, int e1) {
    home = rt_.copy(kD2H, home_values(layer, e0, e1, st_.home_grads, sh_.g),
                    grads.slice(B(e0 * pe, sh_.g), B((e1 - e0) * pe, sh_.g)), B((e1 - e0) * pe, sh_.g));
  });
  grads_home_[li] = home;
  for (std::size_t e = 0; e < L; ++e) accumulated_[li][e] = accumulated_[li][e] || send[e];
  slot.free_after = slot.grads_home = home;
  slot.busy = false;
  if (last_micro) host_update(layer, lazy ? accumulated_[li] : all);
  if (set_.strategy == ResidencyStrategy::ring) fill_ahead();
  return grads_ready;
}

core::Buffer ExpertResidency::stage_values(int k) const {
  const double layer = static_cast<double>(sh_.layer_elems()), per = sh_.a + (set_.train ? sh_.o : 0);
  return st_.staging.slice(B(k * layer, per), B(layer, sh_.a));
}

core::Buffer ExpertResidency::stage_states(int k) const {
  const double layer = static_cast<double>(sh_.layer_elems());
  return st_.staging.slice(B(k * layer, sh_.a + sh_.o) + B(layer, sh_.a), B(layer, sh_.o));
}

core::Event ExpertResidency::adamw(const core::Buffer& grads, const core::Buffer& params, const core::Buffer& opt) {
  const I n = sh_.expert_elems;
  const auto f = static_cast<std::uint64_t>(n) * 4;
  const AdamSettings& p = set_.adam;
  core::TensorOp op =
      ops::adamw(grads, params, opt.slice(0, f), opt.slice(f, f), n, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, step_);
  // Memory-bound on the host: its traffic, shared with the optimizers of the node's other GPUs.
  op.dtype = set_.dtype;
  const double shared = static_cast<double>(n) * set_.host_sharers * set_.host_cost_scale;
  op.bytes_read = B(shared, sh_.o + sh_.g);
  op.bytes_written = B(shared, sh_.o + sh_.a);
  return rt_.compute(kD2H, op, "host optimizer");
}

void ExpertResidency::host_update(int layer, const std::vector<bool>& experts) {
  if (count(experts) == 0) return;
  const auto li = static_cast<std::size_t>(layer);
  const std::size_t L = static_cast<std::size_t>(sh_.local);
  const double pe = static_cast<double>(sh_.expert_elems);
  rt_.stream_wait(kD2H, grads_home_[li]);
  auto grads_of = [&](int e) { return home_values(layer, e, e + 1, st_.home_grads, sh_.g); };
  if (set_.home == core::Tier::dram) {
    for (std::size_t e = 0; e < L; ++e)
      if (experts[e])
        home_written_[li] = adamw(grads_of(static_cast<int>(e)),
                                  home_values(layer, static_cast<int>(e), static_cast<int>(e) + 1, st_.home_params, sh_.a),
                                  home_values(layer, static_cast<int>(e), static_cast<int>(e) + 1, st_.home_opt, sh_.o));
    return;
  }
  const double ab = sh_.a * pe, ob = sh_.o * pe;
  std::vector<bool> staged(L);
  for (std::size_t e = 0; e < L; ++e) {
    if (!experts[e]) continue;
    const int idx = entry_of(layer, static_cast<int>(e));
    if (idx < 0) {
      staged[e] = true;
      continue;
    }
    Entry& en = entries_[static_cast<std::size_t>(idx)];  // cached: updated in host memory, written back on eviction
    const core::Buffer at = st_.cache.slice(B(idx, ab + ob), B(1, ab + ob));
    rt_.stream_wait(kD2H, en.last);
    en.last = adamw(grads_of(static_cast<int>(e)), at.slice(0, B(1, ab)), at.slice(B(1, ab), B(1, ob)));
  }
  if (count(staged) == 0) return;
  stage_from_ssd(layer, staged, true);
  Stage& sg = stage_for(layer);
  const core::Buffer sv = stage_values(layer % 2), so = stage_states(layer % 2);
  rt_.stream_wait(kD2H, sg.last);
  core::Event updated;
  for (std::size_t e = 0; e < L; ++e)
    if (staged[e])
      updated = adamw(grads_of(static_cast<int>(e)), sv.slice(B(static_cast<double>(e) * pe, sh_.a), B(pe, sh_.a)),
                      so.slice(B(static_cast<double>(e) * pe, sh_.o), B(pe, sh_.o)));
  rt_.stream_wait(kNvme, updated);
  for_runs(staged, [&](int e0, int e1) {
    rt_.copy(kNvme, home_values(layer, e0, e1, st_.home_params, sh_.a),
             sv.slice(B(e0 * pe, sh_.a), B((e1 - e0) * pe, sh_.a)), B((e1 - e0) * pe, sh_.a));
    sg.last = rt_.copy(kNvme, home_values(layer, e0, e1, st_.home_opt, sh_.o),
                       so.slice(B(e0 * pe, sh_.o), B((e1 - e0) * pe, sh_.o)), B((e1 - e0) * pe, sh_.o));
    counters_.ssd_write_bytes += (e1 - e0) * (ab + ob);
  });
  home_written_[li] = sg.last;
}

}  // namespace moesys::policies::training
