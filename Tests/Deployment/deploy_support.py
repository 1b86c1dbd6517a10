"""What the deployment checks share: the built binary, numpy-only safetensors I/O, a small Fashion-MNIST subset.

Only numpy is needed (CI installs it with onnxruntime from PyPI); no torch.
"""
import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
SHARED_FIXTURES = os.path.join(os.path.dirname(ROOT), "shared", "fixtures")
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def vitforge_binary():
    """The release binary `swift build -c release` made (VITFORGE_BIN overrides)."""
    path = os.environ.get("VITFORGE_BIN") or os.path.join(ROOT, ".build", "release", "vitforge")
    if not os.access(path, os.X_OK):
        sys.exit(f"no vitforge binary at {path}; build first or set VITFORGE_BIN")
    return path


def vitforge(*args):
    """Runs vitforge on the CPU backend; its output is shown only when it fails."""
    command = [vitforge_binary(), *map(str, args)]
    env = dict(os.environ, VITFORGE_DEVICE="cpu")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stdout}{result.stderr}")
    return result.stdout


_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}


def read_safetensors(path):
    """{name: array} and the metadata of a safetensors file."""
    with open(path, "rb") as handle:
        length = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(length))
        data = handle.read()
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=_DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Float32 (and int64) tensors in insertion order, 8-byte aligned header as the format recommends."""
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[array.dtype]
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def fashion_mnist_subset(folder, train=1024, test=512):
    """The first `train` training and `test` test images of Debian's Fashion-MNIST, as an IDX folder (small enough
    that a prune with a training phase takes seconds)."""
    os.makedirs(folder, exist_ok=True)
    for split, count in (("train", train), ("t10k", test)):
        for kind, header_size, item_size in (("images-idx3", 16, 28 * 28), ("labels-idx1", 8, 1)):
            name = f"{split}-{kind}-ubyte"
            with gzip.open(os.path.join(FASHION_MNIST, name + ".gz"), "rb") as source:
                header = bytearray(source.read(header_size))
                body = source.read(count * item_size)
            header[4:8] = struct.pack(">I", count)
            with open(os.path.join(folder, name), "wb") as out:
                out.write(bytes(header) + body)
    return folder
