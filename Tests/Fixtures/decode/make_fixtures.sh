#!/bin/sh
# Regenerates the decoder's fixtures: files a camera, a scanner or an editor writes (CMYK and YCCK JPEGs; 16-bit,
# palette and alpha PNGs) and Pillow's convert("RGB") / convert("L") of each, the reference the decoder is tested
# against (CI has no Pillow when the tests run). Needs a C compiler, libjpeg's headers and Python with Pillow.
# Run from anywhere: sh Tests/Fixtures/decode/make_fixtures.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cc -O2 -o "$scratch/write_fixtures" "$here/write_fixtures.c" -ljpeg -lpng
"$scratch/write_fixtures" cmyk 37 23 "$here/cmyk.jpg"
"$scratch/write_fixtures" ycck 29 19 "$here/ycck.jpg"
"$scratch/write_fixtures" rgb16 13 7 "$here/rgb16.png"
python3 - "$here" <<'PY'
import sys
from PIL import Image
folder = sys.argv[1]
for name in ("cmyk", "ycck"):
    image = Image.open(f"{folder}/{name}.jpg")
    assert image.mode == "CMYK", image.mode
    image.convert("RGB").save(f"{folder}/{name}-pillow.png")
    print(name, image.size, image.info.get("adobe_transform"), "Pillow", Image.__version__)

# PNGs: odd sizes, every pixel different: palette, RGBA and grey + alpha (alpha dropped without compositing, as
# convert("RGB") does); 16-bit RGB (written above; Pillow keeps the high byte). Not 16-bit grey: Pillow clips
# those to 255 (mode I;16 → L) where ViTForge keeps the high byte, as for RGB.
width, height = 13, 7
rgb = Image.new("RGB", (width, height))
rgb.putdata([((x * 19 + y * 7) % 256, (x * 5 + y * 31) % 256, (x * y * 11 + 3) % 256)
             for y in range(height) for x in range(width)])
rgb.quantize(colors=23).save(f"{folder}/palette.png")
rgba = rgb.copy()
rgba.putalpha(Image.linear_gradient("L").resize((width, height)))
rgba.save(f"{folder}/rgba.png")
rgba.convert("LA").save(f"{folder}/grey-alpha.png")
for name in ("rgb16", "palette", "rgba"):
    image = Image.open(f"{folder}/{name}.png")
    print(name, image.mode)
    image.convert("RGB").save(f"{folder}/{name}-pillow.png")
image = Image.open(f"{folder}/grey-alpha.png")
print("grey-alpha", image.mode)
image.convert("L").save(f"{folder}/grey-alpha-pillow.png")
PY
