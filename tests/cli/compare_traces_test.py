#!/usr/bin/env python3
"""scripts/compare_traces.py: a simulated step against itself differs in nothing, operation by operation; an
unreadable trace is one line on stderr, exit 2, and no table file.

    compare_traces_test.py MOESYS SOURCE_DIR
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    moesys, source = sys.argv[1], sys.argv[2]
    script = os.path.join(source, "scripts", "compare_traces.py")
    with tempfile.TemporaryDirectory() as work:
        trace = os.path.join(work, "step.json")
        model = '{"experts": 4, "hidden": 256, "heads": 4, "layers": 2, "vocab": 1024, "seq_len": 128, ' \
                '"micro_batch": 2, "global_batch": 4}'
        subprocess.run([moesys, "train", "--gpus", "2", "--steps", "1", "--model", model, "--trace", trace],
                       check=True, stdout=subprocess.DEVNULL)
        table = os.path.join(work, "ops.json")
        out = subprocess.run([sys.executable, script, trace, trace, "--json", table], check=True,
                             capture_output=True, text=True).stdout
        ops = json.load(open(table))["operations"]
        assert len(ops) > 10, f"expected the step's operations, got {len(ops)}"
        for op in ops:
            assert op["count"] == op["predicted_count"] > 0, op
            assert op["measured_ms"] == op["predicted_ms"], op
            assert op["error_pct"] in (0, None), op
        assert any(op["operation"] == "expert fc1" for op in ops), [op["operation"] for op in ops]
        assert "total" in out and "compute" in out, out

        bad = os.path.join(work, "bad.json")
        with open(bad, "w") as f:
            f.write('{"traceEvents": ')
        for args in ([os.path.join(work, "missing.json"), trace], [trace, bad]):
            table = os.path.join(work, "never.json")
            r = subprocess.run([sys.executable, script, *args, "--json", table], capture_output=True, text=True)
            assert r.returncode == 2, (args, r.returncode, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "expected a Chrome trace" in lines[0], r.stderr
            assert not os.path.exists(table) and not os.path.exists(table + ".tmp"), "a table was written"
    print("compare_traces: ok")


if __name__ == "__main__":
    main()
