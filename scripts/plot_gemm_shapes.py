#!/usr/bin/env python3
"""GEMM throughput by shape: the calibration's GEMM points against the model.

usage: plot_gemm_shapes.py MOESYS OUT_DIR

Runs `MOESYS calibration --family F --json` for A100, H100 and H200 and draws gemm-shapes.png: on the left, the
`humming` sweeps (M rows against 8192 x 8192 fp16 weights) measured and modelled against M on each GPU, where a GEMM
goes from streaming its weights (memory-bound) to filling the tensor cores; on the right, every other GEMM point's
model against its measurement (OpenXLA's H100 shape grid, Triton's A100 square sweep, DeepGEMM's fp8 shapes,
mamf-finder's and FlagPerf's large ones), with the 15% band of the calibration check.
"""
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

FAMILIES = ["a100", "h100", "h200"]
TOLERANCE = 0.15
SWEEP = "-humming-"  # the M sweeps' point ids: gemm-<gpu>-fp16-humming-<M>x8192x8192
GROUPS = [("-xla-", "OpenXLA grid (H100, bf16)"), ("-tritondocs-", "Triton tutorial (A100, fp16)"),
          ("deepgemm", "DeepGEMM (H800, fp8)"), ("", "mamf-finder / FlagPerf (large)")]


def gemm_points(moesys, family):
    out = subprocess.run([moesys, "calibration", "--family", family, "--json"], check=True, capture_output=True,
                         text=True).stdout
    return [p for p in json.loads(out)[0]["points"] if p["category"].startswith("gemm") and "model" in p]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    moesys, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    points = {f: gemm_points(moesys, f) for f in FAMILIES}
    fig, (sweep, scatter) = plt.subplots(1, 2, figsize=(12, 5))
    for family, color in zip(FAMILIES, ["tab:blue", "tab:orange", "tab:green"]):
        rows = sorted((int(p["id"].split(SWEEP)[1].split("x")[0]), p) for p in points[family] if SWEEP in p["id"])
        if not rows:
            continue
        gpu = rows[0][1]["id"].split("-")[1].upper()
        m = [r[0] for r in rows]
        sweep.plot(m, [r[1]["measured"] for r in rows], "o", color=color, label=f"{gpu} measured")
        sweep.plot(m, [r[1]["model"] for r in rows], "-", color=color, label=f"{gpu} model")
    sweep.set(xscale="log", yscale="log", xlabel="M (rows) of M x 8192 x 8192, fp16", ylabel="TFLOP/s",
              title="humming's torch.matmul sweeps")
    sweep.legend(fontsize=8)
    sweep.grid(True, which="both", alpha=0.3)
    others = [p for f in FAMILIES for p in points[f] if SWEEP not in p["id"]]
    for (key, label), marker in zip(GROUPS, "sD^o"):
        group = [p for p in others if key in p["id"]]
        others = [p for p in others if p not in group]
        if group:
            scatter.plot([p["measured"] for p in group], [p["model"] for p in group], marker, alpha=0.75,
                         label=f"{label}: {len(group)}")
    lo, hi = 3, 2000
    scatter.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    scatter.fill_between([lo, hi], [lo * (1 - TOLERANCE), hi * (1 - TOLERANCE)],
                         [lo * (1 + TOLERANCE), hi * (1 + TOLERANCE)], color="grey", alpha=0.2)
    scatter.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured TFLOP/s",
                ylabel="model TFLOP/s", title="other GEMM tables (grey: the check's 15%)")
    scatter.legend(fontsize=8)
    scatter.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, "gemm-shapes.png")
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
