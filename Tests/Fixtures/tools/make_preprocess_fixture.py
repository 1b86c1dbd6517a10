#!/usr/bin/env python3
"""Makes Tests/Fixtures/preprocess/: timm's evaluation transform on a few odd-sized images, and timm's position
embedding resampling of the fm-vit fixtures, as references for ViTForge's own image preparation and
`train --input-size`.

Run once by hand (needs torch, timm, pillow, numpy, safetensors; CI does not run it):
    python3 Tests/Fixtures/tools/make_preprocess_fixture.py

Images (`source/`): grey PNG, grey JPEG, RGB JPEG, RGBA PNG and a small RGB PNG (upsampled), odd sizes, smooth
content with edges and texture. Each is opened as timm's ImageDataset opens it (`Image.open(f).convert("RGB")`)
and run through `create_transform(**resolve_data_config({}, model=m))` for three models whose pretrained_cfg is
overlaid with a small odd input size (and, for one, bilinear and another crop_pct). The normalised output is mapped
back to bytes (x · std + mean) · 255 (exact integers: Pillow works in bytes) and stored as an RGB PNG
(`expected/CONFIG-IMAGE.png`); `expected.json` lists configs and files.

`pos-embed.safetensors`: `resample_abs_pos_embed` (timm's defaults: bicubic, antialias=True, one prefix token) of
the fm-vit-c (7×7 grid → 5×5, 9×9) and fm-vit-b (4×4 → 6×6) position embeddings, under `NAME.GRID`.
"""
import json
import os

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.data import create_transform, resolve_data_config
from timm.layers import resample_abs_pos_embed

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.dirname(HERE)
OUT = os.path.join(FIXTURES, "preprocess")

CONFIGS = {
    # name: (timm model, pretrained_cfg overlay)
    "deit": ("deit_tiny_patch16_224", dict(input_size=(3, 37, 37))),
    "augreg": ("vit_tiny_patch16_224.augreg_in21k_ft_in1k", dict(input_size=(3, 41, 41))),
    "bilinear": ("deit_tiny_patch16_224", dict(input_size=(3, 29, 29), interpolation="bilinear", crop_pct=0.95)),
}


def pattern(width, height, channels, seed):
    """Gradients, a disc edge and some texture, so resampling and JPEG both have something to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for c in range(channels):
        base = 255 * (0.5 + 0.35 * np.sin(x / (3 + 2 * c) + y / (5 + c)))
        disc = ((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2) < (min(width, height) * 0.3) ** 2
        base = np.where(disc, 230 - 60 * c, base)
        base += rng.normal(0, 12, size=base.shape)
        planes.append(base)
    return np.clip(np.stack(planes, axis=-1), 0, 255).round().astype(np.uint8)


def make_sources():
    folder = os.path.join(OUT, "source")
    os.makedirs(folder, exist_ok=True)
    specs = [("grey.png", 53, 41, "L"), ("grey.jpg", 45, 77, "L"), ("rgb.jpg", 67, 45, "RGB"),
             ("rgba.png", 38, 59, "RGBA"), ("small.png", 23, 31, "RGB")]
    names = []
    for seed, (name, width, height, mode) in enumerate(specs):
        pixels = pattern(width, height, len(mode), seed)
        if mode == "RGBA":
            pixels[..., 3] = np.linspace(0, 255, width).astype(np.uint8)[None, :]  # alpha must not matter
        image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
        path = os.path.join(folder, name)
        image.save(path, quality=92) if name.endswith(".jpg") else image.save(path)
        names.append(name)
    return names


def main():
    names = make_sources()
    os.makedirs(os.path.join(OUT, "expected"), exist_ok=True)
    listing = {"timm": timm.__version__, "torch": torch.__version__, "pillow": Image.__version__, "configs": []}
    for config_name, (model_name, overlay) in CONFIGS.items():
        model = timm.create_model(model_name, pretrained=False, pretrained_cfg_overlay=overlay)
        data_config = resolve_data_config({}, model=model)
        transform = create_transform(**data_config)
        mean = torch.tensor(data_config["mean"]).view(3, 1, 1)
        std = torch.tensor(data_config["std"]).view(3, 1, 1)
        entry = {"name": config_name, "model": model_name, "side": data_config["input_size"][1],
                 "mean": list(data_config["mean"]), "std": list(data_config["std"]),
                 "interpolation": data_config["interpolation"], "crop_pct": data_config["crop_pct"],
                 "images": []}
        for name in names:
            with open(os.path.join(OUT, "source", name), "rb") as handle:
                image = Image.open(handle).convert("RGB")
                tensor = transform(image).double()
            values = (tensor * std.double() + mean.double()) * 255
            rounded = values.round()
            assert float((values - rounded).abs().max()) < 1e-3, "timm's output is not bytes before normalising"
            pixels = rounded.clamp(0, 255).byte().permute(1, 2, 0).numpy()
            expected = f"{config_name}-{os.path.splitext(name)[0]}-{os.path.splitext(name)[1][1:]}.png"
            Image.fromarray(pixels, "RGB").save(os.path.join(OUT, "expected", expected))
            entry["images"].append({"source": name, "expected": expected})
        listing["configs"].append(entry)
    with open(os.path.join(OUT, "expected.json"), "w") as handle:
        json.dump(listing, handle, indent=2)

    references = {}
    for fixture, grids in [("fm-vit-c", [5, 9]), ("fm-vit-b", [6])]:
        positions = load_file(os.path.join(FIXTURES, fixture + ".safetensors"))["pos_embed"]
        for grid in grids:
            references[f"{fixture}.{grid}"] = resample_abs_pos_embed(positions, [grid, grid]).contiguous()
    save_file(references, os.path.join(OUT, "pos-embed.safetensors"),
              metadata={"made_by": "Tests/Fixtures/tools/make_preprocess_fixture.py", "timm": timm.__version__})


if __name__ == "__main__":
    main()
