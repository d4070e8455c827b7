#include "policies/training/tensor_parallel.hpp"

#include <stdexcept>
#include <string>

#include "policies/training/model_costs.hpp"

namespace moesys::policies::training {

using I = std::int64_t;

core::ModelConfig rank_model(const core::ModelConfig& m, int tp, int etp) {
  if (tp == 1 && etp == 1) return m;
  core::ModelConfig r = m;
  // Pin the widths that follow from others before dividing heads, the dense FFN and the routed experts.
  r.head_dim_elems = m.head_dim();
  r.shared_ffn_width = static_cast<int>(m.shared_hidden());
  r.expert_ffn_width = m.expert_hidden() / etp;
  r.heads = m.heads / tp;
  if (m.kv_heads > 0) r.kv_heads = m.kv_heads / tp;
  r.dense_ffn_width = m.ffn_hidden() / tp;
  return r;
}

namespace {
/// A block of a tensor: `rows` x `groups` x `cols` elements, row-major, kept whole or split over the group by
/// columns (each group's columns, e.g. SwiGLU's gate and up halves) or by rows.
struct Segment {
  enum Split { whole, by_cols, by_rows };
  I rows = 0, groups = 1, cols = 0;
  Split split = whole;
  I global() const { return rows * groups * cols; }
  I local(int tp) const { return split == whole ? global() : global() / tp; }
};

/// The blocks of tensor `slot` of unit `unit` of the whole model (elements `elems`).
std::vector<Segment> segments(const core::ModelConfig& m, int unit, int slot, I elems) {
  if (elems == 0) return {};
  const I h = m.hidden;
  if (unit > 0) {
    const bool mla = m.attention == core::AttentionKind::mla, moe = m.is_moe_layer(unit - 1);
    const I q = m.q_width(), kv = m.kv_width(), in = m.ffn_in_factor(), f = m.ffn_hidden();
    switch (slot) {
      case kQkv:
        if (mla) {
          const I ql = m.mla.q_lora_rank, kvl = m.mla.kv_lora_rank, H = m.heads;
          std::vector<Segment> s;
          if (ql > 0) s = {{h, 1, ql, Segment::whole}, {ql, 1, q, Segment::by_cols}};
          else s = {{h, 1, q, Segment::by_cols}};
          s.push_back({h, 1, kvl, Segment::whole});
          s.push_back({h, 1, m.mla.qk_rope_head_dim, Segment::whole});
          s.push_back({kvl, 1, H * m.mla.qk_nope_head_dim, Segment::by_cols});
          s.push_back({kvl, 1, H * m.mla.v_head_dim, Segment::by_cols});
          return s;
        }
        return {{h, 1, q, Segment::by_cols}, {h, 1, kv, Segment::by_cols}, {h, 1, kv, Segment::by_cols}};
      case kQkvBias:
        return {{1, 1, q, Segment::by_cols}, {1, 1, kv, Segment::by_cols}, {1, 1, kv, Segment::by_cols}};
      case kOut:
        return {{m.ctx_width(), 1, h, Segment::by_rows}};
      case kFfnIn:
        if (!moe) return {{h, in, f, Segment::by_cols}};
        break;
      case kFfnInBias:
        if (!moe) return {{1, in, f, Segment::by_cols}};
        break;
      case kFfnOut:
        if (!moe) return {{f, 1, h, Segment::by_rows}};
        break;
      default:
        break;
    }
  }
  return {{1, 1, elems, Segment::whole}};
}

std::vector<I> global_tensors(const core::ModelConfig& m, int unit) {
  return unit == 0 ? embedding_tensors(m) : layer_dense_tensors(m, unit - 1);
}

std::vector<Segment> checked_segments(const core::ModelConfig& m, int unit, int slot, I elems) {
  std::vector<Segment> s = segments(m, unit, slot, elems);
  I sum = 0;
  for (const Segment& x : s) sum += x.global();
  if (sum != elems)
    throw std::logic_error("tensor " + std::to_string(slot) + " of unit " + std::to_string(unit) + " has " +
                           std::to_string(elems) + " elements, its tensor-parallel blocks " + std::to_string(sum));
  return s;
}
}  // namespace

std::vector<float> expert_shard(const core::ModelConfig& m, int etp, int index, const float* whole) {
  const std::vector<I> t = expert_tensors(m);
  const I h = m.hidden, in = m.ffn_in_factor(), f = m.expert_hidden(), fs = f / etp, first = index * fs;
  std::vector<float> out;
  out.reserve(static_cast<std::size_t>((t[0] + t[1] + t[2]) / etp + t[3]));
  const float* w1 = whole;
  for (I r = 0; r < h; ++r)
    for (I g = 0; g < in; ++g) out.insert(out.end(), w1 + (r * in + g) * f + first, w1 + (r * in + g) * f + first + fs);
  const float* b1 = w1 + t[0];
  if (t[1] > 0)
    for (I g = 0; g < in; ++g) out.insert(out.end(), b1 + g * f + first, b1 + g * f + first + fs);
  const float* w2 = b1 + t[1];
  out.insert(out.end(), w2 + first * h, w2 + (first + fs) * h);
  const float* b2 = w2 + t[2];
  out.insert(out.end(), b2, b2 + t[3]);
  return out;
}

std::vector<float> shard_unit(const core::ModelConfig& m, int unit, int tp, int index, const std::vector<float>& values) {
  const std::vector<I> tensors = global_tensors(m, unit);
  std::vector<float> out;
  I at = 0;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    for (const Segment& s : checked_segments(m, unit, static_cast<int>(t), tensors[t])) {
      const auto from = values.begin() + at;
      switch (s.split) {
        case Segment::whole:
          out.insert(out.end(), from, from + s.global());
          break;
        case Segment::by_rows: {
          const I rows = s.rows / tp, width = s.groups * s.cols;
          out.insert(out.end(), from + index * rows * width, from + (index + 1) * rows * width);
          break;
        }
        case Segment::by_cols: {
          const I cols = s.cols / tp;
          for (I r = 0; r < s.rows; ++r)
            for (I g = 0; g < s.groups; ++g) {
              const auto first = from + (r * s.groups + g) * s.cols + index * cols;
              out.insert(out.end(), first, first + cols);
            }
          break;
        }
      }
      at += s.global();
    }
  }
  return out;
}

std::vector<std::pair<I, I>> replicated_ranges(const core::ModelConfig& m, int unit, int tp,
                                               const std::vector<I>& held) {
  const std::vector<I> tensors = global_tensors(m, unit);
  std::vector<std::pair<I, I>> ranges;
  auto add = [&](I first, I end) {
    if (first == end) return;
    if (!ranges.empty() && ranges.back().second == first)
      ranges.back().second = end;
    else
      ranges.emplace_back(first, end);
  };
  I at = 0;
  for (std::size_t t = 0; t < tensors.size() && t < held.size(); ++t) {
    if (held[t] == 0) continue;  // another stage's tensor
    I offset = at;
    for (const Segment& s : checked_segments(m, unit, static_cast<int>(t), tensors[t])) {
      if (s.split == Segment::whole) add(offset, offset + s.local(tp));
      offset += s.local(tp);
    }
    if (offset - at != held[t])
      throw std::logic_error("tensor " + std::to_string(t) + " of unit " + std::to_string(unit) + " held with " +
                             std::to_string(held[t]) + " elements, its shard has " + std::to_string(offset - at));
    at = offset;
  }
  return ranges;
}

}  // namespace moesys::policies::training
