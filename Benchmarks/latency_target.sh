#!/usr/bin/env bash
# `prune --target-latency` against the device's clock (the test suite checks the mechanism on a cost-model meter
# instead, since a wall-clock assertion fails whenever a neighbour loads a shared machine): times the full model at
# batch B, asks for SHARE of that latency, and prints the target, the pruned model's measured latency and their ratio.
#   bash Benchmarks/latency_target.sh [MODEL (Tests/Fixtures/fm-vit-c.safetensors)] [SHARE (0.7)] [BATCH (16)]
# Needs a release build (`swift build -c release`) and the Debian package dataset-fashion-mnist; runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-Tests/Fixtures/fm-vit-c.safetensors}
share=${2:-0.7}
batch=${3:-16}
vitforge="$(swift build -c release --show-bin-path)/vitforge"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() {  # median() REPORT MODEL: latency_ms_median of MODEL ("original" or "pruned") at the batch
    python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))[sys.argv[2]]["latency"]
print(next(r["latency_ms_median"] for r in rows if r["batch"] == int(sys.argv[3])))' "$1" "$2" "$batch"
}
"$vitforge" prune --model "$model" --heads 2 --method magnitude --keep-mlp 1 --classes 7 --latency-batches "$batch" \
    --out "$work/full.safetensors" --report "$work/probe.json" --device cpu > /dev/null
target=$(python3 -c "print($share * $(median "$work/probe.json" original))")
"$vitforge" prune --model "$model" --heads 2 --method magnitude --target-latency "$target" --latency-batch "$batch" \
    --classes 7 --latency-batches "$batch" --out "$work/pruned.safetensors" --report "$work/report.json" \
    --device cpu > /dev/null
pruned=$(median "$work/report.json" pruned)
python3 -c "print(f'target {$target:.2f} ms at batch $batch, pruned model {$pruned:.2f} ms: {$pruned / $target:.2f} of the target')"
