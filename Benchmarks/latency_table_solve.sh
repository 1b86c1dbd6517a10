#!/usr/bin/env bash
# `prune --target-latency` solved with and without `--latency-table` (issue 31 part 3), in alternating rounds: makes
# the model's layer latency table at batch B (`bench --latency-table`), times the full model, asks for SHARE of its
# latency, and prints per run the wall time, the prune phase's seconds, the shapes timed while solving, the solve's
# measured latency and the report's (a second, alternating timing of the pruned model) against the target.
#   bash Benchmarks/latency_table_solve.sh [MODEL (Tests/Fixtures/fm-vit-b.safetensors)] [HEADS (4)] [SHARE (0.7)]
#     [BATCH (64)] [ROUNDS (3)]
# Needs a release build and the Debian package dataset-fashion-mnist; runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-Tests/Fixtures/fm-vit-b.safetensors}
heads=${2:-4}
share=${3:-0.7}
batch=${4:-64}
rounds=${5:-3}
vitforge="$(swift build -c release --show-bin-path)/vitforge"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--model "$model" --heads "$heads" --method magnitude --no-compensate --classes 7 --latency-batches "$batch"
        --device cpu)
echo "load: $(uptime | sed 's/.*load average: //')"
"$vitforge" bench --model "$model" --heads "$heads" --batch "$batch" --runs 7 --latency-table "$work/layers.json" \
    --device cpu | tail -1
"$vitforge" prune "${common[@]}" --keep-mlp 1 --out "$work/full.safetensors" --report "$work/probe.json" > /dev/null 2>&1
target=$(python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))["original"]["latency"]
print(round(float(sys.argv[2]) * next(r["latency_ms_median"] for r in rows if r["batch"] == int(sys.argv[3])), 3))' \
    "$work/probe.json" "$share" "$batch")
echo "target $target ms at batch $batch ($share of the full model)"
for round in $(seq "$rounds"); do
    for solve in table measured; do
        extra=()
        [ "$solve" = table ] && extra=(--latency-table "$work/layers.json")
        start=$(date +%s.%N)
        "$vitforge" prune "${common[@]}" --target-latency "$target" --latency-batch "$batch" "${extra[@]}" \
            --out "$work/$solve.safetensors" --report "$work/$solve.json" > /dev/null 2>&1
        wall=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
        python3 - "$work/$solve.json" "$round" "$solve" "$target" "$batch" "$wall" <<'PY'
import json, sys
path, round_, solve, target, batch, wall = sys.argv[1:]
r = json.load(open(path)); s = r["latency_solve"]; target = float(target)
pruned = next(x["latency_ms_median"] for x in r["pruned"]["latency"] if x["batch"] == int(batch))
line = (f"round {round_} {solve:8s} wall {wall} s, prune {r['seconds']['prune']:.2f} s, {s['measurements']} shapes "
        f"timed, solve measured {s['measured_ms']:.2f} ms ({s['measured_ms'] / target:.3f} of the target), report "
        f"{pruned:.2f} ms ({pruned / target:.3f})")
if s.get("predicted_ms"): line += f", predicted {s['predicted_ms']:.2f} ms"
if s.get("fallback"): line += f", fell back: {s['fallback']}"
print(line)
PY
    done
done
echo "load: $(uptime | sed 's/.*load average: //')"
