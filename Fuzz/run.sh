#!/usr/bin/env bash
# Builds the libFuzzer harnesses (every module with -sanitize=fuzzer,address) and runs each for SECONDS:
#   Fuzz/run.sh [SECONDS] [HARNESS ...]        (default 60 s each; harnesses: safetensors idx image flags)
# First every committed regression input (Fuzz/Regressions/<harness>/) must pass, then each harness fuzzes from its
# seeds (Fuzz/Seeds/<harness>/) into a scratch corpus under the build folder (new inputs are not committed).
# A crash, a sanitizer report, a timeout (10 s) or an input needing more than 2 GB (-rss_limit_mb) fails the run and
# leaves the input in <build>/fuzz-artifacts/. Set FUZZ_BUILD to choose the build folder (default .build-fuzz).
# A libFuzzer process uses one core: FUZZ_JOBS harnesses (default: the core count) run side by side, each for its
# full SECONDS, and their lines print in the order given.
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

# Runs one harness (regressions, then fuzzing) and writes what it has to say to <build>/fuzz-<harness>.summary;
# fails when the harness found something.
fuzz_one() {
    local harness=$1 program corpus artifacts log status=0 runs rate coverage features rss
    program="$BIN/$(executable "$harness")"
    corpus="$BUILD/fuzz-corpus/$harness"
    artifacts="$BUILD/fuzz-artifacts/$harness/"
    mkdir -p "$corpus" "$artifacts"
    if compgen -G "Fuzz/Regressions/$harness/*" > /dev/null; then
        "$program" -rss_limit_mb=2048 -timeout=10 Fuzz/Regressions/$harness/* > "$BUILD/fuzz-$harness-regressions.log" 2>&1 \
            || { echo "fuzz $harness: a committed regression input fails:"; tail -30 "$BUILD/fuzz-$harness-regressions.log"
                 return 1; }
    fi
    log="$BUILD/fuzz-$harness.log"
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
        return 1
    fi
}

JOBS=${FUZZ_JOBS:-$(nproc)}
pids=()
for harness in "${HARNESSES[@]}"; do
    executable "$harness" > /dev/null  # an unknown name stops here, before anything runs
    # At most JOBS at once: wait for any one of the running harnesses (its status is read below, by its pid).
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    fuzz_one "$harness" > "$BUILD/fuzz-$harness.summary" 2>&1 &
    pids+=($!)
done
failed=0
for i in "${!HARNESSES[@]}"; do
    wait "${pids[$i]}" || failed=1
    cat "$BUILD/fuzz-${HARNESSES[$i]}.summary"
done
exit "$failed"
