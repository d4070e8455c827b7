#!/usr/bin/env python3
"""Where the hardware model misses: every calibration point's model against its measurement, one figure per GPU family.

usage: plot_calibration_errors.py MOESYS OUT_DIR

Runs `MOESYS calibration --json` (the built-in tables) and draws, for each family, the model's speed over the measured
speed of every evaluated point (above 1: the model is optimistic), on the left by category and on the right against
the point's size (bytes moved, or FLOPs for GEMMs), with the 15% band the calibration check uses. A time is turned
into a speed by its inverse, so all points read the same way whatever their metric. Latency points (a time) are
hollow, rate points (GB/s, TFLOP/s) filled.
"""
import json
import os
import random
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOLERANCE = 0.15
RATE_UNITS = {"GB/s", "TFLOP/s"}
TICKS = [0.25, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 4]


def point_sizes(family):
    """Size of each point of the family's file by id: the message in bytes, or a GEMM's FLOPs."""
    with open(os.path.join(ROOT, "calibration", f"{family}-measured.json")) as f:
        points = json.load(f)["points"]
    sizes = {}
    for p in points:
        size = p.get("size", {})
        if isinstance(size.get("bytes"), (int, float)):
            sizes[p["id"]] = float(size["bytes"])
        elif "MxNxK" in size:
            m, n, k = (int(x) for x in size["MxNxK"].split("x"))
            sizes[p["id"]] = 2.0 * m * n * k
        elif "M_per_group" in size:
            sizes[p["id"]] = 2.0 * size["groups"] * size["M_per_group"] * size["N"] * size["K"]
    return sizes


def speed_ratio(point):
    """Model speed over measured speed: > 1 when the model is faster than the measurement."""
    if point["unit"] in RATE_UNITS:
        return point["model"] / point["measured"]
    return point["measured"] / point["model"]


def plot_family(family, points, out_dir):
    evaluated = [p for p in points if "model" in p]
    if not evaluated:
        return None
    sizes = point_sizes(family)
    categories = sorted({p["category"] for p in evaluated})
    colour = {c: plt.cm.tab20(i % 20) for i, c in enumerate(categories)}
    rng = random.Random(0)  # the same jitter on every run
    fig, (by_category, by_size) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.3]})
    for ax in (by_category, by_size):
        ax.axhspan(1 - TOLERANCE, 1 + TOLERANCE, color="0.9", zorder=0)
        ax.axhline(1, color="0.5", lw=0.8, zorder=1)
        ax.set_yscale("log")
        ax.set_yticks(TICKS)
        ax.set_yticklabels([f"{t:g}" for t in TICKS])
        ax.minorticks_off()
        ax.grid(True, axis="y", alpha=0.3)
    for p in evaluated:
        ratio = speed_ratio(p)
        rate = p["unit"] in RATE_UNITS
        style = dict(color=colour[p["category"]], s=22, zorder=3)
        style.update({} if rate else {"facecolors": "none", "edgecolors": colour[p["category"]]})
        if not rate:
            style.pop("color")
        x = categories.index(p["category"]) + rng.uniform(-0.25, 0.25)
        by_category.scatter(x, ratio, **style)
        if p["id"] in sizes:
            by_size.scatter(sizes[p["id"]], ratio, label=p["category"], **style)
    by_category.set_xticks(range(len(categories)))
    by_category.set_xticklabels(categories, rotation=45, ha="right")
    by_category.set_ylabel("model speed / measured speed")
    by_size.set_xscale("log")
    by_size.set_xlabel("size (bytes moved; FLOPs for GEMMs)")
    handles, labels = by_size.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    by_size.legend(unique.values(), unique.keys(), fontsize=7, ncol=2, loc="best")
    errors = sorted(abs(p["error"]) for p in evaluated)
    median = errors[len(errors) // 2] if len(errors) % 2 else (errors[len(errors) // 2 - 1] + errors[len(errors) // 2]) / 2
    fig.suptitle(f"{family}: {len(evaluated)} published points, median error {median:.1%}, max {errors[-1]:.0%} "
                 f"(grey: within {TOLERANCE:.0%}; hollow: latency, filled: rate)")
    fig.tight_layout()
    path = os.path.join(out_dir, f"errors-{family}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    moesys, out_dir = argv[1], argv[2]
    os.makedirs(out_dir, exist_ok=True)
    families = json.loads(subprocess.run([moesys, "calibration", "--json"], check=True, capture_output=True,
                                         text=True).stdout)
    for family in families:
        path = plot_family(family["family"], family["points"], out_dir)
        if path:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
