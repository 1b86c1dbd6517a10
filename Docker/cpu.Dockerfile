# ViTForge on the CPU (OpenBLAS, oneDNN) with PoCL as an OpenCL CPU device: runs on any x86-64 machine.
#   docker build -f Docker/cpu.Dockerfile -t vitforge:cpu .
#   docker run --rm vitforge:cpu devices
#   docker run --rm -v "$PWD/out:/out" vitforge:cpu demo --out-dir /out
# The runtime packages are listed in Docker/runtime-packages (the CI check installs the same list into a clean
# Debian root and runs the binary there, since CI has no Docker engine).
ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
COPY .ci/setup .ci/setup
RUN bash .ci/setup && rm -rf /var/lib/apt/lists/*
COPY . .
# Baseline x86-64 (no -target-cpu from the build machine) and the Swift runtime linked in, so the binary needs only
# the Debian libraries of the runtime stage.
ENV VITFORGE_PORTABLE_BUILD=1
RUN swift build -c release --static-swift-stdlib --product vitforge \
    && install -D "$(swift build -c release --show-bin-path)/vitforge" /out/vitforge

FROM debian:bookworm-slim AS runtime
COPY Docker/runtime-packages Docker/packages.sh /tmp/vitforge-packages/
RUN apt-get update \
    && apt-get install -y --no-install-recommends $(sh /tmp/vitforge-packages/packages.sh cpu) \
    && rm -rf /var/lib/apt/lists/* /tmp/vitforge-packages
COPY --from=build /out/vitforge /usr/local/bin/vitforge
# PoCL needs a writable kernel cache (without one it reports no device); keep its threads at the core count.
ENV POCL_CACHE_DIR=/tmp/pocl-cache VITFORGE_CACHE_DIR=/tmp/vitforge-cache
WORKDIR /work
ENTRYPOINT ["vitforge"]
CMD ["--help"]
