// Conformance: collectives (results on real runtimes, completion and spans everywhere), size validation and
// point-to-point matching.
#include <numeric>

#include "contract_cases.hpp"
#include "contract_support.hpp"

namespace moesys::conformance {

using core::streams::kComm;
using core::streams::kComm2;

namespace {
constexpr std::int64_t kM = 256;  // floats per member block

// The collective's span: on the comm stream, of kind collective, ended by the time its wait returned.
void expect_collective_span(core::Runtime& rt, const std::string& op, std::uint64_t bytes, double waited_at) {
  const core::Span* s = find_span(rt, core::SpanKind::collective, "comm", op);
  ASSERT_NE(s, nullptr) << op;
  EXPECT_EQ(s->bytes, bytes) << op;
  EXPECT_GE(s->end_s, s->start_s) << op;
  EXPECT_GE(waited_at + 1e-12, s->end_s) << op << ": wait returned before the collective ended";
  if (!carries_data(rt)) {
    EXPECT_GT(s->end_s, s->start_s) << op << ": a modelled collective takes time";
  }
}

// Rank s sends (s * 7 + d * 3) % 5 + 1 floats to member d: unequal in both directions.
std::int64_t count(int s, int d) {
  return (s * 7 + d * 3) % 5 + 1;
}
float value(int s, int d, std::int64_t i) {
  return float(s * 1000 + d * 100) + float(i);
}

void all_to_all_case(core::Runtime& rt, bool equal, core::CollectiveAlgo algo = core::CollectiveAlgo::direct) {
  const int P = rt.world_size(), r = rt.rank();
  const auto world = core::Group::world(P);
  auto n = [&](int s, int d) { return equal ? kM : count(s, d); };
  std::vector<std::uint64_t> sb(static_cast<std::size_t>(P)), rb(static_cast<std::size_t>(P));
  std::vector<float> out;
  std::int64_t recv_total = 0;
  for (int d = 0; d < P; ++d) {
    sb[std::size_t(d)] = floats(n(r, d)), rb[std::size_t(d)] = floats(n(d, r)), recv_total += n(d, r);
    for (std::int64_t i = 0; i < n(r, d); ++i) out.push_back(value(r, d, i));
  }
  auto send = rt.alloc(core::Tier::hbm, floats(std::int64_t(out.size())), "conformance");
  auto recv = rt.alloc(core::Tier::hbm, floats(recv_total), "conformance");
  put(rt, send, out);
  const core::Event e = rt.all_to_all(kComm, world, send, sb, recv, rb, algo);
  rt.wait(e);
  const double t = rt.now_s();
  const std::vector<float> got = read(rt, recv, recv_total, e);
  std::size_t at = 0, bad = 0;
  for (int s = 0; s < P && !got.empty(); ++s)
    for (std::int64_t i = 0; i < n(s, r); ++i) bad += got[at++] != value(s, r, i);
  EXPECT_EQ(bad, 0u) << "values received from the wrong member or offset";
  expect_collective_span(rt, "all_to_all", floats(std::int64_t(out.size())), t);
  rt.free(send), rt.free(recv);
}
}  // namespace

void AllReduceSums(core::Runtime& rt) {
  const int P = rt.world_size(), r = rt.rank();
  const std::int64_t n = kM * P;
  auto x = rt.alloc(core::Tier::hbm, floats(n), "conformance");
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[std::size_t(i)] = float((r + 1) * (i % 97));
  put(rt, x, v);
  const core::Event e = rt.all_reduce(kComm, core::Group::world(P), x, floats(n), core::Dtype::fp32);
  rt.wait(e);
  const double t = rt.now_s();
  const std::vector<float> got = read(rt, x, n, e);
  std::size_t bad = 0;
  for (std::int64_t i = 0; i < std::int64_t(got.size()); ++i)
    bad += got[std::size_t(i)] != float(P * (P + 1) / 2 * (i % 97));
  EXPECT_EQ(bad, 0u) << "all_reduce is not the sum over members";
  expect_collective_span(rt, "all_reduce", floats(n), t);
  rt.free(x);
}

void ReduceScatterSumsEachBlock(core::Runtime& rt) {
  const int P = rt.world_size(), r = rt.rank();
  const std::int64_t n = kM * P;
  auto in = rt.alloc(core::Tier::hbm, floats(n), "conformance"),
       out = rt.alloc(core::Tier::hbm, floats(kM), "conformance");
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[std::size_t(i)] = float(r + i);
  put(rt, in, v);
  const core::Event e = rt.reduce_scatter(kComm, core::Group::world(P), in, out, floats(n), core::Dtype::fp32);
  rt.wait(e);
  const double t = rt.now_s();
  const std::vector<float> got = read(rt, out, kM, e);
  std::size_t bad = 0;
  for (std::int64_t j = 0; j < std::int64_t(got.size()); ++j)
    bad += got[std::size_t(j)] != float(P * (r * kM + j) + P * (P - 1) / 2);
  EXPECT_EQ(bad, 0u) << "member r must hold the sum of block r";
  expect_collective_span(rt, "reduce_scatter", floats(n), t);
  rt.free(in), rt.free(out);
}

namespace {
void all_gather_case(core::Runtime& rt, core::CollectiveAlgo algo) {
  const int P = rt.world_size(), r = rt.rank();
  const std::int64_t n = kM * P;
  auto in = rt.alloc(core::Tier::hbm, floats(kM), "conformance"),
       out = rt.alloc(core::Tier::hbm, floats(n), "conformance");
  std::vector<float> v(static_cast<std::size_t>(kM));
  for (std::int64_t j = 0; j < kM; ++j) v[std::size_t(j)] = float(100 * r + j);
  put(rt, in, v);
  const core::Event e = rt.all_gather(kComm, core::Group::world(P), in, out, floats(n), algo);
  rt.wait(e);
  const double t = rt.now_s();
  const std::vector<float> got = read(rt, out, n, e);
  std::size_t bad = 0;
  for (std::int64_t i = 0; i < std::int64_t(got.size()); ++i)
    bad += got[std::size_t(i)] != float(100 * (i / kM) + i % kM);
  EXPECT_EQ(bad, 0u) << "block s of the output must be member s's input";
  expect_collective_span(rt, "all_gather", floats(n), t);
  rt.free(in), rt.free(out);
}
}  // namespace

void AllGatherConcatenates(core::Runtime& rt) {
  all_gather_case(rt, core::CollectiveAlgo::automatic);
}

void AllToAllEqualSizes(core::Runtime& rt) {
  all_to_all_case(rt, true);
}

void AllToAllvUnequalSizes(core::Runtime& rt) {
  all_to_all_case(rt, false);
}

// DeepEP's algorithms are ways of moving the same bytes: every runtime delivers what the direct one does.
void AllToAllvDeepEpDeliversTheSameBytes(core::Runtime& rt) {
  all_to_all_case(rt, false, core::CollectiveAlgo::deepep);
  all_to_all_case(rt, false, core::CollectiveAlgo::deepep_ll);
}

// NCCL's copy-engine collectives move the same bytes with DMA copies: every runtime delivers what the kernels do.
void CopyEngineCollectivesDeliverTheSameBytes(core::Runtime& rt) {
  all_gather_case(rt, core::CollectiveAlgo::copy_engine);
  all_to_all_case(rt, false, core::CollectiveAlgo::copy_engine);
}

// Sizes are checked at the call: one entry per member or std::invalid_argument, on every rank, before anything
// is exchanged (so the run continues and the next collective still matches).
void AllToAllWithWrongSizeCountThrows(core::Runtime& rt) {
  const int P = rt.world_size();
  const auto world = core::Group::world(P);
  auto b = rt.alloc(core::Tier::hbm, floats(kM * (P + 1)), "conformance");
  std::vector<std::uint64_t> right(std::size_t(P), floats(kM)), wrong(std::size_t(P + 1), floats(kM));
  EXPECT_THROW(rt.all_to_all(kComm, world, b, wrong, b, right, core::CollectiveAlgo::direct), std::invalid_argument);
  const core::Event e = rt.all_reduce(kComm, world, b, floats(kM), core::Dtype::fp32);
  rt.wait(e);
  rt.free(b);
}

// Two messages with one tag, sent on two streams, received on one: the n-th receive gets the n-th send.
void MessagesMatchInIssueOrder(core::Runtime& rt) {
  const int P = rt.world_size(), r = rt.rank();
  if (P < 2) return;  // needs a peer
  const int peer = r ^ 1;
  if (peer >= P) return;
  const std::uint64_t bytes = 1 << 18;  // large enough for a rendezvous protocol
  const std::int64_t n = std::int64_t(bytes / 4);
  auto a = rt.alloc(core::Tier::hbm, bytes, "conformance"), b = rt.alloc(core::Tier::hbm, bytes, "conformance");
  core::Event first, second;
  if (r % 2 == 0) {
    put(rt, a, std::vector<float>(std::size_t(n), 1.0f));
    put(rt, b, std::vector<float>(std::size_t(n), 2.0f));
    first = rt.send(kComm, peer, a, bytes, 9);
    second = rt.send(kComm2, peer, b, bytes, 9);
  } else {
    first = rt.recv(kComm, peer, a, bytes, 9);
    second = rt.recv(kComm, peer, b, bytes, 9);
  }
  rt.wait(first);
  rt.wait(second);
  if (r % 2 == 1) {
    expect_all(read(rt, a, n, first), 1.0f, "first message");
    expect_all(read(rt, b, n, second), 2.0f, "second message");
  }
  const core::Span* s = find_span(rt, r % 2 == 0 ? "send" : "recv");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->kind, core::SpanKind::comm);
  EXPECT_EQ(s->bytes, bytes);
  rt.free(a), rt.free(b);
}

}  // namespace moesys::conformance
