#!/usr/bin/env python3
"""Fused against unfused attention on the CPU backend, and vitforge against onnxruntime, in alternating rounds.

For each case (model, batch, inference or training step), every round runs, in turn and each in its own process:
`vitforge bench --device cpu --attention fused`, the same with `--attention unfused`, and for inference onnxruntime
(2 intra-op threads, all graph optimisations) on the model exported by `vitforge export` (the same weights; no
PyTorch needed). Ratios are taken within a round and their median over rounds is reported, because this machine is
shared and its speed drifts between rounds.

OpenBLAS runs with its own kernel choice: the script removes OPENBLAS_CORETYPE from the children's environment and
reports the core `vitforge bench` names.

    python3 Benchmarks/attention_bench.py [--rounds 5] [--runs 5] [--only vit6x192,deit-tiny] [--json R.json]

Needs `swift build -c release` (or --vitforge B) and, for the onnxruntime column, a Python with onnxruntime and
numpy (--python; the column is left out when it has none).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from compare_pytorch import FIXTURES, ROOT, THREADS, vitforge_bench, write_json

# The 6-block, 192-wide ViT at 28×28 (patch 4: 50 tokens, 3 heads of 64) the issue names, written with random
# weights by `vitforge train --config` (no data needed: --stop-after-steps 0 is refused, so one step is taken).
VIT6X192 = {
    "blocks": [{"attentionScale": 0.125, "heads": 3, "mlpHidden": 768, "qkDim": 64, "vDim": 64}] * 6,
    "classToken": True, "classes": 10, "imageSize": 28, "inChannels": 1, "patchSize": 4, "pooling": "token",
    "qkvBias": True, "residualWidth": 192,
}

# name, batch, training step?, heads
CASES = [
    ("vit6x192", 64, False, None),
    ("vit6x192", 64, True, None),
    ("deit-tiny", 64, False, None),
    ("deit-tiny", 16, True, None),
]

ORT_WORKER = """
import json, resource, statistics, sys, time
import numpy as np, onnxruntime as ort
path, batch, warmup, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
shape = [batch] + [int(d) for d in session.get_inputs()[0].shape[1:]]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
name = session.get_inputs()[0].name
for _ in range(warmup):
    session.run(None, {name: x})
seconds = []
for _ in range(runs):
    start = time.perf_counter()
    session.run(None, {name: x})
    seconds.append(time.perf_counter() - start)
print(json.dumps({"median_s": statistics.median(seconds), "min_s": min(seconds),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "version": ort.__version__}))
"""


def child_environment():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    return env


def make_models(args, folder):
    """The weights of every model the cases name: DeiT-Tiny from the shared fixtures, the 6×192 ViT made here."""
    paths = {"deit-tiny": os.path.join(FIXTURES, "deit_tiny_patch16_224.safetensors")}
    config = os.path.join(folder, "vit6x192.json")
    with open(config, "w") as f:
        json.dump(VIT6X192, f)
    out = os.path.join(folder, "vit6x192.safetensors")
    # A stopped run exits with 130 and leaves a checkpoint (weights + optimizer state); the model is its weights.
    subprocess.run([args.vitforge, "train", "--config", config, "--epochs", "1", "--stop-after-steps", "1",
                    "--out", out, "--device", "cpu"], capture_output=True, text=True, env=child_environment())
    checkpoint = out + ".checkpoint.safetensors"
    if not os.path.exists(checkpoint):
        sys.exit(f"vitforge train --config {config} left no checkpoint at {checkpoint}")
    paths["vit6x192"] = strip_checkpoint(checkpoint, out)
    return paths


def strip_checkpoint(checkpoint, out):
    """Copies a checkpoint's model tensors (not `optimizer.*`/hook state) into a plain model file."""
    import struct
    with open(checkpoint, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    kept, blobs, offset = {}, [], 0
    for key in sorted(header):
        if "." in key and key.split(".")[0] in ("optimizer", "hook", "hooks"):
            continue
        start, end = header[key]["data_offsets"]
        kept[key] = {"dtype": header[key]["dtype"], "shape": header[key]["shape"],
                     "data_offsets": [offset, offset + end - start]}
        blobs.append(data[start:end])
        offset += end - start
    kept["__metadata__"] = {"format": "pt", "vitforge.config": metadata["vitforge.config"]}
    text = json.dumps(kept).encode()
    text += b" " * (-len(text) % 8)
    with open(out + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)
    os.replace(out + ".tmp", out)
    return out


def measure_vitforge(args, weights, batch, train, attention, heads):
    extra = ["--attention", attention]
    report = vitforge_bench(args.vitforge, weights, [batch], heads, args.runs, args.warmup, train,
                            extra=extra, env=child_environment())
    row = report["results"][0]
    return {"median_s": row["latency_ms_median"] / 1000, "min_s": row["latency_ms_min"] / 1000,
            "peak_mb": row["peak_memory_mb"], "blas_core": report.get("blas_core")}


def measure_ort(args, onnx, batch):
    out = subprocess.run([args.python, "-c", ORT_WORKER, onnx, str(batch), str(args.warmup), str(args.runs),
                          str(THREADS)], check=True, capture_output=True, text=True, env=child_environment())
    return json.loads(out.stdout.strip().splitlines()[-1])


def has_onnxruntime(python):
    probe = subprocess.run([python, "-c", "import numpy, onnxruntime"], capture_output=True)
    return probe.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per engine and round (median taken)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", help="comma-separated model names (vit6x192, deit-tiny)")
    parser.add_argument("--vitforge", default=os.path.join(ROOT, ".build", "release", "vitforge"))
    parser.add_argument("--python", default=sys.executable, help="a Python with onnxruntime and numpy")
    parser.add_argument("--json", help="write every measurement and the summary here")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or c[0] in args.only.split(",")]
    ort_available = has_onnxruntime(args.python)
    if not ort_available:
        print(f"{args.python} has no onnxruntime/numpy: the onnxruntime column is left out", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        weights = make_models(args, folder)
        onnx = {}
        if ort_available:
            for name in {c[0] for c in cases}:
                onnx[name] = os.path.join(folder, name + ".onnx")
                subprocess.run([args.vitforge, "export", "--model", weights[name], "--out", onnx[name]],
                               check=True, capture_output=True, text=True)
        rounds = []
        for number in range(args.rounds):
            measured = {}
            for name, batch, train, heads in cases:
                key = f"{name} b{batch} {'train' if train else 'infer'}"
                row = {"fused": measure_vitforge(args, weights[name], batch, train, "fused", heads),
                       "unfused": measure_vitforge(args, weights[name], batch, train, "unfused", heads)}
                if ort_available and not train:
                    row["onnxruntime"] = measure_ort(args, onnx[name], batch)
                measured[key] = row
                print(f"round {number + 1}/{args.rounds} {key}: "
                      + ", ".join(f"{engine} {batch / r['median_s']:.1f} img/s" for engine, r in row.items()),
                      file=sys.stderr, flush=True)
            rounds.append(measured)
    summary = {}
    print(f"\n{'case':24} {'fused img/s':>12} {'unfused':>9} {'fused/unfused':>14} {'onnxruntime':>12} "
          f"{'fused/ort':>10} {'peak MB f/u':>12}")
    for key in rounds[0]:
        batch = int(key.split(" b")[1].split()[0])
        per_engine = {engine: statistics.median(batch / r[key][engine]["median_s"] for r in rounds)
                      for engine in rounds[0][key]}
        ratio = statistics.median(r[key]["unfused"]["median_s"] / r[key]["fused"]["median_s"] for r in rounds)
        entry = {"images_per_second": per_engine, "fused_over_unfused": ratio,
                 "peak_mb": {e: rounds[-1][key][e]["peak_mb"] for e in ("fused", "unfused")}}
        if "onnxruntime" in per_engine:
            entry["fused_over_onnxruntime"] = statistics.median(
                r[key]["onnxruntime"]["median_s"] / r[key]["fused"]["median_s"] for r in rounds)
        summary[key] = entry
        ort_text = f"{per_engine['onnxruntime']:12.1f} {entry['fused_over_onnxruntime']:10.2f}" \
            if "onnxruntime" in per_engine else f"{'':12} {'':10}"
        print(f"{key:24} {per_engine['fused']:12.1f} {per_engine['unfused']:9.1f} {ratio:14.2f} {ort_text} "
              f"{entry['peak_mb']['fused']:6.0f}/{entry['peak_mb']['unfused']:.0f}")
    core = rounds[0][next(iter(rounds[0]))]["fused"]["blas_core"]
    print(f"OpenBLAS core: {core}; {args.rounds} rounds × {args.runs} runs; ratios are medians of per-round ratios")
    if args.json:
        write_json(args.json, {"blas_core": core, "rounds": rounds, "summary": summary})


if __name__ == "__main__":
    main()
