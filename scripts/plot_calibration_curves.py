#!/usr/bin/env python3
"""Simulated collective sweeps next to the published points of the same machine: time (latency floor) and bus
bandwidth (ramp, plateau) against size, one figure per machine.

usage: plot_calibration_curves.py MOESYS OUT_DIR

Runs `MOESYS collective --json` for every (family, machine, operation) below with the family's built-in
parameters and plots the calibration/<family>-measured.json points that were measured on that machine with
NCCL's default algorithm by nccl-tests over an RDMA network (EFA and framework-timed points need the other
parameters `moesys calibration` applies to them). Each harness the points were timed with gets its own model
curve: nccl-tests' launch loop with its -g (GPUs per host thread), or CUDA graphs (-G).
"""
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# (family, gpu preset, nodes, GPUs per node, NICs per node, NIC Gb/s, operation as moesys and as the files name it)
MACHINES = [
    ("a100", "a100-80g", 1, 8, 8, 200, "allreduce", "allreduce"),
    ("h100", "h100", 1, 8, 8, 400, "allreduce", "allreduce"),
    ("h100", "h100", 2, 8, 8, 400, "allreduce", "allreduce"),
    ("h100", "h100", 4, 8, 8, 400, "allreduce", "allreduce"),
    ("h200", "h200", 1, 8, 8, 400, "allreduce", "allreduce"),
    ("h100", "h100", 1, 4, 4, 400, "alltoall", "alltoall"),
    ("a100", "a100-80g", 1, 8, 8, 200, "alltoall", "alltoall"),
    ("a100", "a100-80g", 2, 8, 8, 200, "allreduce", "allreduce"),
    ("a100", "a100-80g", 2, 8, 8, 200, "alltoall", "alltoall"),
    ("a100", "a100-40g", 1, 8, 8, 200, "allreduce", "allreduce"),
    ("a100", "a100-40g", 1, 8, 8, 200, "allgather", "allgather"),
    ("a100", "a100-40g", 1, 8, 8, 200, "reducescatter", "reduce_scatter"),
    ("a100", "a100-40g", 1, 8, 8, 200, "alltoall", "alltoall"),
    ("a100", "a100-40g", 2, 8, 8, 200, "allreduce", "allreduce"),
    ("a100", "a100-40g", 2, 8, 8, 200, "allgather", "allgather"),
    ("a100", "a100-40g", 2, 8, 8, 200, "alltoall", "alltoall"),
    ("h100", "h100", 1, 8, 8, 400, "alltoall", "alltoall"),
    ("h100", "h100", 1, 8, 8, 400, "allgather", "allgather"),
    ("h100", "h100", 1, 8, 8, 400, "sendrecv", "p2p_nvlink"),
]


def measured_points(family, gpu, nodes, gpus, category):
    with open(os.path.join(ROOT, "calibration", f"{family}-measured.json")) as f:
        points = json.load(f)["points"]
    out = []
    for p in points:
        hw = p["hardware"]
        # NCCL's default choice over RDMA, timed by nccl-tests: what `moesys collective` simulates.
        if p["category"] != category or p.get("excluded") or p["software"].get("algorithm"):
            continue
        # Of the GPU-to-GPU points, nccl-tests' sendrecv (not nvbandwidth's copies).
        if category == "p2p_nvlink" and "sendrecv" not in p["software"].get("tool", ""):
            continue
        harness = p["software"].get("harness")
        if hw.get("nic_transport") == "efa" or harness not in (None, "cuda_graph"):
            continue
        if hw.get("gpu_preset") != gpu or hw.get("nodes") != nodes or hw.get("gpus_per_node") != gpus:
            continue
        size = p["size"].get("bytes")
        if size is None:
            continue
        size = float(size) if not isinstance(size, str) else float(size[:-1]) * 1024 ** 3
        timing = ("graph", 1) if harness == "cuda_graph" else ("loop", p["software"].get("gpus_per_thread", 1))
        out.append((size, p["metric"], p["value"], p["source"].split(" ")[0], timing))
    return out


def busbw_factor(op, n):
    if op == "sendrecv":
        return 1
    return 2 * (n - 1) / n if op == "allreduce" else (n - 1) / n


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    moesys, out_dir = argv[1], argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for family, gpu, nodes, gpus, nics, gbps, op, category in MACHINES:
        points = measured_points(family, gpu, nodes, gpus, category)
        n = nodes * gpus
        fig, (t_ax, b_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
        for kind, per_thread in sorted({p[4] for p in points} or {("loop", 1)}):
            timing = ["-G", "1"] if kind == "graph" else ["-g", str(per_thread)]
            cmd = [moesys, "collective", "--gpu", gpu, "--nodes", str(nodes), "--gpus-per-node", str(gpus),
                   "--nics-per-node", str(nics), "--nic-gbps", str(gbps), "--op", op, "-b", "8", "-e", "16G", "-f", "2",
                   "--json"] + timing
            run = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            sizes = [r["size_bytes"] for r in run["rows"]]
            label = "model, CUDA graph" if kind == "graph" else f"model, launch loop (-g {per_thread})"
            t_ax.plot(sizes, [r["time_us"] for r in run["rows"]], marker=".", label=label)
            b_ax.plot(sizes, [r["busbw_gbytes_per_s"] for r in run["rows"]], marker=".", label=label)
        by_source = {}
        for size, metric, value, source, _ in points:
            by_source.setdefault(source, []).append((size, metric, value))
        for k, (source, pts) in enumerate(sorted(by_source.items())):
            label = f"published [{k + 1}]"
            times = [(s, v if m == "time" else s * busbw_factor(op, n) / (v * 1e9) * 1e6) for s, m, v in pts]
            bws = [(s, v if m == "busbw" else s * busbw_factor(op, n) / (v * 1e-6) / 1e9) for s, m, v in pts]
            t_ax.scatter(*zip(*times), marker="x", s=40, label=label, zorder=3)
            b_ax.scatter(*zip(*bws), marker="x", s=40, label=label, zorder=3)
            print(f"{family} {nodes}x{gpus} {op} [{k + 1}] {source}")
            fig.text(0.01, 0.01 + 0.03 * k, f"[{k + 1}] {source}", fontsize=7, color="0.3")
        for ax in (t_ax, b_ax):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("size per rank (bytes)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        t_ax.set_yscale("log")
        t_ax.set_ylabel("time (us)")
        b_ax.set_ylabel("bus bandwidth (GB/s)")
        fig.suptitle(f"{op}, {nodes} x {gpus} {gpu} ({family} parameters)")
        fig.tight_layout(rect=(0, 0.03 * (len(by_source) + 1), 1, 1))
        out = os.path.join(out_dir, f"{family}-{gpu}-{nodes}x{gpus}-{op}.png")
        tmp = out + ".tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
