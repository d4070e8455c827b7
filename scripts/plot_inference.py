#!/usr/bin/env python3
"""Plots of an inference study: python3 plot_inference.py results/<study>/

Reads runs.json (written by `moesys experiment`) and writes, next to it, whichever of these the runs allow:
  throughput.png            tokens/s of every run, grouped by scenario
  throughput_vs_k.png       tokens/s of ring-memory runs against K; other policies of the scenario as lines
  memory_vs_k.png           peak GPU memory against K, with the GPU's capacity
  throughput_vs_batch.png   tokens/s against batch size, one line per policy (and K)
  memory_vs_batch.png       peak GPU memory against batch size
Each file is written to a temporary name and renamed, so a failed run leaves no half-written plot.
"""
import json
import os
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def label(run):
    return run["preset"] + (f" K={run['ring_slots']}" if run["policy"] == "moesys" else "")


def scenario(run, with_batch=True):
    s = f"{run['model']}, {run['gpus']} x {run['cluster']}"
    if with_batch:
        s += f", batch {run['batch']}"
    return s + f", prompt {run['prompt_tokens']}, out {run['output_tokens']}"


def save(fig, path):
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def grouped(runs, key):
    groups = OrderedDict()
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    return groups


def plot_bars(runs, out):
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(runs) + 2), 4.5))
    names = [f"{label(r)}\n{r['model']}, {r['gpus']} GPU, b{r['batch']}" for r in runs]
    ax.bar(range(len(runs)), [r["tokens_per_s"] for r in runs], color="tab:blue")
    ax.set_xticks(range(len(runs)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("tokens/s (log)")
    ax.set_title("Simulated generation throughput")
    save(fig, os.path.join(out, "throughput.png"))


def plot_vs_k(runs, out):
    groups = {s: rs for s, rs in grouped(runs, scenario).items()
              if len({r["ring_slots"] for r in rs if r["policy"] == "moesys"}) >= 2}
    if not groups:
        return
    for metric, ylabel, name in (("tokens_per_s", "tokens/s", "throughput_vs_k.png"),
                                 ("peak_hbm_gib", "peak GPU memory (GiB)", "memory_vs_k.png")):
        fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
        for ax, (s, rs) in zip(axes[0], groups.items()):
            ring = sorted((r for r in rs if r["policy"] == "moesys"), key=lambda r: r["ring_slots"])
            ax.plot([r["ring_slots"] for r in ring], [r[metric] for r in ring], "o-", label="moesys ring")
            for i, r in enumerate(x for x in rs if x["policy"] != "moesys"):
                ax.axhline(r[metric], linestyle="--", color=f"C{i + 1}", label=label(r))
            if metric == "peak_hbm_gib":
                ax.axhline(rs[0]["hbm_capacity_gib"], color="black", linewidth=0.8, label="HBM capacity")
            ax.set_ylim(bottom=0)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("ring slots K")
            ax.set_ylabel(ylabel)
            ax.set_title(s, fontsize=8)
            ax.legend(fontsize=7)
        save(fig, os.path.join(out, name))


def plot_vs_batch(runs, out):
    groups = {s: rs for s, rs in grouped(runs, lambda r: scenario(r, with_batch=False)).items()
              if len({r["batch"] for r in rs}) >= 2}
    if not groups:
        return
    for metric, ylabel, name in (("tokens_per_s", "tokens/s", "throughput_vs_batch.png"),
                                 ("peak_hbm_gib", "peak GPU memory (GiB)", "memory_vs_batch.png")):
        fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
        for ax, (s, rs) in zip(axes[0], groups.items()):
            for lab, series in grouped(rs, label).items():
                series = sorted(series, key=lambda r: r["batch"])
                ax.plot([r["batch"] for r in series], [r[metric] for r in series], "o-", label=lab)
            if metric == "peak_hbm_gib":
                ax.axhline(rs[0]["hbm_capacity_gib"], color="black", linewidth=0.8, label="HBM capacity")
                ax.set_ylim(bottom=0)
            else:
                ax.set_yscale("log")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch (sequences per GPU)")
            ax.set_ylabel(ylabel)
            ax.set_title(s, fontsize=8)
            ax.legend(fontsize=7)
        save(fig, os.path.join(out, name))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_inference.py RESULTS_DIR")
    out = sys.argv[1]
    with open(os.path.join(out, "runs.json")) as f:
        runs = json.load(f)["runs"]
    plot_bars(runs, out)
    plot_vs_k(runs, out)
    plot_vs_batch(runs, out)


if __name__ == "__main__":
    main()
