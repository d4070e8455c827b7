#!/usr/bin/env python3
"""Runs moesys on generated hostile inputs and classifies every outcome.

    tests/fuzz/run_fuzz.py --moesys build/moesys --seed 1 --cases 15000 --jobs 2 --out fuzz-findings

Each case runs in an empty work folder with its own temporary folder, under a timeout and an address-space cap,
and ends as one of:
  clean-exit-2     exit 2 with exactly one line "moesys: error: <file or flag>: ..." and nothing left behind
  accepted         exit 0 with finite numbers on stdout
  runtime-failure  exit 1 with one line "moesys: failure: ..." (a real failure, not bad input)
  not-run          a command line the kernel refuses (an argument over 128 KiB)
  unclear-message  exit 2 whose message spans lines, names no file or flag, or quotes the JSON library
  non-finite       exit 0 with nan or inf in the output
  partial-files    a failed run that left files in its work or temporary folder
  crash            killed by a signal, any other exit code, or a sanitizer report
  hang             still running at the timeout
The last five are findings: each is saved with its input and command under --out, and --check makes the exit code
non-zero when there is one (CI). Cases are generated from (seed, index) alone (tests/fuzz/mutate.py).
"""
import argparse
import collections
import concurrent.futures
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mutate  # noqa: E402

FINDINGS = ("unclear-message", "non-finite", "partial-files", "crash", "hang")
SAVED = FINDINGS + ("runtime-failure",)  # exit 1 on generated input is suspicious too: saved, not failed
SANITIZER = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|UndefinedBehaviorSanitizer")
NON_FINITE = re.compile(r"(?<![A-Za-z_])(nan|-?inf(inity)?)(?![A-Za-z_])", re.IGNORECASE)


def limit_memory(cap_bytes):
    def apply():
        os.setsid()  # the case and anything it starts form one group, killed together at the timeout
        if cap_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
    return apply


def leftovers(folder, ignore=()):
    found = []
    for root, _dirs, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            if path not in ignore:
                found.append(os.path.relpath(path, folder))
    return found


def classify(rc, out, err, left, timed_out, input_path):
    if timed_out:
        return "hang"
    if SANITIZER.search(err) or rc < 0 or rc not in (0, 1, 2):
        return "crash"
    if rc == 0:
        return "non-finite" if NON_FINITE.search(out) else "accepted"
    if left:
        return "partial-files"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if rc == 1:
        return "runtime-failure" if len(lines) == 1 and lines[0].startswith("moesys: failure: ") else "unclear-message"
    if len(lines) != 1 or not lines[0].startswith("moesys: error: ") or "json.exception" in lines[0]:
        return "unclear-message"
    # The line names its source: the case's input file, <flags> with a flag (or the JSON path inside an inline
    # flag's value), an environment variable, or reports an infeasible combination with its numbers.
    text = lines[0][len("moesys: error: "):]
    named = (text.startswith(input_path + ": ") or text.startswith("infeasible: ") or
             re.match(r"<flags>: (-{1,2}[\w-]+\S*|FILE|MOESYS_\w+|(model|policy|workload|cluster|parallel|steps|seed)([.\[].*?)?): ",
                      text)
             or re.match(r"/\S+\.json: ", text))  # a file the case's input names (a topology, a trace)
    return "clean-exit-2" if named else "unclear-message"


def run_case(args, index):
    family, argv, data = mutate.generate(args.seed, index, args.cluster_seed)
    case_dir = tempfile.mkdtemp(prefix="moesys-fuzz-")
    work, tmp, inputs = (os.path.join(case_dir, d) for d in ("work", "tmp", "inputs"))
    for d in (work, tmp, inputs):
        os.mkdir(d)
    input_path = os.path.join(inputs, "input.json")
    if data is not None:
        with open(input_path, "wb") as f:
            f.write(data)
    env = dict(os.environ, TMPDIR=tmp, ASAN_OPTIONS="detect_leaks=0")
    command = []
    for a in argv:
        if a.startswith("@ENV:"):
            name, _, value = a[5:].partition("=")
            env[name] = value
            continue
        # A command line cannot carry NUL bytes: they stay in the file-based cases only.
        command.append(a.replace("@FILE", input_path).replace("@WORK", work).replace("\x00", ""))
    start = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.Popen([args.moesys] + command, cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=limit_memory(args.memory_mb << 20))
    except OSError:  # an inline value beyond the kernel's 128 KiB per argument: no shell could pass it either
        shutil.rmtree(case_dir, ignore_errors=True)
        return {"index": index, "family": family, "outcome": "not-run", "command": [], "stderr": ""}
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    wall = time.monotonic() - start
    # The case's folder is random (mkdtemp) and printed in stdout's result lines: a name such as moesys-fuzz-inf3k_x2 must
    # not read as a non-finite number, so it is masked before the output is classified.
    out = out.decode("utf-8", "replace").replace(case_dir, "<case>")
    err = err.decode("utf-8", "replace")
    rc = proc.returncode
    left = leftovers(work) + leftovers(tmp) if rc != 0 else []
    outcome = classify(rc, out, err, left, timed_out, input_path)
    record = {"index": index, "family": family, "outcome": outcome, "rc": rc, "wall_s": round(wall, 2),
              "command": ["moesys"] + command, "stderr": err[-2000:], "left": left}
    if outcome in SAVED and args.out:
        folder = os.path.join(args.out, "%s-%d" % (outcome, index))
        os.makedirs(folder, exist_ok=True)
        if data is not None:
            shutil.copy(input_path, os.path.join(folder, "input.json"))
        with open(os.path.join(folder, "case.json"), "w") as f:
            json.dump(record, f, indent=1)
    shutil.rmtree(case_dir, ignore_errors=True)
    return record


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moesys", required=True, help="the moesys program to test")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--first", type=int, default=0, help="index of the first case (to rerun one case)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=60, help="seconds per case before it counts as a hang")
    p.add_argument("--memory-mb", type=int, default=4096,
                   help="address-space cap per case in MiB (0 = none; sanitizer builds need 0)")
    p.add_argument("--out", default="", help="folder for the findings (input and command of each)")
    p.add_argument("--check", action="store_true", help="exit 1 when any case is a finding (CI)")
    p.add_argument("--cluster", default=os.path.join(here, "..", "..", "topologies", "dgx-a100-40g.json"))
    args = p.parse_args()
    args.moesys = os.path.abspath(args.moesys)
    with open(args.cluster) as f:
        args.cluster_seed = json.load(f)
    if args.out:
        args.out = os.path.abspath(args.out)
    counts = collections.Counter()
    findings = []
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for record in pool.map(lambda i: run_case(args, i), range(args.first, args.first + args.cases)):
            counts[record["outcome"]] += 1
            if record["outcome"] in FINDINGS:
                findings.append(record)
                print("%s: case %d (%s): %s\n  %s" % (record["outcome"], record["index"], record["family"],
                                                      " ".join(record["command"])[:300],
                                                      record["stderr"].strip()[-300:]), file=sys.stderr)
    summary = {"seed": args.seed, "cases": args.cases, "wall_s": round(time.monotonic() - start, 1),
               "outcomes": dict(sorted(counts.items()))}
    print(json.dumps(summary))
    return 1 if args.check and findings else 0


if __name__ == "__main__":
    sys.exit(main())
