#!/usr/bin/env python3
"""CI check of `vitforge export --format onnx`: onnxruntime's logits equal `vitforge infer`'s within 1e-4, at two
batch sizes through one exported file (the batch is symbolic), on
- the fixtures (fm-vit-b: average pooling, no qkv bias; fm-vit-c; the HF-layout fm-vit-c; DeiT-Tiny from
  ../shared/fixtures when present), also against PyTorch's reference logits;
- models pruned here with irregular widths (magnitude and random: per-block MLP widths and head counts; ViT-Slim:
  heads of different widths with q/k ≠ v), on a small Fashion-MNIST subset;
- small random models written here with a stored vitforge.config for what pruning does not produce on these
  fixtures: a distillation token, heads of different widths, q/k ≠ v, a block without heads, custom attention scales,
  average pooling with and without a class token;
- physically token-pruned models (Gather nodes): fm-vit-c after a ViT-Slim token search (--keep-tokens), and random
  models with token sets, with a distillation token (ending on the prefix tokens only) and with average pooling;
- fm-vit-c fine-tuned here to three named classes of a generated image folder, and that model pruned.
Every export carries vitforge.class_names (exactly when the model has names) and vitforge.preprocessing (input size,
and the stored mean/std/interpolation/crop_pct), checked against the model's vitforge.config.

    python3 Tests/Deployment/onnx_check.py OUT_DIR
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
import onnxruntime as ort

from deploy_support import (FASHION_MNIST, FIXTURES, SHARED_FIXTURES, fashion_mnist_subset, read_safetensors,
                            vitforge, write_safetensors)

TOLERANCE = 1e-4


def synthetic_model(path, *, distilled, pooling, class_token, qkv_bias, seed, token_sets=None):
    """A random model with irregular blocks and the full configuration in its metadata (timm names); with
    `token_sets`, physically token-pruned (config version 3)."""
    rng = np.random.default_rng(seed)
    width, channels, image, patch, classes = 20, 3, 12, 4, 7
    blocks = [
        {"heads": 3, "qkDim": 4, "vDim": 5, "mlpHidden": 11, "attentionScale": 0.37},
        {"heads": 2, "qkDim": 6, "vDim": 7, "headQKDims": [3, 6], "headVDims": [7, 2], "mlpHidden": 9,
         "attentionScale": 0.5},
        {"heads": 0, "qkDim": 0, "vDim": 0, "mlpHidden": 13, "attentionScale": 1.0},
        {"heads": 1, "qkDim": 5, "vDim": 3, "mlpHidden": 6, "attentionScale": 0.9},
    ]
    config = {"version": 1, "imageSize": image, "patchSize": patch, "inChannels": channels, "classes": classes,
              "residualWidth": width, "blocks": blocks, "qkvBias": qkv_bias, "pooling": pooling,
              "classToken": class_token, "distillationToken": distilled, "layerNormEps": 1e-6}
    if token_sets:
        config.update(version=3, tokenSets=token_sets)
    tokens = (image // patch) ** 2 + int(class_token) + int(distilled)

    def tensor(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    tensors = {}
    if class_token:
        tensors["cls_token"] = tensor(1, 1, width)
    if distilled:
        tensors["dist_token"] = tensor(1, 1, width)
    tensors["pos_embed"] = tensor(1, tokens, width)
    tensors["patch_embed.proj.weight"] = tensor(width, channels, patch, patch)
    tensors["patch_embed.proj.bias"] = tensor(width)
    for index, block in enumerate(blocks):
        qk = block.get("headQKDims") or [block["qkDim"]] * block["heads"]
        v = block.get("headVDims") or [block["vDim"]] * block["heads"]
        rows, merged = 2 * sum(qk) + sum(v), sum(v)
        p = f"blocks.{index}."
        tensors[p + "norm1.weight"] = 1 + tensor(width, scale=0.1)
        tensors[p + "norm1.bias"] = tensor(width, scale=0.1)
        tensors[p + "attn.qkv.weight"] = tensor(rows, width)
        if qkv_bias:
            tensors[p + "attn.qkv.bias"] = tensor(rows)
        tensors[p + "attn.proj.weight"] = tensor(width, merged)
        tensors[p + "attn.proj.bias"] = tensor(width)
        tensors[p + "norm2.weight"] = 1 + tensor(width, scale=0.1)
        tensors[p + "norm2.bias"] = tensor(width, scale=0.1)
        tensors[p + "mlp.fc1.weight"] = tensor(block["mlpHidden"], width)
        tensors[p + "mlp.fc1.bias"] = tensor(block["mlpHidden"])
        tensors[p + "mlp.fc2.weight"] = tensor(width, block["mlpHidden"])
        tensors[p + "mlp.fc2.bias"] = tensor(width)
    norm = "norm" if pooling == "token" else "fc_norm"
    tensors[norm + ".weight"] = 1 + tensor(width, scale=0.1)
    tensors[norm + ".bias"] = tensor(width, scale=0.1)
    tensors["head.weight"] = tensor(classes, width)
    tensors["head.bias"] = tensor(classes)
    if distilled:
        tensors["head_dist.weight"] = tensor(classes, width)
        tensors["head_dist.bias"] = tensor(classes)
    write_safetensors(path, tensors, {"format": "pt", "vitforge.config": json.dumps(config)})
    return path


def write_png(path, pixels):
    """An 8-bit grey ([H, W]) or RGB ([H, W, 3]) PNG, written with zlib alone (no imaging library here)."""
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = b"".join(b"\0" + pixels[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
                   + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def photo_folder(root, classes, per_class=4):
    """root/{train,val}/CLASS/N.png: odd sizes, grey and RGB, a brightness per class."""
    rng = np.random.default_rng(7)
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for n in range(per_class):
                shape = (13 + 3 * n, 17 + 2 * n) + ((3,) if n % 2 == 0 else ())
                pixels = np.clip(50 + 60 * label + rng.integers(0, 40, shape), 0, 255).astype(np.uint8)
                write_png(os.path.join(root, split, name, f"{n}.png"), pixels)
    return root


def check(name, model, out, heads=None, reference=None, seed=0):
    """Exports `model`, runs it in onnxruntime at batches 5 and 1, compares with `vitforge infer` (and with
    `reference` logits when given); returns the largest difference."""
    extra = ["--heads", str(heads)] if heads else []
    onnx_path = os.path.join(out, name + ".onnx")
    vitforge("export", "--model", model, "--format", "onnx", "--out", onnx_path, *extra)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    batch, channels, side, _ = session.get_inputs()[0].shape
    assert batch == "batch", "the batch dimension is not symbolic"
    metadata = session.get_modelmeta().custom_metadata_map
    config = json.loads(metadata["vitforge.config"])
    if config.get("classIds"):
        assert metadata.get("vitforge.class_ids") == ",".join(map(str, config["classIds"])), metadata
    # What a deployer reads: the class of each logit column and how to prepare an image.
    if config.get("classNames"):
        assert json.loads(metadata["vitforge.class_names"]) == config["classNames"], metadata
    else:
        assert "vitforge.class_names" not in metadata, metadata
    preprocessing = json.loads(metadata["vitforge.preprocessing"])
    assert preprocessing["input_size"] == [channels, side, side], preprocessing
    stored = config.get("preprocessing")
    if stored:
        assert (preprocessing["mean"], preprocessing["std"]) == (stored["mean"], stored["std"]), preprocessing
        assert (preprocessing["interpolation"], preprocessing["crop_pct"]) == (stored["interpolation"],
                                                                              stored["cropPct"]), preprocessing
    rng = np.random.default_rng(seed)
    worst = 0.0
    inputs = [rng.standard_normal((5, channels, side, side)).astype(np.float32)]
    inputs.append(inputs[0][:1])
    if reference:
        inputs.insert(0, read_safetensors(reference)[0]["input"].astype(np.float32))
    for index, images in enumerate(inputs):
        input_path = os.path.join(out, f"{name}-input{index}.safetensors")
        logits_path = os.path.join(out, f"{name}-logits{index}.safetensors")
        write_safetensors(input_path, {"input": images})
        vitforge("infer", "--model", model, "--input", input_path, "--out", logits_path, *extra)
        want = read_safetensors(logits_path)[0]["logits"]
        got = session.run(["logits"], {"input": images})[0]
        assert got.shape == want.shape, f"{name}: onnxruntime gives {got.shape}, vitforge {want.shape}"
        worst = max(worst, float(np.abs(got.astype(np.float64) - want).max()))
        if reference and index == 0:
            torch_logits = read_safetensors(reference)[0]["logits"]
            worst = max(worst, float(np.abs(got.astype(np.float64) - torch_logits).max()))
    status = "ok" if worst <= TOLERANCE else "FAILED"
    print(f"  {name:28s} max |onnxruntime − vitforge| {worst:.2e}  {status}", flush=True)
    return worst


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "onnx-check")
    os.makedirs(out, exist_ok=True)
    print(f"onnx: onnxruntime {ort.__version__}, tolerance {TOLERANCE:g}", flush=True)
    results = {}
    fixtures = [("fm-vit-b", os.path.join(FIXTURES, "fm-vit-b.safetensors"), 4,
                 os.path.join(FIXTURES, "fm-vit-b-ref.safetensors")),
                ("fm-vit-c", os.path.join(FIXTURES, "fm-vit-c.safetensors"), 2,
                 os.path.join(FIXTURES, "fm-vit-c-ref.safetensors")),
                ("hf-vit-c", os.path.join(FIXTURES, "hf-vit-c", "model.safetensors"), None,
                 os.path.join(FIXTURES, "fm-vit-c-ref.safetensors"))]
    deit = os.path.join(SHARED_FIXTURES, "deit_tiny_patch16_224.safetensors")
    if os.path.exists(deit):
        fixtures.append(("deit-tiny", deit, None, None))
    else:
        print("  (DeiT-Tiny skipped: ../shared/fixtures not present)")
    for name, model, heads, reference in fixtures:
        results[name] = check(name, model, out, heads, reference)

    if os.path.exists(os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")):
        data = fashion_mnist_subset(os.path.join(out, "data"), train=512, test=256)
        prunes = [
            ("fm-vit-b-magnitude", "fm-vit-b", 4, ["--method", "magnitude", "--keep-mlp", "0.37", "--keep-heads", "0.5"]),
            ("fm-vit-c-random", "fm-vit-c", 2, ["--method", "random", "--keep-heads", "0.5", "--keep-mlp", "0.61"]),
            ("fm-vit-c-slim", "fm-vit-c", 2, ["--method", "slim", "--epochs", "1", "--keep-mlp", "0.45",
                                              "--keep-attn", "0.55", "--slim-granularity", "dim"]),
            # Physical token pruning: Gather nodes where a block's token set shrinks.
            ("fm-vit-c-slim-tokens", "fm-vit-c", 2, ["--method", "slim", "--epochs", "1", "--keep-mlp", "0.6",
                                                     "--keep-attn", "0.7", "--keep-tokens", "0.6",
                                                     "--slim-token-lr-scale", "10"]),
            # CPD: q/k ≠ v per block, cuts while training; Vulcan: q/k ≠ v and a head trimmed to three classes.
            ("fm-vit-c-cpd", "fm-vit-c", 2, ["--method", "cpd", "--epochs", "1", "--target-macs", "0.7",
                                             "--prune-interval", "2", "--batch-size", "32"]),
            ("fm-vit-c-vulcan", "fm-vit-c", 2, ["--method", "vulcan", "--classes", "0,2,5", "--trim-head",
                                                "--epochs", "1", "--target-macs", "0.6", "--batch-size", "32"]),
        ]
        for name, base, heads, flags in prunes:
            pruned = os.path.join(out, name + ".safetensors")
            vitforge("prune", "--model", os.path.join(FIXTURES, base + ".safetensors"), "--heads", heads,
                     "--data", data, "--latency-batches", "1", "--device", "cpu", *flags, "--out", pruned)
            results[name] = check(name, pruned, out)
    else:
        print("  (pruned models skipped: Debian's dataset-fashion-mnist is not installed)")

    # A user's own classes: fm-vit-c fine-tuned to 3 named classes (a new head), then pruned; both carry the
    # names and preprocessing into the ONNX metadata.
    photos = photo_folder(os.path.join(out, "photos"), ["bag", "dress", "sneaker"])
    named = os.path.join(out, "fm-vit-c-named.safetensors")
    vitforge("train", "--init", os.path.join(FIXTURES, "fm-vit-c.safetensors"), "--heads", "2", "--data", photos,
             "--epochs", "1", "--batch-size", "8", "--checkpoint-every", "0", "--device", "cpu", "--out", named)
    results["fm-vit-c-named"] = check("fm-vit-c-named", named, out)
    named_pruned = os.path.join(out, "fm-vit-c-named-magnitude.safetensors")
    vitforge("prune", "--model", named, "--data", photos, "--method", "magnitude", "--keep-mlp", "0.5",
             "--batch-size", "8", "--latency-batches", "1", "--device", "cpu", "--out", named_pruned)
    results["fm-vit-c-named-magnitude"] = check("fm-vit-c-named-magnitude", named_pruned, out)

    # 9 patches; token sets (positions: class, distillation, patches) that shrink at blocks 0, 1 and 3, one ending
    # with the prefix tokens only.
    distilled_sets = [[0, 1, 2, 3, 5, 6, 8, 9, 10], [0, 1, 3, 5, 8, 10], [0, 1, 3, 5, 8, 10], [0, 1]]
    avg_sets = [[0, 1, 2, 4, 5, 7, 9], [0, 2, 4, 7], [0, 2, 4, 7], [0, 7]]
    for index, (distilled, pooling, class_token, qkv_bias, sets) in enumerate([
            (True, "token", True, True, None), (False, "avg", False, False, None), (False, "avg", True, True, None),
            (True, "token", True, True, distilled_sets), (False, "avg", True, True, avg_sets)]):
        name = f"random-{'distilled' if distilled else pooling}-{'cls' if class_token else 'nocls'}"
        name += "-tokens" if sets else ""
        model = synthetic_model(os.path.join(out, name + ".safetensors"), distilled=distilled, pooling=pooling,
                                class_token=class_token, qkv_bias=qkv_bias, seed=index, token_sets=sets)
        results[name] = check(name, model, out, seed=index)

    failed = [name for name, error in results.items() if not error <= TOLERANCE]
    print(f"onnx: {len(results) - len(failed)} of {len(results)} models agree within {TOLERANCE:g}")
    if failed:
        sys.exit(f"onnx: disagree: {', '.join(failed)}")


if __name__ == "__main__":
    main()
