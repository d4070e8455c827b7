#!/usr/bin/env python3
"""All-to-all time against the number of H100 GPUs (1 to 16 nodes of 8): pplx-kernels' torch all-to-all next to the
model, one panel per size (1 and 128 tokens per GPU of DeepSeek-V3's setting).

usage: plot_alltoall_scaling.py MOESYS OUT_DIR

The measured points are the `a2a-h100-*-pplx-*` entries of calibration/h100-measured.json (mean and the std the
source gives). The model is `MOESYS collective --op alltoall` with the H100 table plus the table's
framework_call_latency_s (the points were timed through torch.distributed), and the same with 4.62 us per network
peer for comparison: the cost the H100 shared with the A100 before its own was fitted.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NODES = [1, 2, 3, 4, 6, 8, 12, 16]
EARLIER_NET_PEER_S = 4.62e-6


def measured():
    """{bytes: [(gpus, mean_us, std_us)]} from the pplx points."""
    with open(os.path.join(ROOT, "calibration", "h100-measured.json")) as f:
        points = json.load(f)["points"]
    out = {}
    for p in points:
        if "-pplx-" not in p["id"]:
            continue
        std = re.search(r"\+/- ([0-9.]+) us", p.get("note", ""))
        gpus = p["hardware"]["nodes"] * p["hardware"]["gpus_per_node"]
        out.setdefault(p["size"]["bytes"], []).append((gpus, p["value"], float(std.group(1)) if std else 0.0))
    return {k: sorted(v) for k, v in out.items()}


def model_us(moesys, nodes, size, calibration=None):
    cmd = [moesys, "collective", "--gpu", "h100", "--nodes", str(nodes), "--gpus-per-node", "8", "--nics-per-node",
           "8", "--nic-gbps", "400", "--op", "alltoall", "-b", str(size), "-e", str(size), "--json"]
    if calibration:
        cmd += ["--calibration", calibration]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return out["rows"][0]["time_us"]


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    moesys, out_dir = argv[1], argv[2]
    table = json.loads(subprocess.run([moesys, "calibration", "--family", "h100", "--json"], check=True,
                                      capture_output=True, text=True).stdout)[0]["parameters"]
    framework_us = table["framework_call_latency_s"] * 1e6
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"alltoall_net_peer_latency_s": EARLIER_NET_PEER_S}, f)
        a100_cost = f.name
    try:
        points = measured()
        fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 4.2))
        for ax, (size, rows) in zip(axes, sorted(points.items())):
            gpus = [8 * n for n in NODES]
            fitted = [model_us(moesys, n, size) + framework_us for n in NODES]
            before = [model_us(moesys, n, size, a100_cost) + framework_us for n in NODES]
            ax.plot(gpus, fitted, "-o", ms=3, label=f"model, H100 table ({table['alltoall_net_peer_latency_s'] * 1e6:.2f} us per network peer)")
            ax.plot(gpus, before, "--", color="gray", label="model with 4.62 us per network peer (the H100's cost before its own fit)")
            ax.errorbar([r[0] for r in rows], [r[1] for r in rows], yerr=[r[2] for r in rows], fmt="s", color="black",
                        capsize=3, label="pplx-kernels, torch all_to_all_single (mean +- std)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(gpus)
            ax.set_xticklabels([str(g) for g in gpus])
            ax.set_yscale("log")
            ax.set_xlabel("GPUs (8 per node)")
            ax.set_ylabel("time per call (us)")
            ax.set_title(f"all-to-all of {size / 1e6:.1f} MB per GPU on H100 nodes")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "h100-alltoall-scaling.png")
        fig.savefig(path, dpi=110)
        print(path)
    finally:
        os.unlink(a100_cost)


if __name__ == "__main__":
    main(sys.argv)
