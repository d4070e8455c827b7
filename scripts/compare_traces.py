#!/usr/bin/env python3
"""Measured against predicted, operation by operation: two Chrome traces of the same step (`moesys train --trace`,
one real run and its simulation) summed per operation name and kind, the largest differences first.

  scripts/compare_traces.py MEASURED.json PREDICTED.json [--top N] [--json OUT.json]

Times are the spans' own durations summed over every rank and stream (overlapping spans add up), so the table says
where the model's per-operation costs are off, not how the step's critical path moves. Exit 2 on unreadable input.
"""
import argparse
import json
import os
import sys
from collections import defaultdict


def per_operation(path):
    try:
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"compare_traces: {path}: expected a Chrome trace with traceEvents ({e})", file=sys.stderr)
        sys.exit(2)
    ops = defaultdict(lambda: [0, 0.0])
    for e in events:
        if not isinstance(e, dict) or e.get("ph") != "X" or e.get("cat") == "phase":
            continue
        if not isinstance(e.get("name"), str):
            print(f"compare_traces: {path}: a complete event without a name", file=sys.stderr)
            sys.exit(2)
        # The runtimes name one collective differently (all_to_all on real ranks, alltoall in the simulator).
        key = (e.get("cat", ""), e["name"].replace("_", ""))
        ops[key][0] += 1
        ops[key][1] += float(e.get("dur", 0)) / 1e3  # us -> ms
    return ops


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("measured")
    p.add_argument("predicted")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--json", dest="json_out")
    a = p.parse_args()
    measured, predicted = per_operation(a.measured), per_operation(a.predicted)
    rows = []
    for key in sorted(set(measured) | set(predicted)):
        m, s = measured.get(key, [0, 0.0]), predicted.get(key, [0, 0.0])
        rows.append({"kind": key[0], "operation": key[1], "count": m[0], "predicted_count": s[0],
                     "measured_ms": m[1], "predicted_ms": s[1],
                     "error_pct": (s[1] - m[1]) / m[1] * 100 if m[1] > 0 else None})
    rows.sort(key=lambda r: -abs(r["measured_ms"] - r["predicted_ms"]))
    print(f"{'kind':<11} {'operation':<28} {'count':>6} {'measured ms':>12} {'predicted ms':>13} {'error':>8}")
    for r in rows[: a.top]:
        err = f"{r['error_pct']:+.0f}%" if r["error_pct"] is not None else "-"
        print(f"{r['kind']:<11} {r['operation'][:28]:<28} {r['count']:>6} {r['measured_ms']:>12.3f} "
              f"{r['predicted_ms']:>13.3f} {err:>8}")
    totals = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        totals[r["kind"]][0] += r["measured_ms"]
        totals[r["kind"]][1] += r["predicted_ms"]
    for kind, (m, s) in sorted(totals.items()):
        print(f"{'total':<11} {kind:<28} {'':>6} {m:>12.3f} {s:>13.3f}")
    if a.json_out:
        tmp = a.json_out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"operations": rows, "totals_ms": {k: {"measured": v[0], "predicted": v[1]}
                                                         for k, v in totals.items()}}, f, indent=1)
        os.replace(tmp, a.json_out)


if __name__ == "__main__":
    main()
