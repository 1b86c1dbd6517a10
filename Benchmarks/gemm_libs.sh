#!/usr/bin/env bash
# The GEMM libraries at every GEMM shape of a ViT forward and backward (issue 31, part 2): builds gemm_libs.c (all
# four libraries in one binary, alternating shape by shape) and runs it in both ways of using two cores (split:
# ROUNDS rounds; library: LIBRARY_ROUNDS; see gemm_libs.c). OpenBLAS's core is its own choice (OPENBLAS_CORETYPE
# unset). Debian packages: libopenblas-dev, libdnnl-dev, libblis-dev (the OpenMP build), libxsmm-dev.
#   bash Benchmarks/gemm_libs.sh [ROUNDS [LIBRARY_ROUNDS]] > Benchmarks/results/gemm-libs.jsonl
# The first line describes the machine (CPU model, vector extensions, OpenBLAS's core); each mode starts with a line
# giving its rounds and the load average. Summarize with Benchmarks/gemm_libs_summary.py.
set -euo pipefail
rounds=${1:-5}
library_rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -fopenmp "$here/gemm_libs.c" -o "$work/gemm_libs" -ldnnl /usr/lib/libxsmmext.a /usr/lib/libxsmm.a -lopenblas \
    -lm -ldl -lpthread
cat > "$work/core.c" <<'C'
#include <stdio.h>
char *openblas_get_corename(void);
char *openblas_get_config(void);
int main(void) { printf("%s\t%s\n", openblas_get_corename(), openblas_get_config()); return 0; }
C
gcc "$work/core.c" -o "$work/core" -lopenblas
IFS=$'\t' read -r core config < <(env -u OPENBLAS_CORETYPE "$work/core")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
vector=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|fma|amx)' | sort | tr '\n' ' ' | sed 's/ $//')
versions=$(dpkg-query -W -f='${Package}=${Version} ' libopenblas-dev libdnnl-dev libblis-dev libxsmm-dev 2>/dev/null \
    | sed 's/ $//')
printf '{"machine":{"cpu":"%s","cores":%d,"vector":"%s","openblas_core":"%s","openblas_config":"%s","packages":"%s","date":"%s"}}\n' \
    "$cpu" "$(nproc)" "$vector" "$core" "$config" "$versions" "$(date -u +%FT%TZ)"
for mode in split library; do
    count=$rounds
    [[ $mode == library ]] && count=$library_rounds
    printf '{"mode":"%s","rounds":%d,"load":"%s"}\n' "$mode" "$count" "$(cut -d' ' -f1-3 /proc/loadavg)"
    env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=2 "$work/gemm_libs" "$mode" "$count"
done
printf '{"end":"%s","load":"%s"}\n' "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"
