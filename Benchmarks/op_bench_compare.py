#!/usr/bin/env python3
"""Before/after comparison of OpenCL kernel changes with op-bench (Benchmarks/Sources/op-bench).

Runs two op-bench binaries -- one built from a checkout before the change, one after -- in alternating processes
(the order flips every round, so a load spike on the shared machine hits both alike) and prints, per operation, each
side's median ms per call in the shape the device uses and the median of the per-round ratios after/before; the
GPU shape of the new binary is timed in the same processes and printed beside them.

    python3 Benchmarks/op_bench_compare.py --before OLD/op-bench --after NEW/op-bench [--rounds 3]
        [--bench-rounds 3] [--shape cpu] [--only TEXT] [--json results/R.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run(binary, shapes, bench_rounds, only):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out.json")
        command = [binary, "--rounds", str(bench_rounds), "--shapes", ",".join(shapes), "--json", path]
        if only:
            command += ["--only", only]
        completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if completed.returncode != 0:
            sys.exit(f"error: {binary} failed: {completed.stderr.strip()}")
        with open(path) as file:
            return json.load(file)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="op-bench built before the change")
    parser.add_argument("--after", required=True, help="op-bench built after the change")
    parser.add_argument("--rounds", type=int, default=3, help="alternating process pairs")
    parser.add_argument("--bench-rounds", type=int, default=3, help="op-bench --rounds inside each process")
    parser.add_argument("--shape", default="cpu", help="the shape the device uses (cpu for PoCL, gpu for GPUs)")
    parser.add_argument("--only", help="only operations whose name contains this")
    parser.add_argument("--json", help="write the table here (atomically)")
    args = parser.parse_args()

    other = "gpu" if args.shape == "cpu" else "cpu"
    before, after, ratios, other_after = {}, {}, {}, {}
    for round_index in range(args.rounds):
        sides = [("before", args.before), ("after", args.after)]
        if round_index % 2:
            sides.reverse()
        results = {}
        for side, binary in sides:
            # Both sides time both shapes, so that each process runs the same sequence (caches, the partial-sum
            # scratch of each backend); before a change that added the GPU shape both are the same kernels there.
            results[side] = run(binary, [args.shape, other], args.bench_rounds, args.only)
        for op, times in results["after"].items():
            if op not in results["before"]:
                continue
            old, new = results["before"][op][args.shape], times[args.shape]
            before.setdefault(op, []).append(old)
            after.setdefault(op, []).append(new)
            ratios.setdefault(op, []).append(new / old)
            other_after.setdefault(op, []).append(times[other])
        print(f"round {round_index + 1} of {args.rounds} done", file=sys.stderr)

    rows = []
    print(f"ms per call; {args.shape} shape before and after, ratio = median of per-round after/before; "
          f"{other} shape after for reference")
    print(f"{'op':40}{'before':>10}{'after':>10}{'ratio':>8}{other + ' shape':>12}")
    for op in sorted(before):
        row = {
            "op": op,
            "before_ms": statistics.median(before[op]),
            "after_ms": statistics.median(after[op]),
            "ratio": statistics.median(ratios[op]),
            "ratios": ratios[op],
            f"{other}_shape_after_ms": statistics.median(other_after[op]),
        }
        rows.append(row)
        print(f"{op:40}{row['before_ms']:10.3f}{row['after_ms']:10.3f}{row['ratio']:8.2f}"
              f"{row[f'{other}_shape_after_ms']:12.3f}")
    if args.json:
        temporary = args.json + ".partial"
        with open(temporary, "w") as file:
            json.dump({"shape": args.shape, "rounds": args.rounds, "bench_rounds": args.bench_rounds,
                       "rows": rows}, file, indent=1)
        os.replace(temporary, args.json)


if __name__ == "__main__":
    main()
