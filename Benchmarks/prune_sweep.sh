#!/usr/bin/env bash
# Accuracy of VBP against the magnitude / Taylor / random baselines at several MLP keep ratios, right after pruning
# and (with FINETUNE_EPOCHS>0) after distillation fine-tuning, plus measured speed-up against the MAC reduction.
# Usage: bash Benchmarks/prune_sweep.sh [out-dir]      (env: MODELS, METHODS, KEEPS, FINETUNE_EPOCHS, CALIB, VITFORGE,
#        PRUNE_ARGS: extra `vitforge prune` flags, e.g. "--scope block", with TAG naming those runs)
# Prints one table row per run and writes each run's JSON report into out-dir.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/env
out="${1:-out/prune-sweep}"
mkdir -p "$out"
bin="${VITFORGE:-.build/release/vitforge}"
[ -x "$bin" ] || swift build -c release
MODELS="${MODELS:-fm-vit-c:2 fm-vit-b:4}"
METHODS="${METHODS:-vbp taylor magnitude random}"
KEEPS="${KEEPS:-0.7 0.5 0.3}"
FINETUNE_EPOCHS="${FINETUNE_EPOCHS:-0}"
CALIB="${CALIB:-10000}"
read -r -a extra <<< "${PRUNE_ARGS:-}"
tag="${TAG:-}"
printf "%-9s %-9s %5s %9s %9s %9s %9s %8s %8s %8s\n" model method keep orig_acc pruned ft macs% "x@1" "x@64" "x@256"
for entry in $MODELS; do
  model="${entry%%:*}"; heads="${entry##*:}"
  for method in $METHODS; do
    for keep in $KEEPS; do
      name="$model-$method$tag-$keep"
      report="$out/$name.json"
      ft=()
      [ "$FINETUNE_EPOCHS" -gt 0 ] && ft=(--finetune-epochs "$FINETUNE_EPOCHS" --distill)
      # Magnitude and random read no images: prune refuses --calib-images for them.
      calib=()
      case "$method" in vbp|taylor) calib=(--calib-images "$CALIB") ;; esac
      "$bin" prune --model "Tests/Fixtures/$model.safetensors" --heads "$heads" --method "$method" \
        --keep-mlp "$keep" "${calib[@]}" --latency-batches 1,64,256 "${ft[@]}" "${extra[@]}" --device cpu \
        --out "$out/$name.safetensors" --report "$report" > "$out/$name.log" 2>&1
      python3 - "$report" "$model" "$method$tag" "$keep" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
o, p = r["original"], r["pruned"]
speed = [b["images_per_second"] / a["images_per_second"] for a, b in zip(o["latency"], p["latency"])]
ft = r.get("accuracy_after_finetuning")
print("%-9s %-9s %5s %8.1f%% %8.1f%% %9s %8.1f%% %8.2f %8.2f %8.2f" % (
    sys.argv[2], sys.argv[3], sys.argv[4], o["accuracy"] * 100, r["accuracy_after_pruning"] * 100,
    "-" if ft is None else "%.1f%%" % (ft * 100), r["macs_fraction"] * 100, *speed))
PY
    done
  done
done
