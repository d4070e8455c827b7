#!/usr/bin/env python3
"""Plots bus bandwidth against message size from `moesys collective --json` outputs, one line per file.

usage: plot_collective.py OUT.png RUN.json [RUN.json ...]
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, runs = argv[1], argv[2:]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for path in runs:
        with open(path) as f:
            run = json.load(f)
        sizes = [r["size_bytes"] for r in run["rows"]]
        busbw = [r["busbw_gbytes_per_s"] for r in run["rows"]]
        label = f'{run["op"]} {run["algo"]}, {run["ranks"]} GPUs'
        ax.plot(sizes, busbw, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("size per rank (bytes)")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_title(f'Simulated collectives on {run["cluster"]}')
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
