#!/usr/bin/env bash
# Regenerates onnx_subset.pb.swift from onnx_subset.proto. Not part of the build: the generated file is committed,
# because building protoc-gen-swift takes ~10 minutes on 2 cores. Needs protoc (Debian: protobuf-compiler) and
# protoc-gen-swift of the swift-protobuf version Package.swift names: pass its path as PROTOC_GEN_SWIFT, or let this
# script build it in a throwaway folder. When the `onnx` Python package is installed, every field number, type and
# enum value is first checked against the published schema (check_against_onnx.py).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=1.39.0
PLUGIN="${PROTOC_GEN_SWIFT:-}"
if [ -z "$PLUGIN" ]; then
    scratch=$(mktemp -d)
    git clone --quiet --depth 1 --branch "$VERSION" https://github.com/apple/swift-protobuf "$scratch/swift-protobuf"
    swift build -c release --package-path "$scratch/swift-protobuf" --product protoc-gen-swift
    PLUGIN="$scratch/swift-protobuf/.build/release/protoc-gen-swift"
fi
if python3 -c "import onnx" 2>/dev/null; then python3 check_against_onnx.py onnx_subset.proto; fi
protoc --plugin=protoc-gen-swift="$PLUGIN" --swift_opt=Visibility=Internal --swift_out=. onnx_subset.proto
echo "wrote $(pwd)/onnx_subset.pb.swift"
