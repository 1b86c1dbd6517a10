#!/usr/bin/env python3
"""CI check of Hugging Face import: `vitforge infer` on the HF-layout fixture (Tests/Fixtures/hf-vit-c, made by
Tests/Fixtures/tools/make_hf_fixture.py with transformers) gives timm's reference logits (fm-vit-c-ref) within 1e-4,
and `vitforge info` reads its heads from config.json.

    python3 Tests/Deployment/hf_check.py OUT_DIR
"""
import os
import sys

import numpy as np

from deploy_support import FIXTURES, read_safetensors, vitforge

TOLERANCE = 1e-4


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "hf-check")
    os.makedirs(out, exist_ok=True)
    model = os.path.join(FIXTURES, "hf-vit-c", "model.safetensors")
    reference = os.path.join(FIXTURES, "fm-vit-c-ref.safetensors")
    logits_path = os.path.join(out, "hf-logits.safetensors")
    vitforge("infer", "--model", model, "--input", reference, "--out", logits_path)
    got = read_safetensors(logits_path)[0]["logits"].astype(np.float64)
    want = read_safetensors(reference)[0]["logits"].astype(np.float64)
    error = float(np.abs(got - want).max())
    info = vitforge("info", model)
    assert "num_attention_heads" in info, info
    print(f"hf import: hf-vit-c logits vs timm reference: max |diff| {error:.2e} (tolerance {TOLERANCE:g})")
    if not error <= TOLERANCE:
        sys.exit("hf import: logits differ")


if __name__ == "__main__":
    main()
