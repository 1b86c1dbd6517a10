#!/usr/bin/env python3
"""Measured inference speed-up of pruned models against their MAC reduction, at several batch sizes.

Reads `vitforge prune --report` files (each names its original model and its MACs), then times the original and
every pruned model with `vitforge bench` (inference, each row in its own child process) in `--rounds` alternating
rounds, so every speed-up is a ratio of two measurements taken minutes apart, never across runs. Prints, per
pruned model and batch, the median over rounds of pruned/original images/s, the MAC ratio original/pruned, and
their quotient (1.0: the speed-up the MAC count promises; the issue's goal is ≥ 0.9 at batch ≥ 64).

    python3 Benchmarks/prune_speedup.py REPORT.json ... [--batches 1,64,256] [--rounds 3] [--runs 7] [--json OUT]
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import add_round_arguments, vitforge_bench, write_json  # noqa: E402


def bench(vitforge, model, heads, batches, runs, warmup):
    report = vitforge_bench(vitforge, model, batches, heads, runs, warmup)
    return {row["batch"]: row["images_per_second"] for row in report["results"]}


def heads_of(report):
    words = report.get("command", "").split()
    return words[words.index("--heads") + 1] if "--heads" in words else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="prune report JSON files (their pruned model sits beside them)")
    parser.add_argument("--batches", default="1,64,256")
    add_round_arguments(parser, runs=7)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    entries = []
    for path in args.reports:
        with open(path) as f:
            report = json.load(f)
        pruned = os.path.splitext(path)[0] + ".safetensors"
        if not os.path.exists(pruned):
            sys.exit(f"{path}: no pruned model {pruned} beside the report")
        entries.append({"report": path, "pruned": pruned, "original": report["original"]["path"],
                        "heads": heads_of(report),
                        "mac_ratio": report["original"]["macs"] / report["pruned"]["macs"],
                        "method": report.get("method"), "rounds": []})

    originals = sorted({(e["original"], e["heads"]) for e in entries})
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds}", file=sys.stderr, flush=True)
        base = {o: bench(args.vitforge, o[0], o[1], batches, args.runs, args.warmup) for o in originals}
        for e in entries:
            measured = bench(args.vitforge, e["pruned"], None, batches, args.runs, args.warmup)
            original = base[(e["original"], e["heads"])]
            e["rounds"].append({str(b): measured[b] / original[b] for b in batches})

    print(f"{'pruned model':44} {'MAC ratio':>9} " + " ".join(f"{'x@' + str(b):>7} {'/MAC':>5}" for b in batches))
    for e in entries:
        e["speedup"] = {str(b): statistics.median(r[str(b)] for r in e["rounds"]) for b in batches}
        cells = " ".join(f"{e['speedup'][str(b)]:7.2f} {e['speedup'][str(b)] / e['mac_ratio']:5.2f}" for b in batches)
        print(f"{os.path.basename(e['pruned'])[-44:]:44} {e['mac_ratio']:9.2f} {cells}")
    if args.json:
        write_json(args.json, {"batches": batches, "rounds": args.rounds, "runs": args.runs, "models": entries})


if __name__ == "__main__":
    main()
