#!/usr/bin/env bash
# The CPU backend end to end per GEMM setting (issue 31, part 2): `vitforge bench` with VITFORGE_GEMM=openblas,
# onednn and auto, inference and one training step, per model, in ROUNDS alternating rounds (each round runs every
# setting in turn, the order rotating by one each round, so that the load of a shared machine falls on all of
# them alike). OpenBLAS's core is its own choice (OPENBLAS_CORETYPE unset). `auto` reads (or first measures) the
# per-shape choices of this machine; the first round's auto rows include that one-time timing only if the choice
# file did not exist yet (delete it beforehand to see that cost, keep it to see the steady state).
#   bash Benchmarks/gemm_e2e.sh VITFORGE MODEL:HEADS[,MODEL:HEADS...] BATCH ROUNDS > Benchmarks/results/gemm-e2e.jsonl
# One JSON line per row: round, setting, mode, bench's row (model, batch, median ms, images/s, GFLOP/s), the load
# average before it; the first line describes the machine. Summarize with Benchmarks/gemm_e2e_summary.py.
set -euo pipefail
binary=${1:?usage: gemm_e2e.sh VITFORGE MODELS BATCH ROUNDS}
models=${2:?usage: gemm_e2e.sh VITFORGE MODELS BATCH ROUNDS}
batch=${3:-64}
rounds=${4:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
settings=(openblas onednn auto)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
vector=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|fma|amx)' | sort | tr '\n' ' ' | sed 's/ $//')
core=$(env -u OPENBLAS_CORETYPE "$binary" devices --device cpu | sed -n 's/.*OpenBLAS \([^,]*\),.*/\1/p' | head -1)
printf '{"machine":{"cpu":"%s","cores":%d,"vector":"%s","openblas_core":"%s","batch":%d,"rounds":%d,"date":"%s"}}\n' \
    "$cpu" "$(nproc)" "$vector" "$core" "$batch" "$rounds" "$(date -u +%FT%TZ)"
IFS=, read -r -a model_list <<< "$models"
for round in $(seq 1 "$rounds"); do
    for i in 0 1 2; do
        setting=${settings[$(( (i + round - 1) % 3 ))]}
        for entry in "${model_list[@]}"; do
            model=${entry%:*}
            heads=${entry##*:}
            for mode in infer train; do
                load=$(cut -d' ' -f1 /proc/loadavg)
                flag=()
                [[ $mode == train ]] && flag=(--train)
                env -u OPENBLAS_CORETYPE VITFORGE_GEMM="$setting" "$binary" bench --device cpu --model "$model" --heads "$heads" \
                    --batch "$batch" "${flag[@]}" --warmup 1 --runs 3 --json "$work/row.json" > /dev/null
                python3 - "$work/row.json" "$round" "$setting" "$mode" "$load" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
row = report["results"][0]
print(json.dumps({"round": int(sys.argv[2]), "setting": sys.argv[3], "mode": sys.argv[4], "load": float(sys.argv[5]),
                  "gemm": report.get("gemm"), "device": report["device"], "model": row["model"],
                  "batch": row["batch"], **{k: v for k, v in row.items() if k not in ("model", "batch", "mode")}}))
PY
            done
        done
    done
done
printf '{"end":"%s","load":"%s"}\n' "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"
