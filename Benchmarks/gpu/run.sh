#!/usr/bin/env bash
# The prepared run for a lent GPU machine (issue 30): from the repository root, with the pack of pack.sh carried as
# gpu-pack/, it writes $OUT/gpu-run.json (every stage's status, time and numbers) and $OUT/gpu-run.log. Under 5
# minutes in all; each stage has its own time limit, and the JSON is rewritten after every stage, so a stage that
# fails or overruns costs only itself.
#   OUT=DIR bash Benchmarks/gpu/run.sh [--only STAGES] [--dry-run] [--pack DIR]
# STAGES: comma-separated from environment,correctness,gemm,model,attention,profile (default: all, in that order;
# environment always runs first, the others need the OpenCL setup it makes). --dry-run: tiny sizes on whatever
# OpenCL device there is (PoCL in CI), < 60 s; the PyTorch stages are skipped, with the reason, where torch or CUDA
# is missing. Benchmarks/README.md ("GPU run") has the one-line device command.
set -uo pipefail
cd "$(dirname "$0")/../.."
only="environment,correctness,gemm,model,attention,profile" dry=0 pack_dir="gpu-pack"
while [ $# -gt 0 ]; do
    case "$1" in
    --only) only=${2:?--only needs stages}; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --pack) pack_dir=${2:?--pack needs a folder}; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
: "${OUT:?run.sh: set OUT to the folder for the results}"
for name in ${only//,/ }; do
    case "$name" in environment|correctness|gemm|model|attention|profile) ;;
    *) echo "run.sh: unknown stage $name" >&2; exit 2 ;; esac
done
mkdir -p "$OUT"
log="$OUT/gpu-run.log" json="$OUT/gpu-run.json"
: > "$log"
work=$(mktemp -d "${TMPDIR:-/tmp}/vitforge-gpu.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stages" "$work/bin" "$work/models"
started=$SECONDS
say() { echo "[$((SECONDS - started)) s] $*" | tee -a "$log"; }

# Unpacking: tar's xz filter where there is one, Python's lzma otherwise.
if ! tar -C "$work" -xJf "$pack_dir/pack.tar.xz" 2>> "$log"; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$pack_dir/pack.tar.xz" "$work" || { say "cannot unpack $pack_dir/pack.tar.xz"; exit 1; }
fi
pack="$work/pack"
scripts="$pack/scripts"
export LD_LIBRARY_PATH="$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Kernel binaries: the run's own cache on the device; the dry run keeps the machine's (CI's test stage has built
# the standard program and the tile variants AttentionTilesTests uses, which are the dry run's).
[ "$dry" = 1 ] || export VITFORGE_CACHE_DIR="$work/kernel-cache"
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-$work/pocl-cache}"
export PYTHONDONTWRITEBYTECODE=1
# Wrappers on PATH: the binaries as they are, or (VITFORGE_PACK_LOADER=1, when the device's glibc is older than the
# build machine's) through the pack's own glibc loader. Through the loader /proc/self/exe is the loader, so bench
# could not re-run itself per row; every bench here measures --in-process: a child per row would also compile
# CLBlast's kernels again for every row (CLBlast keeps them per process), seconds each on a GPU driver, and peak
# memory is not this run's question.
write_wrappers() {
    for binary in vitforge op-table op-bench; do
        if [ "${VITFORGE_PACK_LOADER:-0}" = 1 ]; then
            # --library-path replaces LD_LIBRARY_PATH (the pack's lib, then the driver's folders) for this process.
            printf '#!/bin/sh\nexec "%s" --library-path "%s" "%s" "$@"\n' "$pack/glibc/ld-linux-x86-64.so.2" \
                "$pack/glibc:$LD_LIBRARY_PATH" "$pack/bin/$binary" > "$work/bin/$binary"
        else
            printf '#!/bin/sh\nexec "%s" "$@"\n' "$pack/bin/$binary" > "$work/bin/$binary"
        fi
        chmod +x "$work/bin/$binary"
    done
}
write_wrappers
export PATH="$work/bin:$PATH"

# Each stage: a shell function run in its own process group (job control on), killed with its whole group when it
# outlives its limit (`timeout` cannot run a shell function); output into the log, then its record (status,
# seconds, and the numbers the function left in $work/stages/NAME.json) merged into the one JSON.
set -m
run_stage() {
    local name=$1 limit=$2 start=$SECONDS status=0 outcome=ok
    shift 2
    say "== $name (limit $limit s)"
    rm -f "$work/timed-out"
    ( "$@" ) >> "$log" 2>&1 &
    local job=$!
    ( sleep "$limit"; touch "$work/timed-out"; kill -TERM -- "-$job" 2> /dev/null; sleep 5
      kill -KILL -- "-$job" 2> /dev/null ) > /dev/null 2>&1 &
    local watchdog=$!
    wait "$job" || status=$?
    kill -- "-$watchdog" 2> /dev/null
    wait "$watchdog" 2> /dev/null
    if [ -e "$work/timed-out" ]; then outcome=timeout; elif [ "$status" != 0 ]; then outcome=failed; fi
    record "$name" "$outcome" "$((SECONDS - start))" "$status" "$limit"
    say "== $name: $outcome ($((SECONDS - start)) s)"
}
record() {
    python3 "$scripts/gpu_json.py" record --stages "$work/stages" --name "$1" --status "$2" --seconds "$3" \
        --exit-code "$4" --limit "$5" >> "$log" 2>&1
    python3 "$scripts/gpu_json.py" merge --stages "$work/stages" --out "$json" --dry-run "$dry" \
        --commit "$(cat "$pack/COMMIT")" >> "$log" 2>&1
}
wants() { [[ ",$only," == *",$1,"* ]]; }

# What PyTorch can do here: "cuda", or the reason the PyTorch halves are skipped.
torch_state=$(timeout 60 python3 -c '
import torch
print("cuda" if torch.cuda.is_available() else "skipped: torch " + torch.__version__ + " sees no CUDA device")
' 2> /dev/null || echo "skipped: no torch in python3")
torch_state=$(echo "$torch_state" | tail -1)

# Sizes: the device's, or tiny ones for the dry run.
if [ "$dry" = 1 ]; then
    model_args=(--tiny) bench_batches=(--batch 1 --batch 2) train_batch=2 bench_runs=(--warmup 1 --runs 1)
    table_only=(--only attention) gemm_args=(--gemm-batch 1 --rounds 1 --only "gemm deit-tiny")
    attention_only="attentionForward 64x50 3h" rounds=1
    tiles=(--attention-tiles 8x4x16x64 --attention-tiles 32x4x8x64)
else
    model_args=() bench_batches=(--batch 1 --batch 64 --batch 256) train_batch=64 bench_runs=(--warmup 2 --runs 5)
    table_only=() gemm_args=(--gemm-batch 64 --rounds 5 --only gemm)
    attention_only="attention" rounds=2
    # rows × lanes × tile × width: the standard 16x4x16x128, narrower heads (DeiT's are 64 wide), more rows per
    # group, more lanes per row, longer tiles.
    tiles=(--attention-tiles 16x4x16x64 --attention-tiles 32x4x16x64 --attention-tiles 16x8x16x64
           --attention-tiles 16x4x32x64 --attention-tiles 32x2x16x64)
fi

# MARK: environment: always first (it sets up OpenCL for the rest).
env_stage() {
    # The driver's OpenCL library is in a read-only mount: an ICD file naming it goes into a folder of our own.
    python3 "$scripts/gpu_environment.py" --json "$work/stages/environment.json" --icd-dir "$work/vendors" \
        --torch "$torch_state" || return 1
}
say "run.sh: stages $only, dry run $dry, pack $(cat "$pack/COMMIT"), torch: $torch_state"
run_stage environment 60 env_stage
if [ -f "$work/vendors/nvidia.icd" ]; then
    export OCL_ICD_VENDORS="$work/vendors"
    say "OCL_ICD_VENDORS=$OCL_ICD_VENDORS ($(cat "$work/vendors/nvidia.icd"))"
fi
if ! vitforge --help > /dev/null 2>> "$log"; then
    if grep -q "GLIBC" "$log"; then
        say "the device's glibc is older than the build's: running through the pack's loader"
        export VITFORGE_PACK_LOADER=1
        write_wrappers
    fi
fi
devices_stage() {
    vitforge devices | tee "$work/devices.txt" || return 1
    python3 -c 'import json, sys; json.dump({"output": open(sys.argv[1]).read()}, open(sys.argv[2], "w"))' \
        "$work/devices.txt" "$work/stages/devices.json"
}
run_stage devices 30 devices_stage
device=opencl

# MARK: correctness: the op table on the OpenCL device, both kernel shapes (every row), then the attention rows on
# the GPU shape once per tile variant (the variants the attention stage times).
correctness_stage() {
    op-table --backend opencl "${table_only[@]}" --json "$work/correctness-table.json"
    local table=$?
    op-table --backend opencl --shapes gpu --only attention "${tiles[@]}" --json "$work/correctness-tiles.json"
    local variants=$?
    python3 "$scripts/gpu_json.py" collect --out "$work/stages/correctness.json" "$work"/correctness-*.json
    [ "$table" = 0 ] && [ "$variants" = 0 ]
}
wants correctness && run_stage correctness 90 correctness_stage

# Models: DeiT-Tiny and DeiT-Small made here with timm (random weights, fixed seed; 88 MB is too large to carry),
# or the tiny models of the dry run.
models_ready=0
make_models() {
    timeout 120 python3 "$scripts/gpu_models.py" --dest "$work/models" "${model_args[@]}" && models_ready=1
}
if wants model || wants attention || wants profile; then
    if make_models >> "$log" 2>&1; then
        python3 -c 'import json, sys; json.dump({"models": open(sys.argv[1]).read().split()}, open(sys.argv[2], "w"))' \
            "$work/models/models.txt" "$work/model-models.json"
    else
        say "models: not made (see the log); the model stages fall back to the fixture"
        echo '{"skipped": "timm models not made (no torch/timm, or they failed: see the log); fm-vit-c fixture"}' \
            > "$work/model-models.json"
    fi
fi
# name:heads:file for every model the model stages run.
model_list() {
    if [ "$models_ready" = 1 ]; then cat "$work/models/models.txt"
    else echo "fm-vit-c:2:$PWD/Tests/Fixtures/fm-vit-c.safetensors"; fi
}

# MARK: gemm: CLBlast SGEMM at the models' shapes (op-bench) against torch.matmul, TF32 off.
gemm_stage() {
    op-bench --shapes gpu "${gemm_args[@]}" --json "$work/gemm-opencl.json" || return 1
    python3 "$scripts/gpu_torch.py" gemm --opencl "$work/gemm-opencl.json" --torch-state "$torch_state" \
        --json "$work/stages/gemm.json"
}
wants gemm && run_stage gemm 90 gemm_stage

# MARK: model: training step and inference, vitforge on OpenCL against timm in PyTorch (fp32, bf16), alternating.
model_stage() {
    local models=() heads=() entry
    while IFS=: read -r _ head file; do models+=(--model "$file"); heads+=(--heads "$head"); done < <(model_list)
    for round in $(seq 1 "$rounds"); do
        vitforge bench --device "$device" "${models[@]}" "${heads[@]}" --batch "$train_batch" --train \
            "${bench_runs[@]}" --in-process --json "$work/model-train-$round.json" || return 1
        vitforge bench --device "$device" "${models[@]}" "${heads[@]}" "${bench_batches[@]}" \
            "${bench_runs[@]}" --in-process --json "$work/model-infer-$round.json" || return 1
        python3 "$scripts/gpu_torch.py" model --models "$(model_list | paste -sd,)" --train-batch "$train_batch" \
            "${bench_batches[@]}" "${bench_runs[@]}" --torch-state "$torch_state" \
            --json "$work/model-torch-$round.json" \
            || return 1
    done
    python3 "$scripts/gpu_json.py" collect --out "$work/stages/model.json" "$work"/model-*.json
}
wants model && run_stage model 150 model_stage

# MARK: attention: fused against unfused on the largest model, and the tiled kernel's variants side by side.
attention_stage() {
    local last
    last=$(model_list | tail -1)
    local head=${last#*:}; head=${head%%:*}
    local file=${last##*:}
    for path in fused unfused; do
        vitforge bench --device "$device" --model "$file" --heads "$head" --batch "$train_batch" --train \
            --attention "$path" "${bench_runs[@]}" --in-process --json "$work/attention-$path-train.json" || return 1
        vitforge bench --device "$device" --model "$file" --heads "$head" --batch "$train_batch" \
            --attention "$path" "${bench_runs[@]}" --in-process --json "$work/attention-$path-infer.json" || return 1
    done
    op-bench --shapes gpu,cpu "${tiles[@]}" --rounds 3 --only "$attention_only" --json "$work/attention-tiles.json" \
        || return 1
    python3 "$scripts/gpu_json.py" collect --out "$work/stages/attention.json" "$work"/attention-*.json
}
wants attention && run_stage attention 60 attention_stage

# MARK: profile: device time per kernel of one training step and one inference, and blocking calls per step.
profile_stage() {
    local last
    last=$(model_list | tail -1)
    local head=${last#*:}; head=${head%%:*}
    local file=${last##*:}
    VITFORGE_OPENCL_PROFILE=1 vitforge bench --device "$device" --model "$file" --heads "$head" \
        --batch "$train_batch" --train --warmup 1 --runs 1 --in-process --json "$work/profile-train.json" || return 1
    VITFORGE_OPENCL_PROFILE=1 vitforge bench --device "$device" --model "$file" --heads "$head" \
        --batch "$train_batch" --warmup 1 --runs 1 --in-process --json "$work/profile-infer.json" || return 1
    python3 "$scripts/gpu_json.py" collect --out "$work/stages/profile.json" "$work"/profile-*.json
}
wants profile && run_stage profile 45 profile_stage

say "run.sh: done in $((SECONDS - started)) s; $json"
python3 "$scripts/gpu_json.py" summary --json "$json" | tee -a "$log"
