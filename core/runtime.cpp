#include "core/runtime.hpp"

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace moesys::core {

const char* stream_name(StreamId s) {
  switch (s) {
    case streams::kCompute:
      return "compute";
    case streams::kComm:
      return "comm";
    case streams::kH2D:
      return "h2d";
    case streams::kD2H:
      return "d2h";
    case streams::kNvme:
      return "nvme";
    case streams::kComm2:
      return "comm2";
    case streams::kGather:
      return "gather";
    case streams::kUpload:
      return "upload";
    case streams::kPipeSendAct:
      return "pipe-send-act";
    case streams::kPipeRecvAct:
      return "pipe-recv-act";
    case streams::kPipeSendGrad:
      return "pipe-send-grad";
    case streams::kPipeRecvGrad:
      return "pipe-recv-grad";
    case streams::kReplicaSend:
      return "replica-send";
    case streams::kReplicaRecv:
      return "replica-recv";
    default:
      return "stream";
  }
}

Group::Group() {
  static const auto empty = std::make_shared<const Members>();
  data_ = empty;
}

Group::Group(std::vector<int> ranks) {
  std::string key;
  for (int r : ranks) key += std::to_string(r) + ",";
  data_ = std::make_shared<const Members>(Members{std::move(ranks), std::move(key)});
}

Group Group::world(int world_size) {
  // The last size asked for is kept (a program has one world); ranks may be threads of one process.
  static std::mutex mutex;
  static Group last;
  std::lock_guard<std::mutex> lock(mutex);
  if (last.size() != world_size) {
    std::vector<int> r(static_cast<std::size_t>(world_size));
    for (int i = 0; i < world_size; ++i) r[static_cast<std::size_t>(i)] = i;
    last = Group(std::move(r));
  }
  return last;
}

int Group::index_of(int global_rank) const {
  const auto& ranks = data_->ranks;
  auto it = std::find(ranks.begin(), ranks.end(), global_rank);
  return it == ranks.end() ? -1 : static_cast<int>(it - ranks.begin());
}

const char* to_string(CollectiveAlgo a) {
  switch (a) {
    case CollectiveAlgo::automatic:
      return "auto";
    case CollectiveAlgo::ring:
      return "ring";
    case CollectiveAlgo::direct:
      return "direct";
    case CollectiveAlgo::hierarchical:
      return "hierarchical";
    case CollectiveAlgo::tree:
      return "tree";
    case CollectiveAlgo::nvls:
      return "nvls";
    case CollectiveAlgo::nvls_tree:
      return "nvlstree";
    case CollectiveAlgo::deepep:
      return "deepep";
    case CollectiveAlgo::deepep_ll:
      return "deepep-ll";
    case CollectiveAlgo::copy_engine:
      return "ce";
  }
  return "?";
}

CollectiveAlgo parse_collective_algo(const std::string& s) {
  if (s == "auto") return CollectiveAlgo::automatic;
  if (s == "ring") return CollectiveAlgo::ring;
  if (s == "direct") return CollectiveAlgo::direct;
  if (s == "hierarchical") return CollectiveAlgo::hierarchical;
  if (s == "tree") return CollectiveAlgo::tree;
  if (s == "nvls") return CollectiveAlgo::nvls;
  if (s == "nvlstree") return CollectiveAlgo::nvls_tree;
  if (s == "deepep") return CollectiveAlgo::deepep;
  if (s == "deepep-ll") return CollectiveAlgo::deepep_ll;
  if (s == "ce") return CollectiveAlgo::copy_engine;
  throw std::invalid_argument("unknown collective algorithm '" + s +
                              "' (known: auto, ring, tree, nvls, nvlstree, direct, hierarchical, deepep, deepep-ll, ce)");
}

Buffer Buffer::slice(std::uint64_t offset, std::uint64_t length) const {
  if (offset + length > bytes)
    throw std::out_of_range("buffer slice [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                            ") outside a buffer of " + std::to_string(bytes) + " bytes");
  Buffer b = *this;
  b.bytes = length;
  b.offset = this->offset + offset;
  b.data = data ? static_cast<char*>(data) + offset : nullptr;
  return b;
}

const char* to_string(TensorOpKind k) {
  static const char* const kNames[] = {
      "gate_topk",       "gate_bwd", "dispatch",    "dispatch_bwd",  "combine",   "combine_bwd",
      "block_transpose", "add_bias", "bias_grad",   "gelu",          "gelu_bwd",  "add",
      "scale",           "fill",     "layernorm",   "layernorm_bwd", "embedding", "embedding_bwd",
      "softmax_xent",    "adamw",    "gather_rows", "remap_index",   "argmax",    "scatter_add_rows",
      "swiglu",          "swiglu_bwd", "rope",      "mla_keys",      "mla_keys_bwd"};
  return kNames[static_cast<int>(k)];
}

double AttentionOp::flop() const {
  // QK^T and PV: 2 GEMMs of 2*head_dim flop per visible (query, key) pair; backward costs 2.5x forward
  // (flash-attention recomputes the scores). Causal: query i sees seq_kv - seq_q + i + 1 keys, a trapezoid of
  // seq_q * (seq_kv - seq_q) + seq_q^2 / 2 pairs in the continuous form (half the square when seq_q == seq_kv,
  // about seq_kv pairs for one decode query).
  const double sq = static_cast<double>(seq_q), skv = static_cast<double>(seq_kv);
  const double pairs = causal ? sq * std::max(skv - sq, 0.0) + 0.5 * sq * std::min(sq, skv) : sq * skv;
  // Q.K over head_dim and P.V over the value width (MLA: 192 and 128); written as one product when they agree.
  const double f = v_dim() == head_dim
                       ? 4.0 * static_cast<double>(batch) * heads * pairs * head_dim
                       : 2.0 * static_cast<double>(batch) * heads * pairs * static_cast<double>(head_dim + v_dim());
  return backward ? 2.5 * f : f;
}

double AttentionOp::bytes() const {
  // Q and O (value width), K and V (value width) of every head; the same expression as 2 x head_dim when they agree.
  const bool same = v_dim() == head_dim;
  double qo = same ? 2.0 * static_cast<double>(batch) * heads * seq_q * head_dim
                   : static_cast<double>(batch) * heads * seq_q * static_cast<double>(head_dim + v_dim());
  double kv = same ? 2.0 * static_cast<double>(batch) * kv_head_count() * seq_kv * head_dim
                   : static_cast<double>(batch) * kv_head_count() * seq_kv * static_cast<double>(head_dim + v_dim());
  double b = (qo + kv) * dtype_bytes(dtype);
  return backward ? 2.0 * b : b;
}

}  // namespace moesys::core
