#!/usr/bin/env python3
"""PyTorch implementation of the MoE layer that moesys-gpu-bench times (exec/model/moe_layer.cpp), for a
same-GPU, same-shape comparison in scripts/gpu-check.sh.

The layer: gate logits x @ Wg, softmax, top-k with weights renormalised over the k choices, GShard capacity
(every first choice claims a slot, in token order, before any second choice; the rest are dropped), dispatch
into [experts, capacity] slots, expert FFN (fc1 + bias, GeLU tanh form, fc2 + bias) as batched GEMMs, weighted
combine; backward through all of it with autograd. fp32 (TF32 GEMMs with --tf32), one GPU, no all-to-all.

Usage: moe_layer_torch.py --hidden 1024 --ffn 4096 --experts 8 --tokens 4096 [--top-k 2 --capacity 1.25
                          --iters 20 --warmup 3 --tf32] --out FILE.json
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F


def gshard_capacity(tokens, top_k, experts, factor):
    exact = factor * tokens * top_k / experts  # core/model_config.cpp: gshard_capacity
    return int(math.ceil(exact - 1e-9 * max(1.0, exact)))


def moe_layer(x, wg, w1, b1, w2, b2, k, cap):
    T, H = x.shape
    E = wg.shape[1]
    probs = torch.softmax(x @ wg, dim=-1)
    top_p, top_e = probs.topk(k, dim=-1)
    weights = top_p / top_p.sum(-1, keepdim=True) if k > 1 else top_p
    choice_e = top_e.t().reshape(-1)  # choice order j * T + t: first choices first
    onehot = F.one_hot(choice_e, E)
    pos = ((onehot.cumsum(0) - 1) * onehot).sum(-1)
    keep = pos < cap
    slot = (choice_e * cap + pos)[keep]
    token = torch.arange(T, device=x.device).repeat(k)[keep]
    send = x.new_zeros(E * cap, H).index_copy(0, slot, x[token])
    h = torch.baddbmm(b1.unsqueeze(1), send.view(E, cap, H), w1)
    y = torch.baddbmm(b2.unsqueeze(1), F.gelu(h, approximate="tanh"), w2).view(E * cap, H)
    w = weights.t().reshape(-1)[keep]
    return x.new_zeros(T, H).index_add(0, token, w.unsqueeze(1) * y[slot])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=4096)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--capacity", type=float, default=1.25)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(1)
    H, Fh, E, T = a.hidden, a.ffn, a.experts, a.tokens
    cap = gshard_capacity(T, a.top_k, E, a.capacity)

    def param(*shape, std):
        return (torch.randn(*shape, device=dev, generator=g) * std).requires_grad_()

    wg = param(H, E, std=H ** -0.5)
    w1, w2 = param(E, H, Fh, std=H ** -0.5), param(E, Fh, H, std=Fh ** -0.5)
    b1, b2 = param(E, Fh, std=0.0), param(E, H, std=0.0)
    x = torch.randn(T, H, device=dev, generator=g).requires_grad_()
    d_out = torch.randn(T, H, device=dev, generator=g)

    def timed(backward, iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            out = moe_layer(x, wg, w1, b1, w2, b2, a.top_k, cap)
            if backward:
                for t in (x, wg, w1, b1, w2, b2):
                    t.grad = None
                out.backward(d_out)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / iters

    timed(True, a.warmup)
    result = {
        "implementation": "pytorch",
        "torch_version": torch.__version__,
        "device": torch.cuda.get_device_name(dev),
        "config": {"tokens_per_rank": T, "hidden": H, "ffn_hidden": Fh, "experts": E, "top_k": a.top_k,
                   "capacity_factor": a.capacity, "capacity": cap, "dtype": "tf32" if a.tf32 else "fp32"},
        "forward_seconds": timed(False, a.iters),
        "forward_backward_seconds": timed(True, a.iters),
    }
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
