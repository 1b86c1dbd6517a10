#!/usr/bin/env bash
# ViT-Slim's search against its cut before any fine-tuning (issue 28, part 4): one distilled search at a MAC target,
# then from the saved search the soft-masked model (--keep-mlp 1 --keep-attn 1: folding with nothing removed), the
# default cut without compensation, the same with --no-fold, and the default cut with the default compensation.
# Prints one line of accuracies right after each cut, the search's seconds, the load, and the mask separation.
#
# Usage: bash Benchmarks/slim_separation.sh NAME MODEL HEADS TARGET EPOCHS [slim flags ...]
#   e.g. bash Benchmarks/slim_separation.sh c-budget fm-vit-c 2 0.25 1
#        bash Benchmarks/slim_separation.sh c-paper fm-vit-c 2 0.25 1 --slim-penalty-schedule constant --slim-mask-lr 1e-4
#   env: VITFORGE (binary, default .build/release/vitforge), WORK (default out/slim-separation)
set -u
cd "$(dirname "$0")/.."
name=$1 model=$2 heads=$3 target=$4 epochs=$5; shift 5
V="$(realpath "${VITFORGE:-.build/release/vitforge}")"
M="$(realpath "Tests/Fixtures/$model.safetensors")"
mkdir -p "${WORK:-out/slim-separation}" && cd "${WORK:-out/slim-separation}"
load0=$(cut -d' ' -f1 /proc/loadavg); t0=$(date +%s)
"$V" prune --model "$M" --heads "$heads" --method slim --target-macs "$target" --epochs "$epochs" --distill \
    --latency-batches 1 --device cpu --seed 0 --no-compensate --save-search "$name.search.safetensors" \
    --out "$name.safetensors" --report "$name.json" "$@" > "$name.log" 2>&1 || { echo "$name FAILED"; tail -3 "$name.log"; exit 1; }
t1=$(date +%s)
common=(--model "$M" --heads "$heads" --method slim --from-search "$name.search.safetensors" --latency-batches 1
        --device cpu --seed 0 "$@")
"$V" prune "${common[@]}" --keep-mlp 1 --keep-attn 1 --no-compensate --out "$name-soft.safetensors" \
    --report "$name-soft.json" > "$name-soft.log" 2>&1
"$V" prune "${common[@]}" --target-macs "$target" --no-fold --no-compensate --out "$name-nofold.safetensors" \
    --report "$name-nofold.json" > "$name-nofold.log" 2>&1
"$V" prune "${common[@]}" --target-macs "$target" --out "$name-comp.safetensors" --report "$name-comp.json" \
    > "$name-comp.log" 2>&1
python3 - "$name" "$load0" $((t1 - t0)) <<'PY'
import json, sys
n, load, secs = sys.argv[1:]
a = lambda s: json.load(open(f"{n}{s}.json"))["accuracy_after_pruning"]
r = json.load(open(f"{n}.json"))
m = r.get("method_metrics") or {}
print(f"{n}: soft {a('-soft')*100:.1f} fold {a('')*100:.1f} nofold {a('-nofold')*100:.1f} comp {a('-comp')*100:.1f} "
      f"macs {r['macs_fraction']:.3f} search {secs}s load {load}", " ".join(f"{k}={v:.3g}" for k, v in sorted(m.items())))
PY
