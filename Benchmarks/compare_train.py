#!/usr/bin/env python3
"""Training-step throughput: `vitforge bench --train` against PyTorch on the same weights, same batch, same run.

A step is forward + cross-entropy backward + one AdamW step, on both sides. PyTorch: timm's model built as in
compare_pytorch.py from the same safetensors, `model.train()` (dropout is 0 in these models), `torch.optim.AdamW`
with its defaults (lr 1e-5 here; betas 0.9/0.999, eps 1e-8) and timm's weight-decay groups (0.05 on ndim ≥ 2 except
pos_embed/cls_token/dist_token, 0 elsewhere), `zero_grad(set_to_none=True)`, 2 threads. vitforge: its bench, one
`Trainer.step()` of `vitforge train` (upload the batch, zero the gradients, forward, cross-entropy backward, AdamW
with the trainer's weight-decay groups).

The machine is shared, so the engines are measured alternately, `--rounds` times each, every measurement in its
own subprocess; the table gives each engine's median images/s over the rounds and the median of the per-round
ratios.

    /tmp/benchenv/venv/bin/python Benchmarks/compare_train.py [--only fm-vit-c,deit-tiny] [--rounds 3] [--runs 5]
        [--gemm openblas,onednn]

`--gemm` measures vitforge once per VITFORGE_GEMM value in each round (each its own row and ratio).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import (FIXTURES, ROOT, THREADS, best_fma_peak, build_timm_model, peak_rss_mb,  # noqa: E402
                             peak_share, run_vitforge, time_runs, write_json)

# name, weights, batch, heads to pass to vitforge (None: inferred), how timm builds it
MODELS = [
    ("fm-vit-c", "fm-vit-c.safetensors", 128, 2, {"json": "fm-vit-c.json"}),
    ("deit-tiny", "deit_tiny_patch16_224.safetensors", 64, None, {"timm_name": "deit_tiny_patch16_224"}),
]


def worker_torch(args):
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    spec = next(m for m in MODELS if m[0] == args.model)
    model, shape = build_timm_model(spec[4], os.path.join(FIXTURES, spec[1]))
    model.train()
    no_decay = {"pos_embed", "cls_token", "dist_token"}
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in no_decay]
    plain = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n not in no_decay)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": plain, "weight_decay": 0.0}],
                                  lr=1e-5, betas=(0.9, 0.999), eps=1e-8)
    classes = model.num_classes
    x = torch.randn(args.batch, *shape)
    labels = torch.randint(0, classes, (args.batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        optimizer.step()

    median, fastest = time_runs(step, args.warmup, args.runs)
    return {"median_s": median, "min_s": fastest, "peak_mb": peak_rss_mb(), "version": torch.__version__,
            "threads": torch.get_num_threads()}


def run_torch(args, name, batch):
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--model", name, "--batch", str(batch),
               "--runs", str(args.runs), "--warmup", str(args.warmup)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5, help="timed steps per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements per engine")
    parser.add_argument("--only", help="comma-separated model names (fm-vit-c, deit-tiny)")
    parser.add_argument("--vitforge", default=os.path.join(ROOT, ".build", "release", "vitforge"))
    parser.add_argument("--gemm", help="comma-separated VITFORGE_GEMM values to run vitforge with, each a row "
                                       "(default: the environment's)")
    parser.add_argument("--json", help="write every measured number here")
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker_torch(args)))
        return

    selected = [m for m in MODELS if not args.only or m[0] in args.only.split(",")]
    gemms = args.gemm.split(",") if args.gemm else [None]
    summary = {"threads": THREADS, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
               "load_start": os.getloadavg(), "models": []}
    for name, file, batch, heads, _ in selected:
        weights = os.path.join(FIXTURES, file)
        rounds = []
        engines = gemms + ["pytorch"]
        for i in range(args.rounds):
            print(f"{name} batch {batch}: round {i + 1}/{args.rounds} …", file=sys.stderr, flush=True)
            measured = {"load": os.getloadavg()[0]}
            for engine in engines[i % len(engines):] + engines[:i % len(engines)]:  # the order rotates
                if engine == "pytorch":
                    measured["pytorch"] = run_torch(args, name, batch)
                else:
                    measured["vitforge" + (f":{engine}" if engine else "")] = run_vitforge(
                        args, weights, batch, heads, train=True, gemm=engine)
            for g in gemms:
                key = "vitforge" + (f":{g}" if g else "")
                measured["ratio" + (f":{g}" if g else "")] = measured["pytorch"]["median_s"] / measured[key]["median_s"]
            rounds.append(measured)
            print("  " + ", ".join(f"{k} {batch / v['median_s']:.1f} images/s" for k, v in measured.items()
                                   if isinstance(v, dict)), file=sys.stderr, flush=True)
        summary["models"].append({"model": name, "weights": weights, "batch": batch, "rounds": rounds})
    summary["load_end"] = os.getloadavg()

    peak = summary["fma_peak_best_gflops"] = best_fma_peak(summary["models"])
    print()
    print(f"CPU training step (forward + backward + AdamW), {THREADS} threads, median of {args.runs} steps after "
          f"{args.warmup} warm-up per measurement, {args.rounds} alternating rounds")
    if peak:
        print(f"% FMA peak: of {peak:.1f} GFLOP/s, the best all-core FMA peak measured in this run")
    print(f"{'model':10} {'batch':>5} {'engine':18} {'vitforge img/s':>15} {'PyTorch img/s':>14} {'ratio (median)':>15}"
          f" {'GFLOP/s':>8} {'% FMA peak':>10}  ratios per round")
    for entry in summary["models"]:
        batch = entry["batch"]
        p = statistics.median(batch / r["pytorch"]["median_s"] for r in entry["rounds"])
        entry["ratio_median"] = {}
        for g in gemms:
            key, ratio_key = "vitforge" + (f":{g}" if g else ""), "ratio" + (f":{g}" if g else "")
            v = statistics.median(batch / r[key]["median_s"] for r in entry["rounds"])
            gflops = statistics.median(r[key]["gflops"] or 0 for r in entry["rounds"])
            share = peak_share(gflops, peak) or 0
            ratios = [r[ratio_key] for r in entry["rounds"]]
            entry["ratio_median"][key] = statistics.median(ratios)
            print(f"{entry['model']:10} {batch:>5} {key:18} {v:15.1f} {p:14.1f} {statistics.median(ratios):15.2f}"
                  f" {gflops:8.1f} {100 * share:10.1f}  {' '.join(f'{x:.2f}' for x in ratios)}")
    if args.json:
        write_json(args.json, summary)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
