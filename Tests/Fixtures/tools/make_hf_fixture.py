#!/usr/bin/env python3
"""Makes Tests/Fixtures/hf-vit-c/: the fm-vit-c fixture as a Hugging Face `ViTForImageClassification` checkpoint
(model.safetensors in the Hub's key layout, config.json beside it), written by transformers' own save_pretrained.

Run once by hand (needs torch, transformers and safetensors; CI does not run it):
    python3 Tests/Fixtures/tools/make_hf_fixture.py
It refuses to write unless transformers' float64 logits on the fixture's reference images equal timm's reference
logits (fm-vit-c-ref.safetensors) within 1e-5, so the checkpoint is known to be the same network before ViTForge
ever reads it.
"""
import json
import os
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import ViTConfig, ViTForImageClassification

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.dirname(HERE)
OUT = os.path.join(FIXTURES, "hf-vit-c")


def main():
    facts = json.load(open(os.path.join(FIXTURES, "fm-vit-c.json")))
    kw, derived = facts["timm_kwargs"], facts["derived"]
    assert kw["global_pool"] in ("token", None) and kw["qkv_bias"], "HF ViT reads the class token with qkv bias"
    timm = load_file(os.path.join(FIXTURES, "fm-vit-c.safetensors"))
    width, heads, depth = kw["embed_dim"], kw["num_heads"], kw["depth"]

    config = ViTConfig(
        hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
        intermediate_size=derived["mlp_hidden"], hidden_act="gelu", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, layer_norm_eps=derived["layernorm_eps"], image_size=kw["img_size"],
        patch_size=kw["patch_size"], num_channels=kw["in_chans"], qkv_bias=True,
        num_labels=kw["num_classes"])

    # timm → HF names; timm's fused qkv rows are q, k, v in that order, each head-major like HF's projections.
    hf = {
        "vit.embeddings.cls_token": timm["cls_token"],
        "vit.embeddings.position_embeddings": timm["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": timm["patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": timm["patch_embed.proj.bias"],
        "vit.layernorm.weight": timm["norm.weight"],
        "vit.layernorm.bias": timm["norm.bias"],
        "classifier.weight": timm["head.weight"],
        "classifier.bias": timm["head.bias"],
    }
    for i in range(depth):
        t, h = f"blocks.{i}.", f"vit.encoder.layer.{i}."
        q, k, v = timm[t + "attn.qkv.weight"].chunk(3, dim=0)
        qb, kb, vb = timm[t + "attn.qkv.bias"].chunk(3, dim=0)
        for name, w, b in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
            hf[h + f"attention.attention.{name}.weight"] = w.contiguous()
            hf[h + f"attention.attention.{name}.bias"] = b.contiguous()
        for timm_name, hf_name in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                                   ("attn.proj", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"),
                                   ("mlp.fc2", "output.dense")):
            hf[h + hf_name + ".weight"] = timm[t + timm_name + ".weight"]
            hf[h + hf_name + ".bias"] = timm[t + timm_name + ".bias"]
    # Through transformers' own loader (which maps the Hub layout onto whatever its modules are called now, and
    # refuses missing or unexpected keys), so the file below is what the Hub's checkpoints look like.
    with tempfile.TemporaryDirectory() as staging:
        config.save_pretrained(staging)
        save_file({k: v.contiguous() for k, v in hf.items()}, os.path.join(staging, "model.safetensors"),
                  metadata={"format": "pt"})
        model = ViTForImageClassification.from_pretrained(staging).eval()

    ref = load_file(os.path.join(FIXTURES, "fm-vit-c-ref.safetensors"))
    with torch.no_grad():
        logits = model.double()(pixel_values=ref["input"].double()).logits
    error = (logits - ref["logits"].double()).abs().max().item()
    print(f"transformers vs timm reference logits: max |diff| = {error:.3g}")
    if error > 1e-5:
        sys.exit("transformers' model does not compute the fixture's logits; nothing written")

    model.float().save_pretrained(OUT, safe_serialization=True)
    with safe_open(os.path.join(OUT, "model.safetensors"), "pt") as written:
        assert set(written.keys()) == set(hf), "save_pretrained did not write the Hub key layout"
    print("wrote", OUT, sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
