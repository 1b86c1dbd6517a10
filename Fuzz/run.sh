#!/usr/bin/env bash
# Builds the libFuzzer harnesses (every module with -sanitize=fuzzer,address) and runs each for SECONDS:
#   Fuzz/run.sh [SECONDS] [HARNESS ...]        (default 60 s each; harnesses: safetensors idx image flags)
# First every committed regression input (Fuzz/Regressions/<harness>/) must pass, then each harness fuzzes from its
# seeds (Fuzz/Seeds/<harness>/) into a scratch corpus under the build folder (new inputs are not committed).
# A crash, a sanitizer report, a timeout (10 s) or an input needing more than 2 GB (-rss_limit_mb) fails the run and
# leaves the input in <build>/fuzz-artifacts/. Set FUZZ_BUILD to choose the build folder (default .build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(safetensors idx image flags)
BUILD=${FUZZ_BUILD:-.build-fuzz}

FLAGS=(-c release --package-path Fuzz --scratch-path "$BUILD"
       -Xswiftc -sanitize=fuzzer,address
       -Xcc -fsanitize=fuzzer-no-link,address
       -Xswiftc -use-ld=lld)  # gold stops with an internal error on the sanitizer objects
swift build "${FLAGS[@]}"
BIN=$(swift build "${FLAGS[@]}" --show-bin-path)

executable() {
    case "$1" in
        safetensors) echo FuzzSafetensors ;;
        idx) echo FuzzIDX ;;
        image) echo FuzzImage ;;
        flags) echo FuzzFlags ;;
        *) echo "unknown harness $1" >&2; return 1 ;;
    esac
}

failed=0
for harness in "${HARNESSES[@]}"; do
    program="$BIN/$(executable "$harness")"
    corpus="$BUILD/fuzz-corpus/$harness"
    artifacts="$BUILD/fuzz-artifacts/$harness/"
    mkdir -p "$corpus" "$artifacts"
    if compgen -G "Fuzz/Regressions/$harness/*" > /dev/null; then
        "$program" -rss_limit_mb=2048 -timeout=10 Fuzz/Regressions/$harness/* > "$BUILD/fuzz-$harness-regressions.log" 2>&1 \
            || { echo "fuzz $harness: a committed regression input fails:"; tail -30 "$BUILD/fuzz-$harness-regressions.log"
                 failed=1; continue; }
    fi
    log="$BUILD/fuzz-$harness.log"
    status=0
    "$program" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" "Fuzz/Seeds/$harness" > "$log" 2>&1 || status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'exec/s: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
    coverage=$(grep -o 'cov: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
    features=$(grep -o 'ft: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz $harness: $runs inputs in $SECONDS_EACH s ($rate exec/s), coverage $coverage edges / $features features," \
         "peak RSS $rss MB, corpus $(ls "$corpus" | wc -l) inputs"
    if [ "$status" != 0 ]; then
        echo "fuzz $harness: FAILED (status $status); input in $artifacts"
        grep -m 5 -E 'ERROR|SUMMARY|Fatal error|deadly signal' "$log" || tail -20 "$log"
        failed=1
    fi
done
exit "$failed"
