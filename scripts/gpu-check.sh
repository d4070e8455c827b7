#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (A100 / H100 / H200), build the CUDA runtime, run its tests and
# the GPU measurements, and write everything as JSON to OUTDIR:
#   tests.json          the CUDA tests and the runtime conformance suite in one process (kernels vs the CPU runtime,
#                       collectives, memory); the multi-GPU cases need mpirun: `ctest -L cuda` in the build directory
#   bench.json          moesys-gpu-bench: host-device copy bandwidth (pinned and pageable)
#   train-<preset>.json `moesys train --runtime cuda`: the deepspeed and moesys presets' training program on the
#                       GPUs, and sim-<preset>.json its prediction on the matching simulated GPUs (--gpu GPU_KIND);
#                       trace-<preset>-measured.json / -predicted.json: the last step of each as a Chrome trace,
#                       ops-<preset>.txt / .json: the two compared operation by operation (compare_traces.py)
#   zoo-<model>.json    `moesys train --runtime cuda --model NAME`: today's architectures (GQA, SwiGLU, RMSNorm,
#                       rope, QK norms, MLA, sigmoid gate with groups) reduced, on the GPUs
#   infer-<policy>.json `moesys infer --runtime cuda`: the generation program on the GPUs under each inference policy
#                       (all-in-gpu, moesys ring K=1, deepspeed pageable); every policy must sample the same tokens
#   summary.json        the above side by side
# Budget: under 8 minutes on one H100 or H200 (build ~2-3 min with -j$(nproc), tests ~1 min, measurements ~1 min).
# Usage: scripts/gpu-check.sh OUTDIR                  build here (MOESYS_GPU_BUILD=dir overrides the build directory)
#        scripts/gpu-check.sh --bundle FILE OUTDIR    run the programs packed by scripts/gpu-bundle.sh, on a node that
#                                                     has the driver, CUDA and NCCL but not this project's other
#                                                     dependencies (one GPU: no mpirun needed)
set -euo pipefail

bundle=""
if [[ $# -eq 3 && "$1" == "--bundle" ]]; then
  bundle="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
  shift 2
fi
if [[ $# -ne 1 ]]; then
  echo "usage: scripts/gpu-check.sh [--bundle FILE] OUTDIR" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
jobs="$(nproc)"
start=$SECONDS
log() { echo "[gpu-check +$((SECONDS - start))s] $*"; }

log "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
if [[ -n "$bundle" ]]; then
  rt="$(mktemp -d)"
  trap 'rm -rf "$rt"' EXIT
  tar -C "$rt" -xJf "$bundle" 2>/dev/null ||  # without xz, through Python's lzma
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$rt"
  bin="$rt/bin"
  tests_bin="$rt/bin"
  # The node's GPU libraries: the loader's cache first, then the toolkit and Python-packaged copies (NCCL ships in
  # the nvidia-nccl wheel on many images).
  gpu_dirs=""
  while read -r lib; do  # the names the packed programs were linked against (gpu-bundle.sh wrote them)
    found="$( (ldconfig -p 2>/dev/null || true) | awk -v l="$lib" '$1 == l && !f {print $NF; f = 1}')"
    [[ -n "$found" ]] || found="$( (find /usr/local /usr/lib /opt -name "$lib" 2>/dev/null || true) | sed -n 1p)"
    [[ -n "$found" ]] ||
      { echo "gpu-check: $lib not found on this node (the bundle was built against it: same CUDA major?)" >&2; exit 1; }
    gpu_dirs="$gpu_dirs:$(dirname "$found")"
    log "$lib: $found"
  done <"$rt/gpu-libs.txt"
  export LD_LIBRARY_PATH="$rt/lib$gpu_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export OMPI_MCA_mca_base_component_path="$rt/ompi" OMPI_MCA_ess_singleton_isolated=1
else
  build="${MOESYS_GPU_BUILD:-$root/build-gpu}"
  bin="$build"
  tests_bin="$build/exec/cuda"
  log "configuring $build (Release, CUDA archs 80;90)"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=80;90" -DMOESYS_CUDA=ON \
    >"$out/configure.log" 2>&1
  if ! grep -q "moesys: CUDA runtime enabled" "$out/configure.log"; then
    grep "moesys:" "$out/configure.log" || true
    echo "gpu-check: the CUDA runtime was not configured (see $out/configure.log)" >&2
    exit 1
  fi
  log "building the CUDA tests, moesys-gpu-bench and the programs with -j$jobs"
  cmake --build "$build" -j"$jobs" --target moesys_cuda_tests moesys_conformance_cuda moesys-gpu-bench moesys \
    moesys-cuda-worker >"$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log"; echo "gpu-check: build failed (see $out/build.log)" >&2; exit 1; }
fi

# The single-process tests run directly (multi-rank cases need mpirun and as many GPUs; ctest -L cuda in the build
# directory runs those too).
log "running the CUDA tests and the runtime conformance suite"
tests_rc=0
for t in moesys_cuda_tests moesys_conformance_cuda; do
  rc=0
  filter='*'
  [[ $t == moesys_cuda_tests ]] && filter='CudaKernels.*:CudaCollectives.*:CudaMemory.*'  # CudaFaults needs 2 ranks
  MOESYS_EXEC_TIMEOUT_S=60 OPENBLAS_NUM_THREADS=1 timeout 150 "$tests_bin/$t" --gtest_filter="$filter" \
    --gtest_output="xml:$out/$t.xml" >"$out/$t.log" 2>&1 || rc=$?
  tail -4 "$out/$t.log"
  [[ $rc == 0 || $rc == 77 ]] || tests_rc=$rc
done
python3 - "$out" "$tests_rc" <<'PY'
import json, os, sys, xml.etree.ElementTree as ET
cases = []
for name in ("moesys_cuda_tests", "moesys_conformance_cuda"):
    try:
        for c in ET.parse(os.path.join(sys.argv[1], name + ".xml")).getroot().iter("testcase"):
            if c.find("failure") is not None or c.find("error") is not None:
                status = "failed"
            elif c.find("skipped") is not None or c.get("result") == "skipped" or c.get("status") == "notrun":
                status = "skipped"
            else:
                status = "passed"
            cases.append({"name": f'{c.get("classname")}.{c.get("name")}', "status": status,
                          "seconds": float(c.get("time") or 0)})
    except (OSError, ET.ParseError) as e:
        cases.append({"name": name, "status": "error", "detail": str(e)})
count = lambda s: sum(1 for c in cases if c["status"] == s)
json.dump({"exit_code": int(sys.argv[2]), "passed": count("passed"), "failed": count("failed") + count("error"),
           "skipped": count("skipped"), "tests": cases}, open(os.path.join(sys.argv[1], "tests.json"), "w"), indent=2)
PY

# Host-device copy bandwidth on one GPU (the policies themselves run through the one program below).
log "moesys-gpu-bench"
bench_rc=0
timeout 180 "$bin/moesys-gpu-bench" --out "$out/bench.json" || bench_rc=$?
if [[ $bench_rc == 77 ]]; then
  echo "gpu-check: no usable GPU on this machine; the build and the (skipped) tests are all that ran" >&2
  exit 77
elif [[ $bench_rc != 0 ]]; then
  log "moesys-gpu-bench failed (exit $bench_rc; continuing)"
fi

# The presets' training program on every GPU of this machine, measured, and predicted on simulated GPUs of the
# same kind (from the GPU's name; GPU_KIND: a100-80g, a100-40g, h100, h200, h800).
# One rank per usable GPU: the visible devices (CUDA_VISIBLE_DEVICES), else every GPU nvidia-smi lists.
ngpu="$( (nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true) | grep -c . || true)"
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  ngpu="$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c . || true)"
fi
gpu_name="$( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true) | sed -n 1p)"
case "$gpu_name" in
  *H200*) kind=h200 ;; *H800*) kind=h800 ;; *A100*40GB*) kind=a100-40g ;; *A100*) kind=a100-80g ;; *) kind=h100 ;;
esac
kind="${GPU_KIND:-$kind}"
log "predictions on simulated $kind GPUs (GPU_KIND overrides)"
default_model="{\"experts\": $((2 * ngpu)), \"hidden\": 1024, \"heads\": 16, \"layers\": 4, \"vocab\": 8192, "
default_model+="\"seq_len\": 512, \"micro_batch\": 8, \"dtype\": \"fp32\", \"global_batch\": $((8 * ngpu))}"
train_model="${MOESYS_GPU_TRAIN_MODEL:-$default_model}"
log "training model: $train_model (MOESYS_GPU_TRAIN_MODEL overrides)"
for preset in deepspeed moesys; do
  log "moesys train --runtime cuda --ranks $ngpu --preset $preset"
  timeout 180 "$bin/moesys" train --runtime cuda --ranks "$ngpu" --gpu "$kind" --preset "$preset" --steps 4 \
    --model "$train_model" --trace "$out/trace-$preset-measured.json" --json >"$out/train-$preset.json" ||
    log "real training run failed for $preset (continuing)"
  timeout 120 "$bin/moesys" train --gpus "$ngpu" --gpu "$kind" --preset "$preset" --steps 4 \
    --model "$train_model" --trace "$out/trace-$preset-predicted.json" --json >"$out/sim-$preset.json" ||
    log "simulation failed for $preset (continuing)"
done

for preset in deepspeed moesys; do  # where the prediction is off, operation by operation
  python3 "$root/scripts/compare_traces.py" "$out/trace-$preset-measured.json" "$out/trace-$preset-predicted.json" \
    --json "$out/ops-$preset.json" >"$out/ops-$preset.txt" 2>&1 || log "no operation table for $preset (continuing)"
done

# Today's architectures through the same program on the GPUs (each zoo model's shape at a reduced size).
for model in mixtral-8x7b qwen3-30b-a3b gpt-oss-120b '{"preset": "deepseek-v3", "mtp_layers": 0}'; do
  name="$(echo "$model" | tr -dc 'a-z0-9-' | cut -c1-40)"
  log "moesys train --runtime cuda --ranks $ngpu --model $model"
  timeout 120 "$bin/moesys" train --runtime cuda --ranks "$ngpu" --model "$model" --steps 3 --json \
    >"$out/zoo-$name.json" || log "zoo model run failed for $name (continuing)"
done

# The generation program on every GPU under each inference policy: the same tokens, and the measured report.
for policy in "all-in-gpu" "moesys --ring-slots 1" "deepspeed --host-memory pageable"; do
  name="${policy%% *}"
  log "moesys infer --runtime cuda --ranks $ngpu --policy $policy"
  # shellcheck disable=SC2086  # the policy's flags are words
  timeout 120 "$bin/moesys" infer --runtime cuda --ranks "$ngpu" --gpu "$kind" --policy $policy --json \
    >"$out/infer-$name.json" || log "real inference run failed for $name (continuing)"
done

python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def load(p):  # a run that failed leaves an empty or partial file
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
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
            "measured_step_times_s": real.get("step_times_s"),
            "measured_breakdown_s": real.get("breakdown_s"), "predicted_breakdown_s": sim.get("breakdown_s"),
            "measured_peak_memory": real.get("memory"), "predicted_peak_memory": sim.get("memory"),
            "loss_per_step": real.get("loss_per_step"),
            "largest_operation_differences": (load(os.path.join(out, f"ops-{preset}.json")) or {}).get(
                "operations", [])[:8]}
t = summary.get("training", {})
if "deepspeed" in t and "moesys" in t:
    m = t["deepspeed"]["measured_step_s"] / t["moesys"]["measured_step_s"]
    p = t["deepspeed"]["predicted_step_s"] / t["moesys"]["predicted_step_s"]
    t["moesys_speedup"] = {"measured": m, "predicted": p, "error_pct": (p - m) / m * 100}
zoo = {os.path.basename(p)[4:-5]: load(p) for p in sorted(glob.glob(os.path.join(out, "zoo-*.json")))}
summary["zoo"] = {m: {"step_s": r.get("step_s"), "loss_per_step": r.get("loss_per_step")} for m, r in zoo.items() if r}
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
