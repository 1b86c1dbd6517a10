#!/usr/bin/env bash
# Puts everything one call on a lent GPU machine needs (no Swift, no network there) into gpu-pack/ (git-ignored,
# carried beside the working tree): vitforge, op-table and op-bench built with the Swift runtime linked statically,
# every shared library `ldd` lists that is not glibc's (CLBlast, the OpenCL ICD loader, OpenBLAS, libpng, …), and the
# Python scripts of Benchmarks/gpu. Binaries and libraries go into one xz tarball (234 MB → 31 MB, see below), which
# run.sh unpacks into a temporary folder on the device.
#   bash Benchmarks/gpu/pack.sh [--prebuilt DIR] [--op-bench PATH] [--dest DIR]
# --prebuilt DIR takes vitforge and op-table from DIR (CI's dry run: the binaries its build stage made) instead of
# building them; --op-bench PATH likewise. Fails when the pack plus the tracked tree exceed the carry limit (64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
prebuilt="" op_bench="" dest="gpu-pack"
while [ $# -gt 0 ]; do
    case "$1" in
    --prebuilt) prebuilt=${2:?--prebuilt needs a folder}; shift 2 ;;
    --op-bench) op_bench=${2:?--op-bench needs a path}; shift 2 ;;
    --dest) dest=${2:?--dest needs a folder}; shift 2 ;;
    *) echo "pack.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
limit=$((64 * 1024 * 1024))
for tool in xz strip ldd; do
    command -v "$tool" > /dev/null \
        || { echo "pack.sh: $tool not found (apt-get install xz-utils binutils)" >&2; exit 1; }
done

# Every static build shares runtime_check.sh's scratch folder and flags (portable x86-64, static Swift runtime), so
# that in CI vitforge is built once for both and nothing is compiled twice: op-table adds two small targets, and
# op-bench (the Benchmarks package, whose ViTForge modules get the same compiler commands as the root's) only its
# main.swift. Two root packages take turns in one scratch folder, so neither may reuse the build plan the other
# left there (SwiftPM's cached plan does not notice the switch: "No target named 'op-bench…' in build description").
static_build() {
    VITFORGE_PORTABLE_BUILD=1 swift build -c release --static-swift-stdlib --scratch-path .build-runtime \
        --disable-build-manifest-caching "$@"
}
if [ -n "$prebuilt" ]; then
    bin_dir=$prebuilt
else
    static_build --product vitforge
    static_build --product op-table
    bin_dir=$(static_build --show-bin-path)
fi
if [ -z "$op_bench" ]; then
    static_build --package-path Benchmarks --product op-bench
    op_bench="$(static_build --package-path Benchmarks --show-bin-path)/op-bench"
fi
for binary in "$bin_dir/vitforge" "$bin_dir/op-table" "$op_bench"; do
    [ -x "$binary" ] || { echo "pack.sh: $binary: no such executable" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/pack/bin" "$stage/pack/lib" "$stage/pack/scripts"
install -m 755 "$bin_dir/vitforge" "$bin_dir/op-table" "$op_bench" "$stage/pack/bin/"
strip --strip-unneeded "$stage/pack/bin/"* 2>/dev/null || true
# glibc's own libraries (and the kernel's vDSO) come from the device; everything else travels. The loader
# (ld-linux) travels too, for run.sh's fallback when the device's glibc is older than the one built against.
is_glibc() {
    case "$1" in
    linux-vdso.so.*|ld-linux-x86-64.so.*|libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*) return 0 ;;
    libresolv.so.*|libutil.so.*) return 0 ;;
    *) return 1 ;;
    esac
}
for binary in "$stage/pack/bin/"*; do
    ldd "$binary" | awk '/=>/ { print $1, $3 } /ld-linux/ && !/=>/ { print $1, $1 }'
done | sort -u | while read -r name path; do
    name=$(basename "$name")
    [ -f "$path" ] || { echo "pack.sh: $name: not found (ldd)" >&2; exit 1; }
    if is_glibc "$name"; then
        mkdir -p "$stage/pack/glibc"
        cp -L "$path" "$stage/pack/glibc/$name"
    else
        cp -L "$path" "$stage/pack/lib/$name"
    fi
done
# For the loader fallback: glibc's compatibility stubs, which the driver's libraries (libnvidia-opencl, libcuda)
# still name; from the device's older glibc they would not load beside this one.
libc_dir=$(dirname "$(ldd "$stage/pack/bin/vitforge" | awk '$1 == "libc.so.6" { print $3 }')")
for stub in libpthread.so.0 libdl.so.2 librt.so.1; do
    if [ -e "$libc_dir/$stub" ]; then cp -L "$libc_dir/$stub" "$stage/pack/glibc/$stub"; fi
done
cp Benchmarks/gpu/*.py "$stage/pack/scripts/"
git rev-parse HEAD > "$stage/pack/COMMIT" 2>/dev/null || echo unknown > "$stage/pack/COMMIT"
rm -rf "$dest"
mkdir -p "$dest"
# Each static binary carries Foundation's ICU data (~45 MB, ViTForgeDevice imports Foundation): with a dictionary
# larger than one binary, xz stores the later copies as references (52 MB with xz's default 8 MiB, 27 MB so; 128 MiB
# of memory to unpack). The binaries go first and together. The dictionary does most of the work, so the fast match
# finder of preset 1 is enough: on the 234 MB tar, preset 6 gave 27.4 MB in 140 s of one core, preset 1 31.0 MB in
# 26 s (preset 0: 32.5 MB, 17 s), well inside the carry limit checked below.
tar -C "$stage" -cf - pack/bin pack/lib pack/glibc pack/scripts pack/COMMIT \
    | xz --lzma2=preset=1,dict=128MiB -T1 > "$dest/pack.tar.xz"
(cd "$stage/pack" && find . -type f -printf '%s %p\n' | sort -k2) > "$dest/CONTENTS"
pack_bytes=$(du -cb "$dest" | tail -1 | cut -f1)
tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | awk '/total$/ { sum += $1 } END { print sum + 0 }')
total=$((pack_bytes + tree_bytes))
echo "pack: $dest/pack.tar.xz $((pack_bytes / 1024)) KiB (unpacked $(du -sb "$stage/pack" | cut -f1) bytes);" \
     "tracked tree $((tree_bytes / 1024)) KiB; together $((total / 1024)) KiB of $((limit / 1024)) KiB"
if [ "$total" -gt "$limit" ]; then
    echo "pack.sh: pack + tracked tree = $total bytes, over the carry limit of $limit" >&2
    exit 1
fi
