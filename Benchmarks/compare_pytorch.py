#!/usr/bin/env python3
"""vitforge bench (CPU backend) against PyTorch eager and onnxruntime on the same weights, in the same run.

For each model: PyTorch eager inference (timm, torch.inference_mode, 2 threads), the same model exported with
torch.onnx and run by onnxruntime (2 intra-op threads), `vitforge bench --device cpu`, and the bare-OpenBLAS bound
(`gemm-bench --model`: every GEMM of the forward timed with bare cblas_sgemm, the model's FLOPs divided by their
throughput). Every engine is measured in its own subprocess, so its peak RSS (ru_maxrss) is its own.

Needs: pip install torch timm onnxruntime onnx onnxscript safetensors; `swift build -c release` and, for the bound,
`swift build -c release --package-path Benchmarks` (the script builds them with --build).

    python3 Benchmarks/compare_pytorch.py [--build] [--runs 7] [--warmup 2] [--json out/compare.json]

Issue 31's comparison: more models and batches, vitforge once per GEMM library, engines alternating in rounds:

    env -u OPENBLAS_CORETYPE V/bin/python Benchmarks/compare_pytorch.py --only fm-vit-a,deit-tiny,deit-small \
        --batches 1,64,256 --gemm openblas,onednn --rounds 2 --runs 3 --warmup 1 --no-bound --json out/cmp.json

fm-vit-a (6 blocks of 3×64 heads, width 192, 28×28 images in 4×4 patches: the shape issue 31 names) and deit-small
have no fixture: their weights are timm's own initialisation (seed 0), written once to safetensors in the run's
folder, which both engines load. `--gemm` runs vitforge with VITFORGE_GEMM set to each value in turn. With
`--rounds R` every (model, batch) is measured R times, the engines' order rotating each round; the summary gives
each engine's median over rounds and the median of the per-round ratios.
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

# name, weights (None: generated, see `worker_weights`), batch, heads to pass to vitforge (None: inferred), how timm
# builds it
FM_VIT_A = {"img_size": 28, "in_chans": 1, "num_classes": 10, "patch_size": 4, "embed_dim": 192, "depth": 6,
            "num_heads": 3, "mlp_ratio": 4.0, "qkv_bias": True, "class_token": True, "global_pool": "token"}
MODELS = [
    ("fm-vit-b", "fm-vit-b.safetensors", 256, 4, {"json": "fm-vit-b.json"}),
    ("deit-tiny", "deit_tiny_patch16_224.safetensors", 64, None, {"timm_name": "deit_tiny_patch16_224"}),
    ("fm-vit-a", None, 256, 3, {"kwargs": FM_VIT_A}),
    ("deit-small", None, 64, 6, {"timm_name": "deit_small_patch16_224"}),
]


def weights_path(spec_name, folder):
    """The safetensors file of model `spec_name`: the fixture, or the generated file in `folder`."""
    spec = next(m for m in MODELS if m[0] == spec_name)
    return os.path.join(FIXTURES, spec[1]) if spec[1] else os.path.join(folder, spec_name + ".safetensors")


def make_timm_model(spec):
    import timm
    if "json" in spec:
        with open(os.path.join(FIXTURES, spec["json"])) as f:
            kwargs = json.load(f)["timm_kwargs"]
    elif "kwargs" in spec:
        kwargs = spec["kwargs"]
    else:
        return timm.create_model(spec["timm_name"], pretrained=False)
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(**kwargs)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_timm_model(spec, weights_path):
    from safetensors.torch import load_file

    model = make_timm_model(spec)
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


def worker_weights(args):
    """A model without a fixture: timm's initialisation with seed 0, written to `args.onnx` (the path argument)."""
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    spec = next(m for m in MODELS if m[0] == args.model)
    model = make_timm_model(spec[4])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.onnx, metadata={"format": "pt"})
    return {"parameters": sum(p.numel() for p in model.parameters())}


def worker_torch(args):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    spec = next(m for m in MODELS if m[0] == args.model)
    model, shape = build_timm_model(spec[4], weights_path(args.model, args.folder))
    x = torch.randn(args.batch, *shape)
    with torch.inference_mode():
        median, fastest = time_runs(lambda: model(x), args.warmup, args.runs)
    return {"median_s": median, "min_s": fastest, "peak_mb": peak_rss_mb(),
            "version": torch.__version__, "threads": torch.get_num_threads()}


def worker_export(args):
    import torch
    torch.set_num_threads(THREADS)
    spec = next(m for m in MODELS if m[0] == args.model)
    model, shape = build_timm_model(spec[4], weights_path(args.model, args.folder))
    x = torch.randn(args.batch, *shape)
    # The batch is a dynamic axis: one export serves every batch measured.
    kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=17,
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
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
               "--runs", str(args.runs), "--warmup", str(args.warmup), "--folder", args.folder]
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


def run_vitforge(args, weights, batch, heads, train=False, gemm=None):
    """vitforge's row; `gemm`: the VITFORGE_GEMM value to run it with (None: as this process's environment says)."""
    env = None
    if gemm:
        env = dict(os.environ)
        env["VITFORGE_GEMM"] = gemm
    result = vitforge_bench(args.vitforge, weights, [batch], heads, args.runs, args.warmup, train, env=env)
    row = result["results"][0]
    return {"median_s": row["latency_ms_median"] / 1000, "min_s": row["latency_ms_min"] / 1000,
            "peak_mb": row["peak_memory_mb"], "gflops": row.get("gflops_per_second"),
            "fma_peak_share": row.get("fma_peak_share"), "fma_peak": result.get("fma_peak"),
            "gemm": result.get("gemm"), "blas_core": result.get("blas_core"), "device": result["device"]}


def best_fma_peak(entries):
    """The highest all-core FMA peak any vitforge measurement of this run read, in GFLOP/s, or None. The peak is the
    machine's; one row's own reading is low when the host takes a core while it runs (a quiet run's round read
    118.8 GFLOP/s for two 117 GFLOP/s cores, which made that row's share 121%), so every share is taken of the best."""
    readings = [value["fma_peak"]["all_cores_gflops"] for entry in entries for measured in entry["rounds"]
                for value in measured.values() if isinstance(value, dict) and value.get("fma_peak")]
    return max(readings) if readings else None


def peak_share(gflops, peak):
    """`gflops` as a share of `peak` (None where either is missing)."""
    return gflops / peak if gflops and peak else None


def run_bound(args, weights, batch, heads):
    command = [args.gemm_bench, "--model", weights, "--batch", str(batch), "--repeats", str(args.runs), "--json"]
    if heads:
        command += ["--heads", str(heads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=["torch", "export", "ort", "weights"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per engine (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--only", help="comma-separated model names (fm-vit-b, deit-tiny, fm-vit-a, deit-small; "
                                       "default: fm-vit-b, deit-tiny)")
    parser.add_argument("--batches", help="comma-separated batches for every model (default: each model's own)")
    parser.add_argument("--gemm", help="comma-separated VITFORGE_GEMM values to run vitforge with, each a row "
                                       "(default: the environment's)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating measurements per engine")
    parser.add_argument("--no-bound", action="store_true", help="skip the bare-OpenBLAS bound (gemm-bench)")
    parser.add_argument("--build", action="store_true", help="swift build -c release both packages first")
    parser.add_argument("--vitforge", default=os.path.join(ROOT, ".build", "release", "vitforge"))
    parser.add_argument("--gemm-bench", default=os.path.join(ROOT, "Benchmarks", ".build", "release", "gemm-bench"))
    parser.add_argument("--json", help="write every measured number here")
    args = parser.parse_args()

    if args.worker:
        workers = {"torch": worker_torch, "export": worker_export, "ort": worker_ort, "weights": worker_weights}
        print(json.dumps(workers[args.worker](args)))
        return

    if args.build:
        subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True)
        if not args.no_bound:
            subprocess.run(["swift", "build", "-c", "release", "--package-path", "Benchmarks"], cwd=ROOT, check=True)

    names = args.only.split(",") if args.only else ["fm-vit-b", "deit-tiny"]
    selected = [m for m in MODELS if m[0] in names]
    gemms = args.gemm.split(",") if args.gemm else [None]
    engines = [("vitforge", g) for g in gemms] + [("pytorch", None), ("onnxruntime", None)]
    summary = {"threads": THREADS, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
               "load_start": os.getloadavg(), "models": []}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        args.folder = folder
        for name, file, batch, heads, spec in selected:
            batches = [int(b) for b in args.batches.split(",")] if args.batches else [batch]
            weights = weights_path(name, folder)
            if not file:
                run_worker("weights", name, 1, args, weights)
            onnx_path = os.path.join(folder, name + ".onnx")
            print(f"{name}: exporting ONNX …", file=sys.stderr, flush=True)
            export = run_worker("export", name, batches[0], args, onnx_path)
            for batch in batches:
                entry = {"model": name, "weights": weights if file else None, "batch": batch, "onnx_export": export,
                         "rounds": []}
                if not args.no_bound:
                    entry["bound"] = run_bound(args, weights, batch, heads)
                for r in range(args.rounds):
                    # The engines' order rotates each round, so a slow patch of a shared machine does not fall on
                    # one engine only.
                    order = engines[r % len(engines):] + engines[:r % len(engines)]
                    measured = {"load": os.getloadavg()[0]}
                    for engine, gemm in order:
                        print(f"{name} batch {batch} round {r + 1}/{args.rounds}: {engine} {gemm or ''} …",
                              file=sys.stderr, flush=True)
                        if engine == "vitforge":
                            measured["vitforge" + (f":{gemm}" if gemm else "")] = run_vitforge(
                                args, weights, batch, heads, gemm=gemm)
                        elif engine == "pytorch":
                            measured["pytorch"] = run_worker("torch", name, batch, args)
                        else:
                            measured["onnxruntime"] = run_worker("ort", name, batch, args, onnx_path)
                    entry["rounds"].append(measured)
                summary["models"].append(entry)
                rows.append(entry)
                if args.json:
                    write_json(args.json, summary)
    summary["load_end"] = os.getloadavg()
    peak = summary["fma_peak_best_gflops"] = best_fma_peak(rows)

    keys = ["vitforge" + (f":{g}" if g else "") for g in gemms]
    first = rows[0]["rounds"][0]
    print()
    print(f"CPU inference, {THREADS} threads, median of {args.runs} runs after {args.warmup} warm-up, {args.rounds} "
          f"alternating round(s); torch {first['pytorch']['version']}, onnxruntime {first['onnxruntime']['version']}")
    header = (f"{'model':10} {'batch':>5}  {'engine':22} {'images/s':>9} {'median ms':>10} {'peak MB':>8}"
              f" {'GFLOP/s':>8} {'% FMA peak':>10}")
    if peak:
        print(f"% FMA peak: of {peak:.1f} GFLOP/s, the best all-core FMA peak measured in this run")
    print(header)
    print("-" * len(header))

    def median_of(entry, key, field):
        values = [r[key][field] for r in entry["rounds"] if r[key].get(field) is not None]
        return statistics.median(values) if values else None

    for entry in rows:
        batch = entry["batch"]
        for key in keys + ["pytorch", "onnxruntime"]:
            median = median_of(entry, key, "median_s")
            gflops = median_of(entry, key, "gflops")
            share = peak_share(gflops, peak)
            label = {"pytorch": "PyTorch eager", "onnxruntime": "onnxruntime"}.get(key, key.replace("vitforge", "vitforge (cpu)"))
            print(f"{entry['model']:10} {batch:>5}  {label:22} {batch / median:9.1f} {1000 * median:10.1f}"
                  f" {median_of(entry, key, 'peak_mb'):8.0f} {gflops or 0:8.1f}"
                  f" {100 * share if share else 0:10.1f}")
        if "bound" in entry:
            b = entry["bound"]
            print(f"{entry['model']:10} {batch:>5}  {'bare-OpenBLAS bound':22} {b['bound_images_per_second']:9.1f}"
                  f" {b['bound_latency_ms']:10.1f}   ({b['model_gflop']:.2f} GFLOP at"
                  f" {b['gemm_gflops_per_second']:.1f} GFLOP/s)")
    print()
    print("ratios (images/s of vitforge ÷ the other's), median over rounds (per round)")
    for entry in rows:
        entry["ratios"] = {}
        for key in keys:
            for other in ["pytorch", "onnxruntime"]:
                per_round = [r[other]["median_s"] / r[key]["median_s"] for r in entry["rounds"]]
                entry["ratios"][f"{key}_over_{other}"] = {"median": statistics.median(per_round), "rounds": per_round}
                print(f"{entry['model']:10} {entry['batch']:>5}  {key} / {other}: {statistics.median(per_round):.2f}"
                      f"  ({' '.join(f'{x:.2f}' for x in per_round)})")
    if args.json:
        write_json(args.json, summary)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
