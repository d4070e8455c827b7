#!/usr/bin/env python3
"""Plots of a training study: `plot_training.py results/<name>` reads runs.json and writes, beside it,
throughput_vs_gpus.png (tokens/s per variant where a variant spans several GPU counts), ratios.png (each variant
against its case's baseline), step_breakdown.png (compute / exposed communication / exposed copies / idle of the
simulated step) and memory.png (peak memory per rank and tier). Every file is written to a temporary name and
renamed into place. Needs matplotlib (Debian's python3-matplotlib: run with /usr/bin/python3)."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig, path):
    tmp = path + ".tmp"
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def throughput_vs_gpus(runs, title, out):
    # One line per (variant, workload kind), when it has at least two GPU counts.
    # Runs on one line share variant, workload kind, micro-batch and fabric; only the GPU count differs.
    lines = {}
    for r in runs:
        s = r["summary"]
        key = (r["variant"] or s["policy_name"], s["workload"]["kind"], s["model"]["micro_batch"],
               s.get("spine_oversubscription", 1.0))
        lines.setdefault(key, {}).setdefault(s["gpus"], s["tokens_per_s"])
    lines = {k: v for k, v in lines.items() if len(v) >= 2}
    if not lines:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    micro = {k[2] for k in lines}
    for (variant, kind, mb, spine), pts in sorted(lines.items()):
        xs = sorted(pts)
        extra = [] if kind == "uniform" else [kind]
        if len(micro) > 1:
            extra.append(f"micro-batch {mb}")
        if spine != 1.0:
            extra.append(f"spine {spine:g}:1")
        label = variant + (f" ({', '.join(extra)})" if extra else "")
        ax.plot(xs, [pts[x] / 1e6 for x in xs], marker="o", label=label)
    ax.set_xscale("log", base=2)
    xs = sorted({x for pts in lines.values() for x in pts})
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("GPUs")
    ax.set_ylabel("million tokens / s (simulated)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out)
    return True


def ratios_plot(ratios, title, out):
    if not ratios:
        return False
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ratios) + 1.5))
    labels = [f"{q['case']}: {q['variant']} vs {q['baseline']}" for q in ratios]
    vals = [q["throughput_ratio"] for q in ratios]
    ax.barh(range(len(vals)), vals, color=["tab:green" if v >= 1 else "tab:red" for v in vals])
    for i, v in enumerate(vals):
        ax.text(v, i, f" x{v:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(vals)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("throughput ratio (tokens/s against the case's baseline)")
    ax.set_title(title)
    save(fig, out)
    return True


def breakdown_plot(runs, title, out):
    parts = [("compute", "tab:blue"), ("exposed_comm", "tab:orange"), ("exposed_copy", "tab:purple"), ("idle", "tab:gray")]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(runs) + 1.5))
    left = [0.0] * len(runs)
    for name, color in parts:
        vals = [r["summary"]["breakdown_s"][name] for r in runs]
        ax.barh(range(len(runs)), vals, left=left, color=color, label=name.replace("_", " "))
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels([r["label"] for r in runs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per step (mean over ranks)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, out)


def memory_plot(runs, title, out):
    tiers = [("peak_hbm_gib", "HBM", "tab:blue"), ("peak_dram_gib", "host memory", "tab:green"),
             ("peak_ssd_gib", "SSD", "tab:brown")]
    used = [t for t in tiers if any(r["summary"]["memory"][t[0]] > 0 for r in runs)]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(runs) * len(used) + 1.5))
    height = 0.8 / len(used)
    for k, (key, name, color) in enumerate(used):
        vals = [r["summary"]["memory"][key] for r in runs]
        ax.barh([i + k * height for i in range(len(runs))], vals, height=height, color=color, label=name)
    hbm = runs[0]["summary"]["memory"]["capacity_gib"][0]
    ax.axvline(hbm, color="tab:red", linewidth=0.8, linestyle="--", label=f"HBM capacity ({hbm:.0f} GiB)")
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(runs))])
    ax.set_yticklabels([r["label"] for r in runs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("peak GiB per rank (largest rank)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, out)


def main():
    if len(sys.argv) != 2:
        print("usage: plot_training.py results/<study>", file=sys.stderr)
        return 2
    folder = sys.argv[1]
    with open(os.path.join(folder, "runs.json")) as f:
        doc = json.load(f)
    runs = [r for r in doc["runs"] if r["status"] == "ok"]
    if not runs:
        print(f"plot_training.py: no successful run in {folder}", file=sys.stderr)
        return 1
    name = doc["name"]
    throughput_vs_gpus(runs, f"{name}: throughput", os.path.join(folder, "throughput_vs_gpus.png"))
    ratios_plot(doc.get("ratios", []), f"{name}: against the baseline", os.path.join(folder, "ratios.png"))
    breakdown_plot(runs, f"{name}: where a step goes", os.path.join(folder, "step_breakdown.png"))
    memory_plot(runs, f"{name}: peak memory", os.path.join(folder, "memory.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
