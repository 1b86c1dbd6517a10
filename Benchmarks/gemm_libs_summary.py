#!/usr/bin/env python3
"""Summarize gemm_libs.sh rows (issue 31, part 2): per shape and mode, each library's GFLOP/s (the median over
rounds of its fastest call), the winner and its ratio to OpenBLAS; then how many shapes each library wins by ≥ 10%
and the FLOP-weighted speed-up of taking the best library at every shape of a model's pass.

    python3 Benchmarks/gemm_libs_summary.py Benchmarks/results/gemm-libs.jsonl [--mode split] [--table]
"""
import argparse
import collections
import json
import statistics


def load(path):
    machine, rounds, rows = None, [], []
    for line in open(path):
        row = json.loads(line)
        if "machine" in row:
            machine = row["machine"]
        elif "rounds" in row and "library" not in row or "end" in row:
            rounds.append(row)
        else:
            rows.append(row)
    return machine, rounds, rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rows")
    parser.add_argument("--mode", default="split")
    parser.add_argument("--margin", type=float, default=1.10)
    parser.add_argument("--table", action="store_true", help="print every shape as a Markdown table")
    args = parser.parse_args()
    machine, rounds, rows = load(args.rows)
    bad = [r for r in rows if r["max_rel_error"] > 1e-4]
    for r in bad:
        print(f"WRONG RESULT: {r['library']} {r['shape']} error {r['max_rel_error']}")
    speeds = collections.defaultdict(lambda: collections.defaultdict(list))
    flops = {}
    for r in rows:
        if r["mode"] != args.mode or r in bad:
            continue
        speeds[r["shape"]][r["library"]].append(r["gflops"])
        flops[r["shape"]] = 2.0 * r["m"] * r["n"] * r["k"] * r["batch"]
    print(f"machine: {machine}")
    print(f"modes and loads: {rounds}")
    libraries = sorted({lib for per in speeds.values() for lib in per})
    wins = collections.Counter()
    per_model = collections.defaultdict(lambda: collections.defaultdict(float))
    table = []
    for shape, per in speeds.items():
        median = {lib: statistics.median(v) for lib, v in per.items()}
        base = median.get("openblas")
        best = max(median, key=median.get)
        others = [v for lib, v in median.items() if lib != best]
        if base and best != "openblas" and median[best] >= args.margin * base:
            wins[best] += 1
        elif best == "openblas" and all(median[best] >= args.margin * v for v in others):
            wins["openblas"] += 1
        else:
            wins["(within 10%)"] += 1
        model = shape.split(":")[0] + (":train" if ":train" in shape else "")
        seconds = {lib: flops[shape] / (max(v, 1e-3) * 1e9) for lib, v in median.items()}  # 0.00: under 5 MFLOP/s
        per_model[model]["best"] += min(seconds.values())
        per_model[model]["pair"] += min(seconds.get("openblas", 1e30), seconds.get("onednn", 1e30))
        for lib, s in seconds.items():
            per_model[model][lib] += s
        table.append((shape, per["openblas"] and median, best, median[best] / base if base else float("nan")))
    print(f"mode {args.mode}: {len(speeds)} shapes; wins by ≥ {args.margin:.2f}× over every other library: "
          + ", ".join(f"{lib} {n}" for lib, n in wins.most_common()))
    print("\nper model pass (sum of seconds over its GEMM shapes, one layer each), OpenBLAS ÷ other:")
    print("| pass | " + " | ".join(libraries) + " | best per shape | OpenBLAS or oneDNN per shape |")
    print("|---|" + "---|" * (len(libraries) + 2))
    for model, t in per_model.items():
        print(f"| {model} | " + " | ".join(f"{t['openblas'] / t[lib]:.2f}" for lib in libraries)
              + f" | {t['openblas'] / t['best']:.2f} | {t['openblas'] / t['pair']:.2f} |")
    if args.table:
        print("\n| shape | trans m×n×k ×batch | " + " | ".join(libraries) + " | best (÷ OpenBLAS) |")
        print("|---|---|" + "---|" * (len(libraries) + 1))
        meta = {r["shape"]: r for r in rows}
        for shape, median, best, ratio in table:
            r = meta[shape]
            dims = f"{r['trans']} {r['m']}×{r['n']}×{r['k']}" + (f" ×{r['batch']}" if r["batch"] > 1 else "")
            print(f"| {shape} | {dims} | " + " | ".join(f"{median.get(lib, 0):.1f}" for lib in libraries)
                  + f" | {best} ({ratio:.2f}) |")


if __name__ == "__main__":
    main()
