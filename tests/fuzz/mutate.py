"""Seeded, deterministic generation of hostile inputs for moesys.

Each case is built from (seed, index) alone, so any case of any campaign can be regenerated exactly. A case is a
command line for one moesys subcommand plus, where the subcommand reads a file, the bytes of that file. Inputs
start from the project's own valid files (cluster descriptions, calibration, study files) and inline JSON flags,
and are damaged the way hostile or careless users damage them: deleted keys, wrong types, zero / negative / huge /
non-finite numbers, duplicate keys, truncation, byte-order marks, UTF-16, NUL bytes, invalid UTF-8, deep nesting,
keys with newlines, and absurd flag values.
"""
import copy
import json
import random

# Numbers a careless or hostile user writes, as JSON text (some are not valid JSON numbers on purpose).
HOSTILE_NUMBERS = ["0", "-1", "-5", "0.5", "1e308", "5e-324", "1e400", "-1e400", "2147483647", "2147483648",
                   "4611686018427387904", "18446744073709551616", "1e18", "NaN", "Infinity", "-0", "1.0000000001",
                   "100000", "65536", "3.5", "\"8\"", "true", "null", "[]", "{}"]
HOSTILE_FLAG_VALUES = ["0", "-1", "-5", "abc", "", "1e400", "inf", "nan", "2147483647", "99999999999", "1.5", "0x10",
                       "1e308", "100000", "1G", "-1K", "1.0000000001", "   7", "7 "]

# Small valid inputs: each runs in seconds when left intact, so that a slow case means a real problem.
SMALL_STUDY_TRAINING = {
    "kind": "training", "name": "fuzz-training", "description": "fuzz seed",
    "base": {"model": {"preset": "gpt-moe", "experts": 8, "layers": 2}, "cluster": {"gpus": 8}, "steps": 1},
    "grid": [[{"variant": "deepspeed", "policy": {"preset": "deepspeed"}},
              {"variant": "moesys", "policy": {"preset": "moesys"}}]],
    "baseline": "deepspeed"}
SMALL_STUDY_INFERENCE = {
    "kind": "inference", "name": "fuzz-inference",
    "cluster": {"gpu": "a100-40g", "nodes": 1, "gpus_per_node": 1, "nics_per_node": 1},
    "defaults": {"model": "gpt-moe-8e", "prompt_tokens": 32, "output_tokens": 4, "batch": [2]},
    "runs": [{"preset": "deepspeed", "policy": "deepspeed", "host_memory": "pageable"},
             {"preset": "moesys", "policy": "moesys", "ring_slots": [1]}],
    "compare": {"baseline": "deepspeed"}}
SMALL_TRAINING_CONFIG = {"model": {"preset": "gpt-moe", "experts": 8, "layers": 2}, "cluster": {"gpus": 8},
                         "steps": 1, "policy": {"preset": "moesys"}}
SMALL_MODEL = {"name": "m", "layers": 2, "hidden": 256, "heads": 4, "vocab": 1000, "seq_len": 128,
               "micro_batch": 2, "global_batch": 16, "experts": 8, "top_k": 2}
CALIBRATION = {"nvlink_efficiency": 0.745, "pcie_efficiency": 0.83, "nic_efficiency": 0.96,
               "gemm_efficiency": 0.936, "hbm_efficiency": 0.8, "step_latency_s": 3.09e-6,
               "half_bandwidth_bytes": 8.81e4, "kernel_launch_s": 4e-6}
WORKLOADS = [{"kind": "zipf", "exponent": 1.2, "seed": 3},
             {"kind": "multitask", "tasks": [{"name": "a", "batch": 512, "affinity": 0.8},
                                             {"name": "b", "batch": 256}], "seed": 1},
             {"kind": "drift", "exponent": 1.0, "drift_experts_per_step": 1}]


def paths_of(value, prefix=()):
    """Every path to a value inside a JSON document, containers included."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths_of(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths_of(v, prefix + (i,))


def get_at(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def set_at(doc, path, value):
    if not path:
        return value
    get_at(doc, path[:-1])[path[-1]] = value
    return doc


class RawNumber(float):
    """A number written verbatim into the JSON text (1e400, NaN), which json.dumps cannot express."""

    def __new__(cls, text):
        obj = float.__new__(cls, 0.0)
        obj.text = text
        return obj


def dumps(doc):
    """json.dumps that writes RawNumber values verbatim."""
    marks = {}

    def swap(v):
        if isinstance(v, RawNumber):
            key = "@@raw%d@@" % len(marks)
            marks[key] = v.text
            return key
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(doc))
    for key, raw in marks.items():
        text = text.replace('"%s"' % key, raw)
    return text


def mutate_tree(rng, doc):
    """One structural mutation of a parsed document; returns the new document."""
    doc = copy.deepcopy(doc)
    paths = list(paths_of(doc))
    path = rng.choice(paths)
    kind = rng.choice(["delete", "number", "number", "number", "type", "long_string", "newline_key", "empty"])
    if kind == "delete" and path:
        parent = get_at(doc, path[:-1])
        del parent[path[-1]]
    elif kind == "number":
        doc = set_at(doc, path, RawNumber(rng.choice(HOSTILE_NUMBERS)))
    elif kind == "type":
        doc = set_at(doc, path, rng.choice([True, None, "x", [], {}, [1, 2], 42, -3.5]))
    elif kind == "long_string":
        doc = set_at(doc, path, "x" * rng.choice([1000, 100000 if rng.random() < 0.5 else 50000]))
    elif kind == "newline_key" and isinstance(get_at(doc, path), dict):
        get_at(doc, path)["bad\nkey"] = 1
    elif kind == "empty":
        doc = set_at(doc, path, {} if isinstance(get_at(doc, path), dict) else [])
    return doc


def mutate_text(rng, text):
    """One byte-level mutation of JSON text; returns bytes."""
    data = text.encode("utf-8")
    kind = rng.choice(["truncate", "bom", "utf16", "nul", "bad_utf8", "deep", "duplicate", "flip", "none"])
    if kind == "truncate" and data:
        return data[:rng.randrange(len(data))]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "utf16":
        return text.encode("utf-16")
    if kind == "nul":
        i = rng.randrange(len(data) + 1)
        return data[:i] + b"\x00" + data[i:]
    if kind == "bad_utf8":
        i = text.find('"')
        return data if i < 0 else data[:i + 1] + b"\xff\xc3" + data[i + 1:]
    if kind == "deep":
        depth = rng.choice([70, 1000, 60000])
        return b"[" * depth + b"1" + b"]" * depth
    if kind == "duplicate" and data.startswith(b"{"):
        # The first occurrence is invalid, the second valid: the last-wins rule would hide the error.
        i = text.find('"', 1)
        j = text.find('"', i + 1)
        if i > 0 and j > i:
            key = text[i:j + 1]
            return ("{" + key + ": -1, " + text[1:]).encode("utf-8")
    if kind == "flip" and data:
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    return data


def mutated_json(rng, doc):
    """A damaged version of `doc` as bytes: tree mutations, then sometimes a byte-level one."""
    for _ in range(rng.choice([1, 1, 2, 3])):
        doc = mutate_tree(rng, doc)
    text = dumps(doc)
    return mutate_text(rng, text) if rng.random() < 0.3 else text.encode("utf-8")


def generate(seed, index, cluster_seed):
    """Case `index` of campaign `seed`: (name, argv after 'moesys' with @FILE for the input, input bytes or None)."""
    rng = random.Random("%d/%d" % (seed, index))
    family = rng.choice(["cluster", "calibration", "study_training", "study_inference", "train_config",
                         "train_model", "infer_model", "infer_workload", "train_workload", "flags_collective",
                         "flags_infer", "flags_train", "exec_timeout"])
    if family == "cluster":
        return family, ["collective", "--cluster", "@FILE", "-e", "64K", "--op", "alltoall"], \
            mutated_json(rng, cluster_seed)
    if family == "calibration":
        return family, ["collective", "--nodes", "1", "--calibration", "@FILE", "-e", "1M"], \
            mutated_json(rng, CALIBRATION)
    if family == "study_training":
        return family, ["experiment", "@FILE", "--no-plots", "--quiet", "--results", "@WORK/results"], \
            mutated_json(rng, SMALL_STUDY_TRAINING)
    if family == "study_inference":
        return family, ["experiment", "@FILE", "--no-plots", "--quiet", "--results", "@WORK/results"], \
            mutated_json(rng, SMALL_STUDY_INFERENCE)
    if family == "train_config":
        return family, ["train", "--config", "@FILE", "--json", "--trace", "@WORK/trace.json"], \
            mutated_json(rng, SMALL_TRAINING_CONFIG)
    if family == "train_model":
        return family, ["train", "--gpus", "8", "--steps", "1", "--model",
                        mutated_json(rng, dict(SMALL_MODEL)).decode("utf-8", "replace")], None
    if family == "infer_model":
        model = dict(SMALL_MODEL)
        return family, ["infer", "--output", "4", "--prompt", "16", "--model",
                        mutated_json(rng, model).decode("utf-8", "replace")], None
    if family == "infer_workload":
        return family, ["infer", "--model", "gpt-moe-8e", "--output", "4", "--prompt", "16", "--workload",
                        mutated_json(rng, rng.choice(WORKLOADS)).decode("utf-8", "replace")], None
    if family == "train_workload":
        return family, ["train", "--experts", "8", "--gpus", "8", "--steps", "1", "--model", '{"layers": 2}',
                        "--workload", mutated_json(rng, rng.choice(WORKLOADS)).decode("utf-8", "replace")], None
    if family == "flags_collective":
        args = {"-b": "8", "-e": "64K", "-f": "2", "--nodes": "1", "--gpus-per-node": "8", "--nic-gbps": "200"}
        flag = rng.choice(sorted(args))
        args[flag] = rng.choice(HOSTILE_FLAG_VALUES)
        return family, ["collective"] + [x for kv in args.items() for x in kv], None
    if family == "flags_infer":
        args = {"--prompt": "16", "--output": "4", "--batch": "2", "--ring-slots": "1", "--gpus": "1"}
        for flag in rng.sample(sorted(args), rng.choice([1, 2])):
            args[flag] = rng.choice(HOSTILE_FLAG_VALUES)
        return family, ["infer", "--model", "gpt-moe-8e"] + [x for kv in args.items() for x in kv], None
    if family == "flags_train":
        args = {"--experts": "8", "--gpus": "8", "--steps": "1", "--ep": "8"}
        for flag in rng.sample(sorted(args), rng.choice([1, 2])):
            args[flag] = rng.choice(HOSTILE_FLAG_VALUES)
        return family, ["train", "--model", '{"layers": 2}'] + [x for kv in args.items() for x in kv], None
    value = rng.choice(["0", "-1", "abc", "", "inf", "1e400", "100000"])  # all refused: no real run starts
    return family, ["@ENV:MOESYS_EXEC_TIMEOUT_S=" + value, "validate", "--ranks", "1", "--steps", "1",
                    "--warmup", "1", "--repeats", "1"], None
