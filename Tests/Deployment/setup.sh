#!/usr/bin/env bash
# What the deployment checks need beyond .ci/setup: headless Chromium (report check), debootstrap (runtime-image
# check) from Debian, and onnxruntime + numpy from PyPI (ONNX and HF checks; no torch).
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium fonts-liberation debootstrap
# A Debian system Python may lack pip, and refuses pip installs outside a virtual environment (PEP 668); a
# pyenv/venv Python takes the first attempt.
python3 -m pip --version > /dev/null 2>&1 || $SUDO apt-get install -y --no-install-recommends python3-pip
python3 -m pip install --quiet --disable-pip-version-check onnxruntime numpy \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages onnxruntime numpy
