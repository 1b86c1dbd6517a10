#!/usr/bin/env bash
# Issue 31 part 3: pruned speed-up ÷ MAC ratio with `--round-to 1`, `8` and `table`, per method, at one MAC target.
# Measures the model's layer latency table at the speed-up's batch (`bench --latency-table`), prunes with each
# method and rounding (no compensation and no training: the widths alone decide the speed), then times every pruned
# model against the original in alternating rounds (`prune_speedup.py`). slim's search runs once and is cut three
# times (`--from-search`). OpenBLAS picks its own kernels (`env -u OPENBLAS_CORETYPE`).
#
# Usage: bash Benchmarks/round_to_speedup.sh
# vulcan derives a model for a class subset (`--classes 7`, no post-training); cpd cuts while it trains (one epoch on
# class 7, a cut every 10 steps): only the widths they reach are timed.
#
#   env: METHODS (default "magnitude vbp slim"), TARGET (MACs kept, default 0.65: MLP-only methods reach it on
#        fm-vit-b), BATCH (default 64), ROUNDS (default 3), VITFORGE (a binary copy), WORK (default out/round-to),
#        OUT (rows, default Benchmarks/results/round-to-speedup-NAME.json); the model: MODEL (default
#        Tests/Fixtures/fm-vit-b.safetensors), HEADS (its head count; empty: the file says it), NAME (file names,
#        default fm-vit-b), DATA (the folder the data-driven methods read; empty: the embedded Fashion-MNIST),
#        VULCAN_ARGS / CPD_ARGS (their class subset and schedule; defaults above, for a 10-class DATA), e.g.
#   MODEL=../shared/fixtures/deit_tiny_patch16_224.safetensors HEADS= NAME=deit-tiny DATA=/tmp/photos224 \
#        bash Benchmarks/round_to_speedup.sh     (photos: Benchmarks/make_photo_folder.py --width 224 --height 224)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${VITFORGE:-.build/release/vitforge}"
work="${WORK:-out/round-to}"
methods="${METHODS:-magnitude vbp slim}"
target="${TARGET:-0.65}"
batch="${BATCH:-64}"
rounds="${ROUNDS:-3}"
model="${MODEL:-Tests/Fixtures/fm-vit-b.safetensors}"
heads="${HEADS-4}"
name="${NAME:-fm-vit-b}"
out="${OUT:-Benchmarks/results/round-to-speedup-$name.json}"
headArgs=(); [ -n "$heads" ] && headArgs=(--heads "$heads")
dataArgs=(); [ -n "${DATA:-}" ] && dataArgs=(--data "$DATA")
mkdir -p "$work"
run() { env -u OPENBLAS_CORETYPE "$@"; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run "$bin" devices | sed -n 1,2p  # sed reads to the end: head would SIGPIPE devices under pipefail
table="$work/$name-table-b$batch.json"
[ -f "$table" ] || run "$bin" bench --model "$model" "${headArgs[@]}" --batch "$batch" --runs 7 --device cpu \
    --latency-table "$table"

reports=()
for method in $methods; do
  extra=()
  if [ "$method" = slim ]; then
    search="$work/$name-slim.search.safetensors"
    if [ ! -f "$search" ]; then
      run "$bin" prune --model "$model" "${headArgs[@]}" "${dataArgs[@]}" --method slim --epochs 1 --target-macs "$target" --no-compensate \
          --latency-batches "$batch" --device cpu --seed 0 --save-search "$search" \
          --out "$work/$name-slim-searched.safetensors" > "$work/slim-search.log" 2>&1
    fi
    extra=(--from-search "$search")
  fi
  [ "$method" = vulcan ] && read -r -a extra <<< "${VULCAN_ARGS:---classes 7}"
  [ "$method" = cpd ] && read -r -a extra <<< "${CPD_ARGS:---classes 7 --epochs 1 --prune-interval 10 --batch-size 97}"
  for rounding in 1 8 table; do
    row="$name-$method-r$rounding"
    tableArgs=(); [ "$rounding" = table ] && tableArgs=(--latency-table "$table")
    run "$bin" prune --model "$model" "${headArgs[@]}" "${dataArgs[@]}" --method "$method" --target-macs "$target" --no-compensate \
        --round-to "$rounding" "${tableArgs[@]}" "${extra[@]}" --latency-batches "$batch" --device cpu --seed 0 \
        --out "$work/$row.safetensors" --report "$work/$row.json" > "$work/$row.log" 2>&1
    grep "^residual width" "$work/$row.log" | sed "s/^/$row: /"
    reports+=("$work/$row.json")
  done
done

run python3 Benchmarks/prune_speedup.py "${reports[@]}" --batches "$batch" --rounds "$rounds" --vitforge "$bin" \
    --json "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
