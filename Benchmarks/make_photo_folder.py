#!/usr/bin/env python3
"""Writes the loader benchmarks' ImageFolder: COUNT RGB JPEGs (quality 90) of WIDTH×HEIGHT in CLASSES class folders,
smooth colour fields with texture and noise so that they compress like photos, each different. Needs Pillow and
numpy. Never commit the output; put it under /tmp.

    python3 Benchmarks/make_photo_folder.py /tmp/photos [--count 6000] [--classes 10] [--width 640] [--height 480]
"""
import argparse
import os

import numpy as np
from PIL import Image

parser = argparse.ArgumentParser()
parser.add_argument("folder")
parser.add_argument("--count", type=int, default=6000)
parser.add_argument("--classes", type=int, default=10)
parser.add_argument("--width", type=int, default=640)
parser.add_argument("--height", type=int, default=480)
args = parser.parse_args()

random = np.random.default_rng(24)
y, x = np.mgrid[0:args.height, 0:args.width].astype(np.float32)
u, v = x / args.width, y / args.height
for label in range(args.classes):
    os.makedirs(os.path.join(args.folder, f"class{label}"), exist_ok=True)
for index in range(args.count):
    a, b, c = random.uniform(0, 12, 3)
    texture = np.sin(x * 0.21 + a) * np.cos(y * 0.17 + b) * 40
    planes = [128 + 90 * np.sin(u * a + v) + texture, 128 + 90 * np.cos(v * b + u) - texture,
              128 + 90 * np.sin((u + v) * c)]
    pixels = np.stack(planes, axis=-1) + random.integers(0, 9, (args.height, args.width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    image.save(os.path.join(args.folder, f"class{index % args.classes}", f"{index}.jpg"), quality=90)
print(f"wrote {args.count} {args.width}x{args.height} JPEGs in {args.classes} classes to {args.folder}")
