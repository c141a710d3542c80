#!/usr/bin/env bash
# Here, before a device call: put what the device image lacks into git-ignored folders that the
# call carries (see docs/scale.md): the wheels of keras, its two small needs, simplejpeg and
# google-crc32c for the device's Python 3.12, and the shared JPEG CIFAR-10 (56 MB).
# The device image already has jax/jaxlib with CUDA, numpy, pillow, matplotlib, h5py, rich, absl.
#
#   bash tools/device/prepare.sh && du -sh .whl .data
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
mkdir -p .whl .data/cifar10
cp ../shared/data/cifar10/train.npz ../shared/data/cifar10/test.npz .data/cifar10/
# The versions this machine's venv resolved (the ones CI tests); any in pyproject's ranges work.
versions=$("$python" -m pip list --format=freeze 2>/dev/null | grep -i -E '^(keras|namex|optree|simplejpeg|google-crc32c)==')
rm -f .whl/*.whl
# shellcheck disable=SC2086
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $versions
ls .whl
