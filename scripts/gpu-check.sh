#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (A100 / H100 / H200), build the CUDA runtime, run its tests and
# the GPU measurements, and write everything as JSON to OUTDIR:
#   tests.json          CTest results of the "cuda" label (kernels vs the CPU runtime, collectives; multi-GPU cases
#                       skip on one GPU)
#   bench.json          moesys-gpu-bench: host-device copy bandwidth (pinned and pageable)
#   train-<preset>.json `moesys train --runtime cuda`: the deepspeed and moesys presets' training program on the
#                       GPUs, and sim-<preset>.json its prediction on the matching simulated GPUs (--gpu GPU_KIND)
#   zoo-<model>.json    `moesys train --runtime cuda --model NAME`: today's architectures (GQA, SwiGLU, RMSNorm,
#                       rope, QK norms, MLA, sigmoid gate with groups) reduced, on the GPUs
#   infer-<policy>.json `moesys infer --runtime cuda`: the generation program on the GPUs under each inference policy
#                       (all-in-gpu, moesys ring K=1, deepspeed pageable); every policy must sample the same tokens
#   summary.json        the above side by side
# Budget: under 8 minutes on one H100 or H200 (build ~2-3 min with -j$(nproc), tests ~1 min, measurements ~1 min).
# Usage: scripts/gpu-check.sh OUTDIR     (MOESYS_GPU_BUILD=dir overrides the build directory)
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: scripts/gpu-check.sh OUTDIR" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
build="${MOESYS_GPU_BUILD:-$root/build-gpu}"
jobs="$(nproc)"
start=$SECONDS
log() { echo "[gpu-check +$((SECONDS - start))s] $*"; }

log "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
log "configuring $build (Release, CUDA archs 80;90)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=80;90" -DMOESYS_CUDA=ON \
  >"$out/configure.log" 2>&1
if ! grep -q "moesys: CUDA runtime enabled" "$out/configure.log"; then
  grep "moesys:" "$out/configure.log" || true
  echo "gpu-check: the CUDA runtime was not configured (see $out/configure.log)" >&2
  exit 1
fi
log "building moesys_cuda_tests and moesys-gpu-bench with -j$jobs"
cmake --build "$build" -j"$jobs" --target moesys_cuda_tests moesys_conformance_cuda moesys-gpu-bench moesys moesys-cuda-worker \
  >"$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; echo "gpu-check: build failed (see $out/build.log)" >&2; exit 1; }

log "running the CUDA tests (ctest -L cuda)"
tests_rc=0
(cd "$build" && timeout 300 ctest -L cuda --output-on-failure --output-junit "$out/ctest-junit.xml") \
  >"$out/ctest.log" 2>&1 || tests_rc=$?
tail -12 "$out/ctest.log"
python3 - "$out/ctest-junit.xml" "$out/tests.json" "$tests_rc" <<'PY'
import json, sys, xml.etree.ElementTree as ET
cases = []
try:
    for c in ET.parse(sys.argv[1]).getroot().iter("testcase"):
        status = c.get("status") or ("failed" if c.find("failure") is not None else
                                     "skipped" if c.find("skipped") is not None else "passed")
        cases.append({"name": c.get("name"), "status": status, "seconds": float(c.get("time") or 0)})
except (OSError, ET.ParseError) as e:
    cases.append({"name": "ctest", "status": "error", "detail": str(e)})
count = lambda s: sum(1 for c in cases if c["status"] == s)
json.dump({"ctest_exit_code": int(sys.argv[3]), "passed": count("passed"), "failed": count("failed"),
           "skipped": count("skipped") + count("notrun"), "tests": cases}, open(sys.argv[2], "w"), indent=2)
PY

# Host-device copy bandwidth on one GPU (the policies themselves run through the one program below).
log "moesys-gpu-bench"
bench_rc=0
timeout 180 "$build/moesys-gpu-bench" --out "$out/bench.json" || bench_rc=$?
if [[ $bench_rc == 77 ]]; then
  echo "gpu-check: no usable GPU on this machine; the build and the (skipped) tests are all that ran" >&2
  exit 77
elif [[ $bench_rc != 0 ]]; then
  echo "gpu-check: moesys-gpu-bench failed (exit $bench_rc)" >&2
  exit "$bench_rc"
fi

# The presets' training program on every GPU of this machine, measured, and predicted on simulated GPUs of the
# closest kind (GPU_KIND: a100-80g, h100; H200 runs are compared with the h100 description).
ngpu="$(nvidia-smi -L 2>/dev/null | wc -l)"
kind="${GPU_KIND:-h100}"
train_model='{"experts": '"$((2 * ngpu))"', "hidden": 1024, "heads": 16, "layers": 4, "vocab": 8192, "seq_len": 512, "micro_batch": 8, "dtype": "fp32", "global_batch": '"$((8 * ngpu))"'}'
for preset in deepspeed moesys; do
  log "moesys train --runtime cuda --ranks $ngpu --preset $preset"
  timeout 180 "$build/moesys" train --runtime cuda --ranks "$ngpu" --preset "$preset" --steps 4 \
    --model "$train_model" --json >"$out/train-$preset.json" || log "real training run failed for $preset (continuing)"
  timeout 120 "$build/moesys" train --gpus "$ngpu" --gpu "$kind" --preset "$preset" --steps 4 \
    --model "$train_model" --json >"$out/sim-$preset.json" || log "simulation failed for $preset (continuing)"
done

# Today's architectures through the same program on the GPUs (each zoo model's shape at a reduced size).
for model in mixtral-8x7b qwen3-30b-a3b gpt-oss-120b '{"preset": "deepseek-v3", "mtp_layers": 0}'; do
  name="$(echo "$model" | tr -dc 'a-z0-9-' | cut -c1-40)"
  log "moesys train --runtime cuda --ranks $ngpu --model $model"
  timeout 120 "$build/moesys" train --runtime cuda --ranks "$ngpu" --model "$model" --steps 3 --json \
    >"$out/zoo-$name.json" || log "zoo model run failed for $name (continuing)"
done

# The generation program on every GPU under each inference policy: the same tokens, and the measured report.
for policy in "all-in-gpu" "moesys --ring-slots 1" "deepspeed --host-memory pageable"; do
  name="${policy%% *}"
  log "moesys infer --runtime cuda --ranks $ngpu --policy $policy"
  # shellcheck disable=SC2086  # the policy's flags are words
  timeout 120 "$build/moesys" infer --runtime cuda --ranks "$ngpu" --gpu "$kind" --policy $policy --json \
    >"$out/infer-$name.json" || log "real inference run failed for $name (continuing)"
done

python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
load = lambda p: json.load(open(p)) if os.path.exists(p) else None
summary = {"tests": load(os.path.join(out, "tests.json"))}
b = load(os.path.join(out, "bench.json"))
if b:
    summary["device"] = b["device"]
    if "copy" in b:
        summary["copy_bytes_per_s"] = {k: v for k, v in b["copy"].items() if k != "bytes"}
for preset in ("deepspeed", "moesys"):
    real, sim = load(os.path.join(out, f"train-{preset}.json")), load(os.path.join(out, f"sim-{preset}.json"))
    if real and sim:
        summary.setdefault("training", {})[preset] = {
            "measured_step_s": real["step_s"], "predicted_step_s": sim["step_s"],
            "step_error_pct": (sim["step_s"] - real["step_s"]) / real["step_s"] * 100,
            "loss_per_step": real.get("loss_per_step")}
t = summary.get("training", {})
if "deepspeed" in t and "moesys" in t:
    m = t["deepspeed"]["measured_step_s"] / t["moesys"]["measured_step_s"]
    p = t["deepspeed"]["predicted_step_s"] / t["moesys"]["predicted_step_s"]
    t["moesys_speedup"] = {"measured": m, "predicted": p, "error_pct": (p - m) / m * 100}
runs = {p: load(os.path.join(out, f"infer-{p}.json")) for p in ("all-in-gpu", "moesys", "deepspeed")}
if any(runs.values()):
    ref = runs["all-in-gpu"]
    summary["inference"] = {p: {"tokens_per_s": r["tokens_per_s"], "tpot_p50_ms": r["tpot_p50_ms"],
                                "same_tokens_as_all_in_gpu": bool(ref) and r["tokens"] == ref["tokens"]}
                            for p, r in runs.items() if r}
tmp = os.path.join(out, "summary.json.tmp")
json.dump(summary, open(tmp, "w"), indent=2)
os.replace(tmp, os.path.join(out, "summary.json"))
print(json.dumps(summary, indent=2))
PY
log "done in $((SECONDS - start)) s; results in $out"
exit "$tests_rc"
