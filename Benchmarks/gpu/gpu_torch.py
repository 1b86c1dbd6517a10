#!/usr/bin/env python3
"""The PyTorch halves of the GPU run (Benchmarks/gpu/run.sh), on CUDA in fp32 with TF32 off (and bf16 autocast for
the models), each written as "skipped" with the reason when torch or CUDA is missing, so a dry run shows them.

    gpu_torch.py gemm --opencl OPBENCH.json --torch-state STATE --json OUT.json
        torch.matmul at every GEMM op-bench timed (its names carry the shape: "… NT 197x197x64 x192").
    gpu_torch.py model --models name:heads:path,... --train-batch B --batch B ... [--warmup W] [--runs R]
                       --torch-state STATE --json OUT.json
        timm's model with the same weights: a training step (forward, cross-entropy backward, AdamW) and inference.
"""
import argparse
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def write(path, value):
    temporary = path + ".partial"
    with open(temporary, "w") as file:
        json.dump(value, file, indent=1, sort_keys=True)
    os.replace(temporary, path)


def cuda_torch():
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def median_ms(torch, call, warmup, runs):
    """Median of `runs` timed calls (CUDA events around each), after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


SHAPE = re.compile(r"\b([NT])([NT]) (\d+)x(\d+)x(\d+)(?: x(\d+))?")


def gemm(args):
    with open(args.opencl) as file:
        opencl = json.load(file)
    result = {"opencl": opencl}
    if args.torch_state != "cuda":
        result["torch"] = {"skipped": args.torch_state}
        write(args.json, result)
        return
    torch = cuda_torch()
    rows = {}
    for name, times in opencl.items():
        match = SHAPE.search(name)
        if not match:
            continue
        trans_a, trans_b = match.group(1) == "T", match.group(2) == "T"
        m, n, k = (int(match.group(i)) for i in (3, 4, 5))
        batch = int(match.group(6) or 1)
        a = torch.randn(batch, k, m, device="cuda") if trans_a else torch.randn(batch, m, k, device="cuda")
        b = torch.randn(batch, n, k, device="cuda") if trans_b else torch.randn(batch, k, n, device="cuda")
        op_a = a.transpose(1, 2) if trans_a else a
        op_b = b.transpose(1, 2) if trans_b else b
        ms = median_ms(torch, lambda: torch.matmul(op_a, op_b), 3, 20)
        flops = 2.0 * m * n * k * batch
        opencl_ms = times.get("gpu")
        rows[name] = {"torch_ms": ms, "torch_gflops": flops / ms / 1e6, "opencl_ms": opencl_ms,
                      "opencl_gflops": flops / opencl_ms / 1e6 if opencl_ms else None,
                      "opencl_speed_vs_torch": ms / opencl_ms if opencl_ms else None}
    result["torch"] = {"version": torch.__version__, "device": torch.cuda.get_device_name(), "tf32": False,
                       "rows": rows}
    write(args.json, result)


def model(args):
    entries = [entry.split(":", 2) for entry in args.models.split(",") if entry]
    if args.torch_state != "cuda":
        write(args.json, {"skipped": args.torch_state})
        return
    torch = cuda_torch()
    from gpu_models import MODELS, TINY, build
    from safetensors.torch import load_file
    known = {name for name, _, _ in MODELS + TINY}
    rows = []
    for name, _, path in entries:
        if name not in known:
            rows.append({"model": name, "skipped": "not a timm model of gpu_models.py"})
            continue
        net = build(name)
        net.load_state_dict(load_file(path), strict=True)
        net = net.cuda()
        size = net.patch_embed.img_size[0]
        channels = net.patch_embed.proj.in_channels
        for precision in ["fp32", "bf16"]:
            def autocast():
                return torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")
            # Training step: as compare_train.py, timm's weight-decay groups, AdamW at lr 1e-5.
            net.train()
            no_decay = {"pos_embed", "cls_token", "dist_token"}
            decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and n not in no_decay]
            plain = [p for n, p in net.named_parameters() if not (p.ndim >= 2 and n not in no_decay)]
            optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                           {"params": plain, "weight_decay": 0.0}], lr=1e-5)
            x = torch.randn(args.train_batch, channels, size, size, device="cuda")
            labels = torch.randint(0, net.num_classes, (args.train_batch,), device="cuda")

            def step():
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = torch.nn.functional.cross_entropy(net(x), labels)
                loss.backward()
                optimizer.step()
            ms = median_ms(torch, step, args.warmup, args.runs)
            rows.append({"model": name, "mode": "train", "batch": args.train_batch, "precision": precision,
                         "latency_ms_median": ms, "images_per_second": args.train_batch / ms * 1e3})
            net.eval()
            for batch in args.batch:
                x = torch.randn(batch, channels, size, size, device="cuda")

                def infer():
                    with torch.inference_mode(), autocast():
                        net(x)
                ms = median_ms(torch, infer, args.warmup, args.runs)
                rows.append({"model": name, "mode": "infer", "batch": batch, "precision": precision,
                             "latency_ms_median": ms, "images_per_second": batch / ms * 1e3})
        del net
        torch.cuda.empty_cache()
    write(args.json, {"version": torch.__version__, "device": torch.cuda.get_device_name(), "tf32": False,
                      "rows": rows})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("gemm")
    p.add_argument("--opencl", required=True)
    p.add_argument("--torch-state", required=True)
    p.add_argument("--json", required=True)
    p = commands.add_parser("model")
    p.add_argument("--models", required=True)
    p.add_argument("--train-batch", type=int, required=True)
    p.add_argument("--batch", type=int, action="append", required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--torch-state", required=True)
    p.add_argument("--json", required=True)
    args = parser.parse_args()
    {"gemm": gemm, "model": model}[args.command](args)


if __name__ == "__main__":
    main()
