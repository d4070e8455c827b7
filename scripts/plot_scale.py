#!/usr/bin/env python3
"""Plots how simulating one training step grows with the cluster, from `moesys_sim_profile --json` outputs (rows
of several files are merged by GPU count): wall time split by the simulator's phases, and peak memory.

usage: plot_scale.py OUT.png PROFILE.json [PROFILE.json ...]
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PHASES = ["simgrid", "program", "planning", "bookkeeping", "outside"]


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, paths = argv[1], argv[2:]
    rows = {}
    for path in paths:
        try:
            with open(path) as f:
                for r in json.load(f):
                    rows[r["gpus"]] = r
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"plot_scale.py: {path}: expected moesys_sim_profile --json output ({e})", file=sys.stderr)
            return 2
    gpus = sorted(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(gpus, [rows[g]["wall_s"]["median"] for g in gpus], marker="o", color="black", label="wall (total)")
    for phase in PHASES:
        left.plot(gpus, [max(rows[g]["phases_s"].get(phase, 0.0), 1e-3) for g in gpus], marker=".", label=phase)
    right.plot(gpus, [rows[g]["peak_rss_mib"] / 1024 for g in gpus], marker="o", color="black")
    for ax, title, ylabel in ((left, "wall time of one step, by phase", "seconds"),
                              (right, "peak memory", "GiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(gpus, [str(g) for g in gpus])
        ax.set_xlabel("simulated GPUs")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    fig.tight_layout()
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
