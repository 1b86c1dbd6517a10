#!/usr/bin/env python3
"""The GPU run's one JSON (Benchmarks/gpu/run.sh): stage records, the merge after every stage, the collection of a
stage's result files, and the closing summary. Standard library only (it runs where torch may be missing).

    gpu_json.py record --stages DIR --name N --status ok|failed|timeout --seconds S --exit-code C --limit L
    gpu_json.py merge --stages DIR --out RUN.json --dry-run 0|1 --commit SHA
    gpu_json.py collect --out STAGE.json FILE.json ...
    gpu_json.py summary --json RUN.json
    gpu_json.py check --json RUN.json      (CI's dry run: every stage ran and left what it should)
"""
import argparse
import json
import os
import sys
import time


def write_atomically(path, value):
    temporary = path + ".partial"
    with open(temporary, "w") as file:
        json.dump(value, file, indent=1, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)


def load(path):
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        return {"unreadable": f"{path}: {error}"}


def record(args):
    """The stage's status beside the numbers it wrote (NAME.json, if any)."""
    entry = {"status": args.status, "seconds": args.seconds, "exit_code": args.exit_code, "limit_s": args.limit}
    results = os.path.join(args.stages, args.name + ".json")
    if os.path.exists(results):
        entry["results"] = load(results)
    write_atomically(os.path.join(args.stages, args.name + ".record"), entry)


def merge(args):
    stages = {}
    for name in sorted(os.listdir(args.stages)):
        if name.endswith(".record"):
            stages[name[: -len(".record")]] = load(os.path.join(args.stages, name))
    run = {"issue": 30, "commit": args.commit, "dry_run": args.dry_run == "1",
           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stages": stages}
    write_atomically(args.out, run)


def collect(args):
    """A stage's several result files into one object keyed by file name (without .json)."""
    value = {os.path.basename(path)[: -len(".json")]: load(path) for path in args.files if os.path.exists(path)}
    write_atomically(args.out, value)


def skipped_notes(value, path=""):
    """Every "skipped" reason anywhere in the results, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "skipped" and isinstance(item, str):
                yield path, item
            else:
                yield from skipped_notes(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from skipped_notes(item, f"{path}[{index}]")


def summary(args):
    run = load(args.json)
    for name, stage in run.get("stages", {}).items():
        print(f"{name:12} {stage.get('status', '?'):8} {stage.get('seconds', '?'):>4} s (limit {stage.get('limit_s')})")
    for where, reason in skipped_notes(run):
        print(f"skipped: {where}: {reason}")
    failed = [name for name, stage in run.get("stages", {}).items() if stage.get("status") != "ok"]
    if failed:
        print("not ok: " + ", ".join(failed))
        return 1
    return 0


def check(args):
    """What CI asserts after the dry run, so that the prepared run cannot rot between draws."""
    run = load(args.json)
    stages = run.get("stages", {})
    problems = []
    for name in ["environment", "devices", "correctness", "gemm", "model", "attention", "profile"]:
        if stages.get(name, {}).get("status") != "ok":
            problems.append(f"stage {name}: {stages.get(name, {}).get('status', 'missing')}")
    results = {name: stage.get("results", {}) for name, stage in stages.items()}
    for part, backends in [("correctness-table", 2), ("correctness-tiles", 3)]:
        table = results.get("correctness", {}).get(part, {})
        if not (table.get("passed", 0) > 0 and table.get("failed") == 0):
            problems.append(f"{part}: {table.get('passed')} passed, {table.get('failed')} failed")
        if len({row.get("backend") for row in table.get("rows", [])}) < backends:
            problems.append(f"{part}: fewer than {backends} backends (kernel shapes, tile variants)")
    if not results.get("gemm", {}).get("opencl"):
        problems.append("gemm: no op-bench GEMM times")
    for name, torch_part in [("gemm", results.get("gemm", {}).get("torch", {}))] + [
            (f"model {key}", value) for key, value in results.get("model", {}).items() if "torch" in key]:
        if "rows" not in torch_part and not torch_part.get("skipped"):
            problems.append(f"{name}: PyTorch neither measured nor skipped with a reason")
    model = results.get("model", {})
    if not any(key.startswith("model-train") and value.get("results") for key, value in model.items()):
        problems.append("model: no vitforge training rows")
    profile = results.get("profile", {}).get("profile-train", {}).get("results", [{}])[0]
    if not profile.get("kernel_profile") or profile.get("blocking_calls_per_run") is None:
        problems.append("profile: no kernel profile or blocking calls in the training row")
    tiles = results.get("attention", {}).get("attention-tiles", {})
    if not any(len(times) >= 3 for times in tiles.values()):
        problems.append("attention: the tile variants were not timed side by side")
    for problem in problems:
        print("check: " + problem)
    print("check: " + ("ok" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("record")
    p.add_argument("--stages", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--exit-code", type=int, required=True)
    p.add_argument("--limit", type=int, required=True)
    p = commands.add_parser("merge")
    p.add_argument("--stages", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", default="0")
    p.add_argument("--commit", default="unknown")
    p = commands.add_parser("collect")
    p.add_argument("--out", required=True)
    p.add_argument("files", nargs="*")
    p = commands.add_parser("summary")
    p.add_argument("--json", required=True)
    p = commands.add_parser("check")
    p.add_argument("--json", required=True)
    args = parser.parse_args()
    return {"record": record, "merge": merge, "collect": collect, "summary": summary,
            "check": check}[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
