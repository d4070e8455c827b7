#!/usr/bin/env python3
"""Interrupts stop moesys and everything it started (issue 13, class 9).

    interrupt_test.py MOESYS SOURCE_DIR {study-term|study-kill|validate-term}

study-term     SIGTERM to `experiment` while a forked simulation runs: exit 143 within a second with one line,
               no simulation left, no file in the results folder.
study-kill     SIGKILL to `experiment`: the forked simulation dies with it (parent-death signal).
validate-term  SIGTERM to `validate` while mpirun and its workers run: all of them gone within a second and a half,
               no stray file in the temporary folder.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


def descendants(pid):
    """Every process whose chain of parents leads to `pid` (from /proc)."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent_of[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found = []
    for p in parent_of:
        q = p
        while q in parent_of and q not in (0, 1):
            q = parent_of[q]
            if q == pid:
                found.append(p)
                break
    return found


def alive(pids):
    live = []
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                live.append(p)
        except OSError:
            pass
    return live


def wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    sys.exit("timed out waiting for " + what)


def files_under(folder):
    return [os.path.join(r, f) for r, _d, fs in os.walk(folder) for f in fs]


def main():
    moesys, source, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    work = tempfile.mkdtemp(prefix="moesys-interrupt-")
    tmp = os.path.join(work, "tmp")
    os.mkdir(tmp)
    env = dict(os.environ, TMPDIR=tmp)
    if mode.startswith("study"):
        # training-smoke's runs, a thousand times over: long enough (tens of seconds; a run takes about 10 ms on a
        # quiet machine) to be interrupted mid-way.
        with open(os.path.join(source, "experiments", "training-smoke.json")) as f:
            study = json.load(f)
        study["grid"].append([{"case": "repeat %d" % i} for i in range(500)])
        study_file = os.path.join(work, "study.json")
        with open(study_file, "w") as f:
            json.dump(study, f)
        cmd = [moesys, "experiment", study_file, "--no-plots", "--quiet", "--results", os.path.join(work, "results")]
        minimum_children = 1
    else:
        cmd = [moesys, "validate", "--ranks", "2", "--steps", "50", "--warmup", "1", "--repeats", "1"]
        minimum_children = 3  # mpirun and two workers
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children = wait_for(lambda: (lambda d: d if len(d) >= minimum_children else None)(descendants(proc.pid)), 60,
                        "the children of moesys")
    time.sleep(0.3)
    children = sorted(set(children) | set(descendants(proc.pid)))
    sig = signal.SIGKILL if mode == "study-kill" else signal.SIGTERM
    sent = time.monotonic()
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=10)
    exited_s = time.monotonic() - sent
    err = err.decode("utf-8", "replace")
    wait_for(lambda: not alive(children) or None, 2.0, "the children to end: still alive %s" % alive(children))
    gone_s = time.monotonic() - sent
    problems = []
    if mode != "study-kill":
        if proc.returncode != 128 + sig:
            problems.append("exit code %d, expected %d" % (proc.returncode, 128 + sig))
        if "moesys: interrupted by SIGTERM" not in err:
            problems.append("no interrupt message on stderr: %r" % err)
        if exited_s > 1.5:
            problems.append("took %.2f s to exit" % exited_s)
    left = files_under(os.path.join(work, "results")) + files_under(tmp)
    if left:
        problems.append("files left behind: %s" % left)
    print("%s: %d children, moesys ended after %.2f s, all children after %.2f s" % (mode, len(children), exited_s,
                                                                                    gone_s))
    if problems:
        sys.exit("; ".join(problems))


if __name__ == "__main__":
    main()
