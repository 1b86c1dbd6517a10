#!/usr/bin/env bash
# The equal-budget sweep every pruning method joins: the method at 50% and 25% of the MACs on fm-vit-b and at 25% on
# fm-vit-c, each run with the same total training budget — 3 epochs in all, with distillation from the unpruned model
# — split between the method's own training phase (METHOD_EPOCHS, `--epochs`) and fine-tuning after the cut (the
# rest, `--finetune-epochs`). One JSON row per run goes to Benchmarks/results/equal-budget-<method><TAG>.jsonl.
#
# Usage: bash Benchmarks/equal_budget_sweep.sh METHOD [METHOD ...]
#   env: METHOD_EPOCHS (default 0), TOTAL_EPOCHS (default 3; 0 measures accuracy right after the cut, without
#        distillation), EXTRA_ARGS (flags every run gets, e.g. "--calib-images 2000"; prune compensates the one-shot
#        methods' cuts by default since issue 29's sequential refit, so the plain-cut rows need "--no-compensate",
#        and the rows measured before the flip name "--compensate [--compensate-order sequential]"), TAG (names a variant), VITFORGE (a binary copy, so rebuilding does not change a
#        running sweep), RUNS ("model:heads:target" triples; default the three above), WORK (per-run models, logs and
#        reports; default out/equal-budget), and per-method extra flags in ARGS_<method>_<target> (dots as
#        underscores), e.g. ARGS_magnitude_0_25="--keep-residual 0.5".
# The baselines prune only MLP neurons when given a target; MLP neurons are 61% of fm-vit-c's MACs and 48% of
# fm-vit-b's, so their rows fix residual (and at 25%, head) keep fractions (defaults below) and solve the MLP width.
# VBP prunes MLP neurons only: a target it cannot reach is recorded as a row with "status": "unreachable".
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/env
bin="${VITFORGE:-.build/release/vitforge}"
[ -x "$bin" ] || swift build -c release
work="${WORK:-out/equal-budget}"
mkdir -p "$work" Benchmarks/results
RUNS="${RUNS:-fm-vit-b:4:0.5 fm-vit-b:4:0.25 fm-vit-c:2:0.25}"
METHOD_EPOCHS="${METHOD_EPOCHS:-0}"
TOTAL_EPOCHS="${TOTAL_EPOCHS:-3}"
read -r -a extra_all <<< "${EXTRA_ARGS:-}"
tag="${TAG:-}"
# Residual keep fractions for the baselines (magnitude, taylor, random): enough for the MLP to reach the target.
: "${ARGS_magnitude_0_5:=--keep-residual 0.75}" "${ARGS_magnitude_0_25:=--keep-residual 0.5 --keep-heads 0.5}"
: "${ARGS_taylor_0_5:=--keep-residual 0.75}" "${ARGS_taylor_0_25:=--keep-residual 0.5 --keep-heads 0.5}"
: "${ARGS_random_0_5:=--keep-residual 0.75}" "${ARGS_random_0_25:=--keep-residual 0.5 --keep-heads 0.5}"
# obs scores MLP neurons and heads, not residual channels: at 25% it fixes the heads and solves the MLP width.
: "${ARGS_obs_0_25:=--keep-heads 0.5}"
for method in "$@"; do
  rows="Benchmarks/results/equal-budget-$method$tag.jsonl"
  : > "$rows.tmp"
  for run in $RUNS; do
    IFS=: read -r model heads target <<< "$run"
    name="$model-$method$tag-$target"
    var="ARGS_${method}_${target//./_}"
    read -r -a extra <<< "${!var:-}"
    finetune=$((TOTAL_EPOCHS - METHOD_EPOCHS))
    distill=(); [ "$TOTAL_EPOCHS" -gt 0 ] && distill=(--distill)
    command=("$bin" prune --model "Tests/Fixtures/$model.safetensors" --heads "$heads" --method "$method"
             --target-macs "$target" --epochs "$METHOD_EPOCHS" --finetune-epochs "$finetune" "${distill[@]}"
             --latency-batches 1,64 --device cpu --seed 0 "${extra[@]}" "${extra_all[@]}"
             --out "$work/$name.safetensors" --report "$work/$name.json")
    start=$(date +%s)
    status=ok
    "${command[@]}" > "$work/$name.log" 2>&1 || status=failed
    seconds=$(( $(date +%s) - start ))
    python3 - "$work/$name.json" "$work/$name.log" "$status" "$model" "$method$tag" "$target" "$METHOD_EPOCHS" \
        "$finetune" "$seconds" "${command[*]}" >> "$rows.tmp" <<'PY'
import json, os, sys
report, log, status, model, method, target, epochs, finetune, seconds, command = sys.argv[1:]
row = {"model": model, "method": method, "target_macs": float(target), "epochs": int(epochs),
       "finetune_epochs": int(finetune), "distill": int(epochs) + int(finetune) > 0, "wall_seconds": int(seconds), "command": command}
if status == "ok" and os.path.exists(report):
    r = json.load(open(report))
    row.update(status="ok", macs_fraction=r["macs_fraction"], params_fraction=r["params_fraction"],
               accuracy_original=r["original"]["accuracy"], accuracy_after_pruning=r["accuracy_after_pruning"],
               accuracy_final=r["pruned"]["accuracy"],
               per_block=r["pruned"]["per_block"], budget=r["budget"],
               latency_original=r["original"]["latency"], latency_pruned=r["pruned"]["latency"],
               device=r["device"], version=r["version"], phase_seconds=r["seconds"])
else:
    lines = [l.strip() for l in open(log) if l.startswith("error")]
    error = lines[-1] if lines else "exit status non-zero (see the log)"
    row.update(status="unreachable" if "out of reach" in error else "failed", error=error)
print(json.dumps(row, sort_keys=True))
PY
    tail -n 1 "$rows.tmp"
  done
  mv "$rows.tmp" "$rows"
done
