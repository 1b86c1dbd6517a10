# ViTForge on an NVIDIA GPU through OpenCL. The image holds the OpenCL ICD loader and the vendor file that points it
# at NVIDIA's OpenCL library; the library itself (the driver) comes from the NVIDIA container runtime at `docker run`.
#   docker build -f Docker/gpu.Dockerfile -t vitforge:gpu .
#   docker run --rm --gpus all vitforge:gpu devices
#   docker run --rm --gpus all vitforge:gpu bench --model /models/M.safetensors --batch 1 --batch 64
# The runtime packages are listed in Docker/runtime-packages (shared with cpu.Dockerfile and the CI check).
ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
COPY .ci/setup .ci/setup
RUN bash .ci/setup && rm -rf /var/lib/apt/lists/*
COPY . .
ENV VITFORGE_PORTABLE_BUILD=1
RUN swift build -c release --static-swift-stdlib --product vitforge \
    && install -D "$(swift build -c release --show-bin-path)/vitforge" /out/vitforge

FROM debian:bookworm-slim AS runtime
COPY Docker/runtime-packages Docker/packages.sh /tmp/vitforge-packages/
RUN apt-get update \
    && apt-get install -y --no-install-recommends $(sh /tmp/vitforge-packages/packages.sh gpu) \
    && rm -rf /var/lib/apt/lists/* /tmp/vitforge-packages \
    && mkdir -p /etc/OpenCL/vendors \
    && echo "libnvidia-opencl.so.1" > /etc/OpenCL/vendors/nvidia.icd
COPY --from=build /out/vitforge /usr/local/bin/vitforge
# What the NVIDIA container runtime mounts: compute (OpenCL/CUDA libraries) and utility (nvidia-smi).
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    VITFORGE_CACHE_DIR=/tmp/vitforge-cache
WORKDIR /work
ENTRYPOINT ["vitforge"]
CMD ["--help"]
