#!/usr/bin/env python3
"""vitforge bench (CPU backend) against PyTorch eager and onnxruntime on the same weights, in the same run.

For each model: PyTorch eager inference (timm, torch.inference_mode, 2 threads), the same model exported with
torch.onnx and run by onnxruntime (2 intra-op threads), `vitforge bench --device cpu`, and the bare-OpenBLAS bound
(`gemm-bench --model`: every GEMM of the forward timed with bare cblas_sgemm, the model's FLOPs divided by their
throughput). Every engine is measured in its own subprocess, so its peak RSS (ru_maxrss) is its own.

Needs: pip install torch timm onnxruntime onnx onnxscript safetensors; `swift build -c release` and
`swift build -c release --package-path Benchmarks` (the script builds them with --build).

    python3 Benchmarks/compare_pytorch.py [--build] [--runs 7] [--warmup 2] [--json out/compare.json]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.environ.get("VITFORGE_FIXTURES", os.path.join(os.path.dirname(ROOT), "shared", "fixtures"))
THREADS = 2

# name, weights, batch, heads to pass to vitforge (None: inferred), how timm builds it
MODELS = [
    ("fm-vit-b", "fm-vit-b.safetensors", 256, 4, {"json": "fm-vit-b.json"}),
    ("deit-tiny", "deit_tiny_patch16_224.safetensors", 64, None, {"timm_name": "deit_tiny_patch16_224"}),
]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_timm_model(spec, weights_path):
    import timm
    import torch
    from safetensors.torch import load_file

    if "json" in spec:
        with open(os.path.join(FIXTURES, spec["json"])) as f:
            kwargs = json.load(f)["timm_kwargs"]
        from timm.models.vision_transformer import VisionTransformer
        model = VisionTransformer(**kwargs)
    else:
        model = timm.create_model(spec["timm_name"], pretrained=False)
    model.load_state_dict(load_file(weights_path), strict=True)
    model.eval()
    cfg = model.patch_embed
    channels = model.patch_embed.proj.in_channels
    size = cfg.img_size[0]
    return model, (channels, size, size)


def time_runs(step, warmup, runs):
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), min(seconds)


def worker_torch(args):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    spec = next(m for m in MODELS if m[0] == args.model)
    model, shape = build_timm_model(spec[4], os.path.join(FIXTURES, spec[1]))
    x = torch.randn(args.batch, *shape)
    with torch.inference_mode():
        median, fastest = time_runs(lambda: model(x), args.warmup, args.runs)
    return {"median_s": median, "min_s": fastest, "peak_mb": peak_rss_mb(),
            "version": torch.__version__, "threads": torch.get_num_threads()}


def worker_export(args):
    import torch
    torch.set_num_threads(THREADS)
    spec = next(m for m in MODELS if m[0] == args.model)
    model, shape = build_timm_model(spec[4], os.path.join(FIXTURES, spec[1]))
    x = torch.randn(args.batch, *shape)
    kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=17)
    try:
        torch.onnx.export(model, (x,), args.onnx, dynamo=False, **kwargs)
        exporter = "torchscript"
    except Exception as error:  # the legacy exporter may be gone in a newer torch
        print(f"torchscript exporter failed ({error}); using the dynamo exporter", file=sys.stderr)
        torch.onnx.export(model, (x,), args.onnx, dynamo=True, **kwargs)
        exporter = "dynamo"
    # Check the exported graph against eager once (max |difference| of the logits).
    import onnxruntime as ort
    session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        reference = model(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return {"exporter": exporter, "max_abs_diff_vs_eager": float(abs(got - reference).max())}


def worker_ort(args):
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    shape = [args.batch] + list(session.get_inputs()[0].shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    name = session.get_inputs()[0].name
    median, fastest = time_runs(lambda: session.run(None, {name: x}), args.warmup, args.runs)
    return {"median_s": median, "min_s": fastest, "peak_mb": peak_rss_mb(), "version": ort.__version__}


def run_worker(kind, model, batch, args, onnx_path=None):
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--model", model, "--batch", str(batch),
               "--runs", str(args.runs), "--warmup", str(args.warmup)]
    if onnx_path:
        command += ["--onnx", onnx_path]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def vitforge_bench(vitforge, weights, batches, heads=None, runs=7, warmup=2, train=False, extra=None, env=None):
    """`vitforge bench --device cpu` of one model at `batches` (plus `extra` arguments, in environment `env`);
    returns its JSON report (one result row per batch)."""
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "bench.json")
        command = [vitforge, "bench", "--device", "cpu", "--model", weights,
                   "--warmup", str(warmup), "--runs", str(runs), "--json", report]
        for batch in batches:
            command += ["--batch", str(batch)]
        if heads:
            command += ["--heads", str(heads)]
        if train:
            command.append("--train")
        command += extra or []
        subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        with open(report) as f:
            return json.load(f)


def add_round_arguments(parser, runs):
    """--rounds, --runs, --warmup, --vitforge and --json: what the scripts that time models in alternating rounds
    share (prune_speedup.py, token_speedup.py)."""
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--vitforge", default=os.path.join(ROOT, ".build", "release", "vitforge"))
    parser.add_argument("--json", help="write every measurement here")


def write_json(path, data):
    """Writes `data` as JSON to `path` through a temporary file renamed over it."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def run_vitforge(args, weights, batch, heads, train=False):
    result = vitforge_bench(args.vitforge, weights, [batch], heads, args.runs, args.warmup, train)
    row = result["results"][0]
    return {"median_s": row["latency_ms_median"] / 1000, "min_s": row["latency_ms_min"] / 1000,
            "peak_mb": row["peak_memory_mb"], "gflops": row.get("gflops_per_second"), "device": result["device"]}


def run_bound(args, weights, batch, heads):
    command = [args.gemm_bench, "--model", weights, "--batch", str(batch), "--repeats", str(args.runs), "--json"]
    if heads:
        command += ["--heads", str(heads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=["torch", "export", "ort"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per engine (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--only", help="comma-separated model names (fm-vit-b, deit-tiny)")
    parser.add_argument("--build", action="store_true", help="swift build -c release both packages first")
    parser.add_argument("--vitforge", default=os.path.join(ROOT, ".build", "release", "vitforge"))
    parser.add_argument("--gemm-bench", default=os.path.join(ROOT, "Benchmarks", ".build", "release", "gemm-bench"))
    parser.add_argument("--json", help="write every measured number here")
    args = parser.parse_args()

    if args.worker:
        result = {"torch": worker_torch, "export": worker_export, "ort": worker_ort}[args.worker](args)
        print(json.dumps(result))
        return

    if args.build:
        subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True)
        subprocess.run(["swift", "build", "-c", "release", "--package-path", "Benchmarks"], cwd=ROOT, check=True)

    selected = [m for m in MODELS if not args.only or m[0] in args.only.split(",")]
    summary = {"threads": THREADS, "runs": args.runs, "warmup": args.warmup, "models": []}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, file, batch, heads, spec in selected:
            weights = os.path.join(FIXTURES, file)
            onnx_path = os.path.join(folder, name + ".onnx")
            print(f"{name} batch {batch}: exporting ONNX …", file=sys.stderr, flush=True)
            export = run_worker("export", name, batch, args, onnx_path)
            # Interleaved order, so a slow patch of a shared machine does not fall on one engine only.
            print(f"{name}: bound, vitforge, PyTorch, onnxruntime …", file=sys.stderr, flush=True)
            bound = run_bound(args, weights, batch, heads)
            vitforge = run_vitforge(args, weights, batch, heads)
            torch_result = run_worker("torch", name, batch, args)
            ort_result = run_worker("ort", name, batch, args, onnx_path)
            entry = {"model": name, "weights": weights, "batch": batch, "bound": bound, "vitforge": vitforge,
                     "pytorch": torch_result, "onnxruntime": ort_result, "onnx_export": export}
            summary["models"].append(entry)
            rows.append(entry)

    print()
    print(f"CPU inference, {THREADS} threads, median of {args.runs} runs after {args.warmup} warm-up, same run; "
          f"torch {rows[0]['pytorch']['version']}, onnxruntime {rows[0]['onnxruntime']['version']}")
    header = f"{'model':10} {'batch':>5}  {'engine':22} {'images/s':>9} {'median ms':>10} {'min ms':>9} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for entry in rows:
        batch = entry["batch"]
        for label, key in [("vitforge (cpu)", "vitforge"), ("PyTorch eager", "pytorch"),
                           ("onnxruntime", "onnxruntime")]:
            r = entry[key]
            print(f"{entry['model']:10} {batch:>5}  {label:22} {batch / r['median_s']:9.1f} {1000 * r['median_s']:10.1f}"
                  f" {1000 * r['min_s']:9.1f} {r['peak_mb']:8.0f}")
        b = entry["bound"]
        print(f"{entry['model']:10} {batch:>5}  {'bare-OpenBLAS bound':22} {b['bound_images_per_second']:9.1f}"
              f" {b['bound_latency_ms']:10.1f} {'':>9} {'':>8}   ({b['model_gflop']:.2f} GFLOP at"
              f" {b['gemm_gflops_per_second']:.1f} GFLOP/s)")
    print()
    print(f"{'model':10} {'vitforge/PyTorch':>17} {'vitforge/onnxruntime':>21} {'vitforge/bound':>15}"
          f" {'vitforge GFLOP/s':>17}  onnx export")
    for entry in rows:
        v = entry["batch"] / entry["vitforge"]["median_s"]
        p = entry["batch"] / entry["pytorch"]["median_s"]
        o = entry["batch"] / entry["onnxruntime"]["median_s"]
        bound = entry["bound"]["bound_images_per_second"]
        entry["ratios"] = {"vitforge_over_pytorch": v / p, "vitforge_over_onnxruntime": v / o,
                           "vitforge_over_bound": v / bound}
        export = entry["onnx_export"]
        print(f"{entry['model']:10} {v / p:17.2f} {v / o:21.2f} {v / bound:15.2f}"
              f" {entry['vitforge']['gflops']:17.1f}  {export['exporter']}, max|ort−eager| "
              f"{export['max_abs_diff_vs_eager']:.1e}")
    if args.json:
        write_json(args.json, summary)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
