#!/bin/sh
# Regenerates the CMYK/YCCK JPEG fixtures and Pillow's RGB decoding of them (the reference the decoder is tested
# against; CI has no Pillow when the tests run). Needs a C compiler, libjpeg's headers and Python with Pillow.
# Run from anywhere: sh Tests/Fixtures/cmyk/make_fixtures.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cc -O2 -o "$scratch/write_cmyk_jpeg" "$here/write_cmyk_jpeg.c" -ljpeg
"$scratch/write_cmyk_jpeg" cmyk 37 23 "$here/cmyk.jpg"
"$scratch/write_cmyk_jpeg" ycck 29 19 "$here/ycck.jpg"
python3 - "$here" <<'PY'
import sys
from PIL import Image
folder = sys.argv[1]
for name in ("cmyk", "ycck"):
    image = Image.open(f"{folder}/{name}.jpg")
    assert image.mode == "CMYK", image.mode
    image.convert("RGB").save(f"{folder}/{name}-pillow.png")
    print(name, image.size, image.info.get("adobe_transform"), "Pillow", Image.__version__)
PY
