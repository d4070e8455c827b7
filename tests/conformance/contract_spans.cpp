// Conformance: one span per operation, on its stream, of its kind; phases as host spans.
#include "contract_cases.hpp"
#include "contract_support.hpp"

namespace moesys::conformance {

using core::SpanKind;

void OneSpanPerOperation(core::Runtime& rt) {
  const int P = rt.world_size();
  auto x = rt.alloc(core::Tier::hbm, floats(1024), "conformance");
  auto host = rt.alloc(core::Tier::dram, floats(1024), "conformance");
  rt.synchronize();
  const std::size_t before = rt.spans().size();
  const double t0 = rt.now_s();
  rt.compute(core::streams::kCompute, fill(x, 1024, 1.0), "spans:fill");
  rt.copy(core::streams::kH2D, x, host, floats(1024));
  rt.all_reduce(core::streams::kComm, core::Group::world(P), x, floats(1024), core::Dtype::fp32);
  rt.synchronize();
  const double t1 = rt.now_s();
  const auto& spans = rt.spans();
  ASSERT_EQ(spans.size(), before + 3) << "one span per operation";
  struct Want {
    SpanKind kind;
    const char* stream;
    const char* op;
    std::uint64_t bytes;
  };
  const Want want[] = {{SpanKind::compute, "compute", "spans:fill", floats(1024)},
                       {SpanKind::copy, "h2d", "copy dram->hbm", floats(1024)},
                       {SpanKind::collective, "comm", "all_reduce", floats(1024)}};
  for (const Want& w : want) {
    int found = 0;
    for (std::size_t i = before; i < spans.size(); ++i) {
      const core::Span& s = spans[i];
      if (s.kind != w.kind) continue;
      ++found;
      EXPECT_EQ(s.stream, w.stream) << s.name;
      EXPECT_TRUE(names_op(s.name, w.op)) << s.name << " should name " << w.op;
      EXPECT_EQ(s.rank, rt.rank());
      EXPECT_EQ(s.bytes, w.bytes) << s.name;
      EXPECT_LE(t0, s.start_s + 1e-12) << s.name;
      EXPECT_LE(s.start_s, s.end_s) << s.name;
      EXPECT_LE(s.end_s, t1 + 1e-12) << s.name;
    }
    EXPECT_EQ(found, 1) << w.op;
  }
  rt.free(x), rt.free(host);
}

void PhasesBecomeHostSpans(core::Runtime& rt) {
  auto x = rt.alloc(core::Tier::hbm, floats(1024), "conformance");
  const double t0 = rt.now_s();
  rt.begin_phase("conformance/outer");
  rt.begin_phase("conformance/inner");
  rt.wait(rt.compute(core::streams::kCompute, fill(x, 1024, 1.0), "phases:fill"));
  rt.end_phase();
  rt.end_phase();
  const double t1 = rt.now_s();
  const core::Span* inner = find_span(rt, "conformance/inner");
  const core::Span* outer = find_span(rt, "conformance/outer");
  ASSERT_TRUE(inner && outer);
  for (const core::Span* s : {inner, outer}) {
    EXPECT_EQ(s->kind, SpanKind::phase);
    EXPECT_EQ(s->stream, "host");
    EXPECT_EQ(s->rank, rt.rank());
  }
  EXPECT_LE(t0, outer->start_s);
  EXPECT_LE(outer->start_s, inner->start_s);
  EXPECT_LE(inner->end_s, outer->end_s);
  EXPECT_LE(outer->end_s, t1);
  // The inner phase waited for the kernel: it contains the kernel's span.
  const core::Span* k = find_span(rt, "phases:fill");
  ASSERT_NE(k, nullptr);
  EXPECT_LE(inner->start_s, k->start_s + 1e-12);
  EXPECT_LE(k->end_s, inner->end_s + 1e-12);
  rt.free(x);
}

}  // namespace moesys::conformance
