#!/usr/bin/env bash
# Fill .gpu/ (ignored by git) with what benchmarks/gpu_run.sh needs on a lent GPU machine: the two
# JPEG archives from ../shared/data and wheels of the Keras version installed here, for the machine's
# Python 3.12 (it has JAX, numpy, h5py, ml-dtypes, rich and absl-py, but not keras, namex or optree).
set -euo pipefail
grep -qxF "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/data .gpu/whl
cp ../shared/data/cifar10-jpeg.tar.gz ../shared/data/cifar100-jpeg.tar.gz .gpu/data/
PYTHON=${PYTHON:-.venv/bin/python}
keras_version=$("$PYTHON" -c "import keras; print(keras.__version__)")
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl "keras==$keras_version" namex optree
du -sh .gpu/*
