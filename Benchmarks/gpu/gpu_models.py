#!/usr/bin/env python3
"""The GPU run's models, made on the machine (DeiT-Small's 88 MB is too large to carry): timm's DeiT-Tiny and
DeiT-Small with random weights (pretrained=False, torch.manual_seed(0)), saved with safetensors under timm's names,
which vitforge reads. --tiny makes two small ViTs instead (the dry run). Writes DEST/models.txt, one
`name:heads:path` per model, smallest first.

    gpu_models.py --dest DIR [--tiny]
"""
import argparse
import os

MODELS = [("deit-tiny", "deit_tiny_patch16_224", 3), ("deit-small", "deit_small_patch16_224", 6)]
TINY = [("tiny-a", dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=10), 3),
        ("tiny-b", dict(img_size=32, patch_size=8, embed_dim=96, depth=2, num_heads=6, num_classes=10), 6)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    import timm
    import torch
    from safetensors.torch import save_file
    from timm.models.vision_transformer import VisionTransformer

    os.makedirs(args.dest, exist_ok=True)
    lines = []
    for name, spec, heads in (TINY if args.tiny else MODELS):
        torch.manual_seed(0)
        model = VisionTransformer(**spec) if args.tiny else timm.create_model(spec, pretrained=False)
        path = os.path.join(args.dest, name + ".safetensors")
        save_file({key: value.detach().contiguous() for key, value in model.state_dict().items()}, path)
        # How gpu_torch.py rebuilds it: timm's name, or the constructor arguments.
        lines.append(f"{name}:{heads}:{path}")
        print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters -> {path}")
    with open(os.path.join(args.dest, "models.txt"), "w") as file:
        file.write("\n".join(lines) + "\n")


def build(name):
    """The timm model for a name of MODELS or TINY (random weights; the caller loads the saved ones)."""
    import timm
    from timm.models.vision_transformer import VisionTransformer
    for model_name, spec, _ in MODELS:
        if model_name == name:
            return timm.create_model(spec, pretrained=False)
    for model_name, spec, _ in TINY:
        if model_name == name:
            return VisionTransformer(**spec)
    raise SystemExit(f"gpu_models.py: unknown model {name}")


if __name__ == "__main__":
    main()
