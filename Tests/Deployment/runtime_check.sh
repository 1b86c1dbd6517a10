#!/usr/bin/env bash
# CI check of the Docker images' runtime stage without a Docker engine: the binary built as the Dockerfiles build it
# (portable x86-64, Swift runtime linked statically), a clean Debian bookworm root made by debootstrap with exactly
# the packages of Docker/runtime-packages for the cpu image, and vitforge run in it under chroot: every library
# resolves (ldd), `vitforge devices` finds the CPU backend and PoCL's OpenCL device, and a short `bench` runs on both.
#   bash Tests/Deployment/runtime_check.sh build|root|run WORK_DIR
# (three steps, so that CI times each one: build ≈ a release build, root ≈ download + unpack (CI runs it in the
# background beside the build), run: seconds).
set -euo pipefail
cd "$(dirname "$0")/../.."
step=${1:?usage: runtime_check.sh build|root|run WORK_DIR}
work=${2:?usage: runtime_check.sh build|root|run WORK_DIR}
root="$work/rootfs"
binary="$work/vitforge"
mkdir -p "$work"

case "$step" in
build)
    # A scratch folder of its own: the test build beside it uses different flags.
    VITFORGE_PORTABLE_BUILD=1 swift build -c release --static-swift-stdlib --product vitforge --scratch-path .build-runtime
    install -D "$(VITFORGE_PORTABLE_BUILD=1 swift build -c release --static-swift-stdlib --scratch-path .build-runtime --show-bin-path)/vitforge" "$binary"
    ;;
root)
    packages=$(sh Docker/packages.sh cpu | paste -sd, -)
    echo "debootstrap bookworm (minbase) + $packages"
    # A run killed between mounting and unmounting may have left /proc or /sys mounted in an old root.
    for mounted in proc sys; do
        if mountpoint -q "$root/$mounted" 2>/dev/null; then umount "$root/$mounted"; fi
    done
    rm -rf --one-file-system "$root"
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }
    echo "root made in $SECONDS s: $(du -sh "$root" | cut -f1)"
    ;;
run)
    install -D "$binary" "$root/usr/local/bin/vitforge"
    install -D Tests/Fixtures/fm-vit-c.safetensors "$root/models/fm-vit-c.safetensors"
    # What a container has and a bare chroot lacks: /proc (the Swift runtime reads its arguments from
    # /proc/self/cmdline in a static binary) and /sys (PoCL's hwloc reads the CPU topology). Fresh mounts, not
    # bind mounts of the host's, so unmounting cannot reach the host's.
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    trap 'umount "$root/sys"; umount "$root/proc"' EXIT
    in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root \
        POCL_CACHE_DIR=/tmp/pocl-cache POCL_MAX_PTHREAD_COUNT="$(nproc)" "$@"; }
    # Nothing may come from outside the root: every shared library the binary needs is one of the packages'.
    in_root ldd /usr/local/bin/vitforge
    if in_root ldd /usr/local/bin/vitforge | grep -q "not found"; then echo "unresolved libraries"; exit 1; fi
    in_root vitforge devices | tee "$work/devices.txt"
    grep -qi "pocl\|portable computing" "$work/devices.txt" || { echo "PoCL's OpenCL device not found in the root"; exit 1; }
    in_root vitforge bench --model /models/fm-vit-c.safetensors --heads 2 --batch 1 --batch 8 --device cpu
    # oneDNN is loaded at run time (ldd does not list it): the packages' libdnnl must load and run the products.
    in_root env VITFORGE_GEMM=onednn vitforge bench --model /models/fm-vit-c.safetensors --heads 2 --batch 8 --device cpu
    # PoCL compiles every kernel first (most of this step's time); one small batch shows the path runs.
    in_root vitforge bench --model /models/fm-vit-c.safetensors --heads 2 --batch 1 --warmup 1 --runs 3 --device opencl
    echo "runtime check: vitforge runs in a clean Debian root with only Docker/runtime-packages (cpu) installed"
    ;;
*)
    echo "unknown step $step"; exit 2 ;;
esac
