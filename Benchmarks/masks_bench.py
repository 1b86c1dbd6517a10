#!/usr/bin/env python3
"""What channel masks and per-head widths cost, from `vitforge bench` in alternating rounds (the machines are shared
and noisy, so every ratio is of two measurements taken back to back, and the median over rounds is reported).

  masked step   the training step with learned soft masks on every qkv column and MLP neuron (`bench --train
                --soft-masks`: forward and backward through the masks, their gradients, AdamW on them) against the
                plain step, per model. Goal ≤ 1.10.
  no masks      with --baseline BIN (a build from before masks existed): this build against it, inference and
                training step, no masks. Goal: 1.00 within noise.
  uneven heads  inference of a DeiT-Tiny-shaped model whose blocks have heads of q/k and v widths 96, 64 and 32
                against the uniform DeiT-Tiny (3 heads of 64), same MACs, random weights.

    python3 Benchmarks/masks_bench.py [--rounds 5] [--runs 5] [--baseline OLD_VITFORGE] [--json OUT]
Run with `env -u OPENBLAS_CORETYPE` on a machine whose OpenBLAS would pick AVX-512 kernels.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import FIXTURES, ROOT, write_json  # noqa: E402

# name, weights, heads, batch of the training step
STEP_MODELS = [
    ("fm-vit-c", os.path.join(ROOT, "Tests", "Fixtures", "fm-vit-c.safetensors"), 2, 128),
    ("deit-tiny", os.path.join(FIXTURES, "deit_tiny_patch16_224.safetensors"), 3, 16),
]


def bench(vitforge, model, heads, batch, runs, warmup, *flags):
    """images/s of one `vitforge bench` row (its own child process)."""
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "bench.json")
        command = [vitforge, "bench", "--device", "cpu", "--model", model, "--batch", str(batch), "--runs",
                   str(runs), "--warmup", str(warmup), "--json", report, *flags]
        if heads:
            command += ["--heads", str(heads)]
        subprocess.run(command, check=True, capture_output=True, text=True)
        with open(report) as f:
            return json.load(f)["results"][0]["images_per_second"]


def deit_tiny_config(uneven):
    """DeiT-Tiny's shape (patch 16 at 224, width 192, depth 12, MLP 768); uneven: heads of 96, 64 and 32 dims."""
    if uneven:
        block = {"heads": 3, "qkDim": 96, "vDim": 96, "headQKDims": [96, 64, 32], "headVDims": [96, 64, 32],
                 "mlpHidden": 768, "attentionScale": 0.125}
    else:
        block = {"heads": 3, "qkDim": 64, "vDim": 64, "mlpHidden": 768, "attentionScale": 0.125}
    return {"imageSize": 224, "patchSize": 16, "inChannels": 3, "classes": 1000, "residualWidth": 192,
            "blocks": [block] * 12, "qkvBias": True, "pooling": "token", "classToken": True}


def write_model(path, config):
    """Random weights for `config` as a safetensors file with its `vitforge.config` (timm key names)."""
    d, p, c = config["residualWidth"], config["patchSize"], config["inChannels"]
    tokens = (config["imageSize"] // p) ** 2 + 1
    shapes = [("patch_embed.proj.weight", [d, c, p, p]), ("patch_embed.proj.bias", [d]), ("cls_token", [1, 1, d]),
              ("pos_embed", [1, tokens, d])]
    for i, b in enumerate(config["blocks"]):
        qk = b.get("headQKDims") or [b["qkDim"]] * b["heads"]
        v = b.get("headVDims") or [b["vDim"]] * b["heads"]
        rows, merged, h = 2 * sum(qk) + sum(v), sum(v), b["mlpHidden"]
        shapes += [(f"blocks.{i}.norm1.weight", [d]), (f"blocks.{i}.norm1.bias", [d]),
                   (f"blocks.{i}.attn.qkv.weight", [rows, d]), (f"blocks.{i}.attn.qkv.bias", [rows]),
                   (f"blocks.{i}.attn.proj.weight", [d, merged]), (f"blocks.{i}.attn.proj.bias", [d]),
                   (f"blocks.{i}.norm2.weight", [d]), (f"blocks.{i}.norm2.bias", [d]),
                   (f"blocks.{i}.mlp.fc1.weight", [h, d]), (f"blocks.{i}.mlp.fc1.bias", [h]),
                   (f"blocks.{i}.mlp.fc2.weight", [d, h]), (f"blocks.{i}.mlp.fc2.bias", [d])]
    shapes += [("norm.weight", [d]), ("norm.bias", [d]), ("head.weight", [config["classes"], d]),
               ("head.bias", [config["classes"]])]
    header, offset, data = {}, 0, bytearray()
    state = 12345
    for name, shape in shapes:
        count = 1
        for n in shape:
            count *= n
        values = []
        for _ in range(count):
            state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            values.append(((state >> 40) / (1 << 24) - 0.5) * 0.04)
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
            values = [1.0] * count
        data += struct.pack(f"<{count}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * count]}
        offset += 4 * count
    header["__metadata__"] = {"format": "pt", "vitforge.config": json.dumps(config, sort_keys=True)}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


def ratios(rounds, measure_a, measure_b):
    """Median over rounds of b/a, and every round's ratio; a and b alternate their order between rounds."""
    values = []
    for index in range(rounds):
        if index % 2 == 0:
            a = measure_a()
            b = measure_b()
        else:
            b = measure_b()
            a = measure_a()
        values.append(b / a)
    return statistics.median(values), values


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--vitforge", default=os.path.join(ROOT, ".build", "release", "vitforge"))
    parser.add_argument("--baseline", help="a vitforge binary built before masks existed")
    parser.add_argument("--only", choices=["masked", "baseline", "uneven"], action="append")
    parser.add_argument("--json", help="write every ratio here")
    args = parser.parse_args()
    parts = args.only or ["masked", "baseline", "uneven"]
    results = {}
    r, w = args.runs, args.warmup

    if "masked" in parts:
        for name, model, heads, batch in STEP_MODELS:
            if not os.path.exists(model):
                print(f"{name}: {model} not found, skipped")
                continue
            median, values = ratios(args.rounds, lambda: bench(args.vitforge, model, heads, batch, r, w, "--train"),
                                    lambda: bench(args.vitforge, model, heads, batch, r, w, "--train",
                                                  "--soft-masks"))
            results[f"masked-step/{name}@{batch}"] = values
            print(f"masked step {name} @{batch}: plain/masked images/s = {1 / median:.3f} "
                  f"(step time ratio; rounds {', '.join(f'{1 / v:.3f}' for v in values)})", flush=True)

    if "baseline" in parts and args.baseline:
        for name, model, heads, batch in STEP_MODELS:
            if not os.path.exists(model):
                continue
            for mode, flags in [("infer", []), ("train", ["--train"])]:
                median, values = ratios(args.rounds, lambda: bench(args.baseline, model, heads, batch, r, w, *flags),
                                        lambda: bench(args.vitforge, model, heads, batch, r, w, *flags))
                results[f"no-masks/{name}/{mode}@{batch}"] = values
                print(f"no masks {name} {mode} @{batch}: this/baseline images/s = {median:.3f} "
                      f"(rounds {', '.join(f'{v:.3f}' for v in values)})", flush=True)

    if "uneven" in parts:
        with tempfile.TemporaryDirectory() as folder:
            uniform, uneven = os.path.join(folder, "uniform.safetensors"), os.path.join(folder, "uneven.safetensors")
            write_model(uniform, deit_tiny_config(False))
            write_model(uneven, deit_tiny_config(True))
            for batch in [1, 64]:
                median, values = ratios(args.rounds, lambda: bench(args.vitforge, uniform, None, batch, r, w),
                                        lambda: bench(args.vitforge, uneven, None, batch, r, w))
                results[f"uneven-heads/deit-tiny-shape/infer@{batch}"] = values
                print(f"uneven heads (96/64/32) vs uniform (3×64), same MACs, inference @{batch}: "
                      f"uneven/uniform images/s = {median:.3f} (rounds {', '.join(f'{v:.3f}' for v in values)})",
                      flush=True)
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
