#!/usr/bin/env python3
"""Summarizes Benchmarks/gemm_e2e.sh's rows: per model, mode and GEMM setting the median over rounds of bench's
median latency, and each setting's speed against OpenBLAS (OpenBLAS's latency / the setting's; > 1: faster), also
per round (the rounds alternate the settings, so a round's ratio compares runs minutes apart, not hours).

    python3 Benchmarks/gemm_e2e_summary.py Benchmarks/results/gemm-e2e.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict


def main(path):
    rows, machine = [], None
    for line in open(path):
        record = json.loads(line)
        if "machine" in record:
            machine = record["machine"]
        elif "setting" in record:
            rows.append(record)
    if machine:
        print(f"{machine['cpu']} ({machine['cores']} cores; {machine['vector']}), OpenBLAS core "
              f"{machine['openblas_core']}, batch {machine['batch']}, {machine['rounds']} rounds")
    loads = [row["load"] for row in rows]
    if loads:
        print(f"load average before each row: {min(loads):.1f}-{max(loads):.1f}")
    latency = defaultdict(dict)  # (model, mode) -> setting -> {round: ms}
    for row in rows:
        name = row["model"].rsplit("/", 1)[-1].removesuffix(".safetensors")
        latency[(name, row["mode"])].setdefault(row["setting"], {})[row["round"]] = row["latency_ms_median"]
    print("| model | mode | setting | median ms | × OpenBLAS (median of rounds) | per round |")
    print("|---|---|---|---|---|---|")
    for (model, mode), settings in sorted(latency.items()):
        base = settings.get("openblas", {})
        for setting in ("openblas", "onednn", "auto"):
            times = settings.get(setting)
            if not times:
                continue
            ratios = [base[r] / t for r, t in sorted(times.items()) if r in base]
            per_round = " ".join(f"{x:.2f}" for x in ratios)
            print(f"| {model} | {mode} | {setting} | {statistics.median(times.values()):.1f} | "
                  f"{statistics.median(ratios):.2f} | {per_round} |")


if __name__ == "__main__":
    main(sys.argv[1])
