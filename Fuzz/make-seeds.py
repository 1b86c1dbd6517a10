#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (Fuzz/Seeds/<harness>/), small files derived from the test fixtures and from
Fashion-MNIST. Run once from the repository root; the output is committed, so fuzzing needs neither Python nor the
data set. JPEG seeds are encoded by a throw-away C program against libjpeg (cc must be installed)."""
import gzip, json, os, struct, subprocess, tempfile, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "Fuzz", "Seeds")
FMNIST = "/usr/share/datasets/fashion-mnist"


def write(harness, name, data):
    folder = os.path.join(SEEDS, harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as out:
        out.write(data)


# --- safetensors -----------------------------------------------------------------------------------------------

def safetensors(tensors, metadata):
    """tensors: list of (name, shape, float32 values); laid out in order."""
    header, offset, body = {"__metadata__": metadata}, 0, b""
    for name, shape, values in tensors:
        data = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        body += data
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def tiny_model(blocks, residual=4, image=4, patch=2, channels=1, classes=3):
    """A model in timm's names with `vitforge.config`, per-head widths allowed (blocks: (qkDims, vDims, mlp))."""
    tokens = 1 + (image // patch) ** 2
    counter = [0]

    def values(count):
        counter[0] += 1
        return [((i * 7 + counter[0] * 3) % 11 - 5) / 8 for i in range(count)]

    def tensor(name, shape):
        count = 1
        for dim in shape:
            count *= dim
        return (name, shape, values(count))

    tensors = [tensor("cls_token", [1, 1, residual]), tensor("pos_embed", [1, tokens, residual]),
               tensor("patch_embed.proj.weight", [residual, channels, patch, patch]),
               tensor("patch_embed.proj.bias", [residual])]
    block_configs = []
    for index, (qk, v, mlp) in enumerate(blocks):
        prefix = "blocks.%d." % index
        rows = 2 * sum(qk) + sum(v)
        tensors += [tensor(prefix + "norm1.weight", [residual]), tensor(prefix + "norm1.bias", [residual]),
                    tensor(prefix + "attn.qkv.weight", [rows, residual]), tensor(prefix + "attn.qkv.bias", [rows]),
                    tensor(prefix + "attn.proj.weight", [residual, sum(v)]),
                    tensor(prefix + "attn.proj.bias", [residual]),
                    tensor(prefix + "norm2.weight", [residual]), tensor(prefix + "norm2.bias", [residual]),
                    tensor(prefix + "mlp.fc1.weight", [mlp, residual]), tensor(prefix + "mlp.fc1.bias", [mlp]),
                    tensor(prefix + "mlp.fc2.weight", [residual, mlp]), tensor(prefix + "mlp.fc2.bias", [residual])]
        block = {"heads": len(qk), "qkDim": max(qk), "vDim": max(v), "mlpHidden": mlp,
                 "attentionScale": 0.5}
        if len(set(qk)) > 1 or len(set(v)) > 1:
            block["headQKDims"], block["headVDims"] = qk, v
        block_configs.append(block)
    tensors += [tensor("norm.weight", [residual]), tensor("norm.bias", [residual]),
                tensor("head.weight", [classes, residual]), tensor("head.bias", [classes])]
    config = {"version": 1, "imageSize": image, "patchSize": patch, "inChannels": channels, "classes": classes,
              "residualWidth": residual, "blocks": block_configs, "qkvBias": True, "pooling": "token",
              "classToken": True}
    return safetensors(tensors, {"vitforge.config": json.dumps(config, sort_keys=True), "format": "pt"})


write("safetensors", "tiny-model", tiny_model([([2, 2], [2, 2], 6)]))
write("safetensors", "per-head-widths", tiny_model([([2, 1], [1, 2], 5), ([1], [3], 2)]))
plain = tiny_model([([2, 2], [2, 2], 6)])
(length,) = struct.unpack("<Q", plain[:8])
header = json.loads(plain[8:8 + length])
header["__metadata__"] = {"format": "pt"}
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
write("safetensors", "plain-timm", struct.pack("<Q", len(text)) + text + plain[8 + length:])
# The fixture's own header (real names and shapes, timm metadata) over an empty buffer: exercises the checks
# of offsets against the buffer.
with open(os.path.join(ROOT, "Tests", "Fixtures", "fm-vit-c.safetensors"), "rb") as fixture:
    (length,) = struct.unpack("<Q", fixture.read(8))
    write("safetensors", "fixture-header", struct.pack("<Q", length) + fixture.read(length))
write("safetensors", "other-dtypes", b"".join([
    struct.pack("<Q", 96),
    json.dumps({"labels": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
                "h": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]}}, separators=(",", ":"))
    .encode().ljust(96), struct.pack("<qq", 3, -1), b"\x00\x3c\x00\xc0"]))

# --- IDX -------------------------------------------------------------------------------------------------------

with gzip.open(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")) as images:
    head = images.read(16 + 3 * 784)
with gzip.open(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")) as labels:
    label_head = labels.read(8 + 3)
images3 = b"\x00\x00\x08\x03" + struct.pack(">III", 3, 28, 28) + head[16:]
write("idx", "images-3", images3)
write("idx", "labels-3", b"\x00\x00\x08\x01" + struct.pack(">I", 3) + label_head[8:])
write("idx", "images-3.gz", gzip.compress(images3, mtime=0))
write("idx", "images-2x5x4", b"\x00\x00\x08\x03" + struct.pack(">III", 2, 5, 4) + bytes(range(40)))

# --- images ----------------------------------------------------------------------------------------------------

def png(width, height, channels, pixels, bit_depth=8):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    color = {1: 0, 3: 2, 2: 4, 4: 6}[channels]
    rows = b"".join(b"\x00" + pixels[y * width * channels:(y + 1) * width * channels] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


item = head[16:16 + 784]
small = bytes(item[y * 28 + x] for y in range(0, 28, 4) for x in range(0, 28, 4))  # 7x7
write("image", "gray-7x7.png", png(7, 7, 1, small))
write("image", "rgb-5x3.png", png(5, 3, 3, bytes((i * 17) % 256 for i in range(45))))
write("image", "gray-alpha-3x2.png", png(3, 2, 2, bytes(range(0, 240, 20))))

encoder = r"""
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
int main(int argc, char **argv) {
    int width = atoi(argv[2]), height = atoi(argv[3]), channels = atoi(argv[4]), progressive = atoi(argv[5]);
    unsigned char *pixels = malloc(width * height * channels);
    fread(pixels, 1, width * height * channels, stdin);
    struct jpeg_compress_struct c; struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e); jpeg_create_compress(&c);
    FILE *out = fopen(argv[1], "wb"); jpeg_stdio_dest(&c, out);
    c.image_width = width; c.image_height = height; c.input_components = channels;
    c.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c); jpeg_set_quality(&c, 75, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = pixels + c.next_scanline * width * channels;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c); fclose(out); return 0;
}
"""
with tempfile.TemporaryDirectory() as scratch:
    source, binary = os.path.join(scratch, "encode.c"), os.path.join(scratch, "encode")
    with open(source, "w") as out:
        out.write(encoder)
    subprocess.run(["cc", "-O1", "-o", binary, source, "-ljpeg"], check=True)
    for name, width, height, channels, progressive, pixels in [
            ("gray-7x7.jpg", 7, 7, 1, 0, small), ("rgb-9x6.jpg", 9, 6, 3, 0, bytes((i * 29) % 256 for i in range(162))),
            ("progressive-8x8.jpg", 8, 8, 3, 1, bytes((i * 13) % 256 for i in range(192)))]:
        path = os.path.join(SEEDS, "image", name)
        subprocess.run([binary, path, str(width), str(height), str(channels), str(progressive)], input=pixels,
                       check=True)

# --- CLI flags (NUL-separated arguments) -------------------------------------------------------------------------

for name, arguments in [
        ("prune-vbp", ["prune", "--model", "m.safetensors", "--method", "vbp", "--keep-mlp", "0.5", "--classes",
                       "5,7,9", "--latency-batches", "1,64,256", "--out", "p.safetensors", "--seed", "7"]),
        ("prune-slim", ["prune", "--model", "m", "--method", "slim", "--epochs", "1", "--keep-attn", "0.6",
                        "--target-macs", "0.3", "--round-to", "8", "--out", "p", "--device", "opencl:0.0"]),
        ("prune-latency", ["prune", "--model", "m", "--target-latency", "12.5", "--latency-batch", "64",
                           "--finetune-epochs", "2", "--lr", "1e-4", "--out", "p"]),
        ("train", ["train", "--arch", "fm-vit-c", "--epochs", "7", "--batch-size", "128", "--classes", "0,1,2",
                   "--val-fraction", "0.1", "--lr", "1e-3", "--clip-grad", "1.0", "--out", "m"]),
        ("eval", ["eval", "--model", "m", "--classes", "5,7,9", "--device", "cpu"]),
        ("bench", ["bench", "--model", "m", "--batch", "1", "--batch", "64", "--train"])]:
    write("flags", name, b"\x00".join(argument.encode() for argument in arguments))
