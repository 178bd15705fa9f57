#!/usr/bin/env bash
# Install Debian's offline copy of Fashion-MNIST when possible (files land in
# /usr/share/datasets/fashion-mnist, which the fashion_mnist plugin reads). Without apt or root
# this is skipped: the recipe's `download = true` lets torchvision fetch the data instead.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST: found Debian's copy in $dir"
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if $sudo apt-get update -qq >/dev/null 2>&1 && \
     $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
    echo "Fashion-MNIST: installed Debian's package dataset-fashion-mnist"
    exit 0
  fi
fi
echo "Fashion-MNIST: apt-get not usable here; the loader will download it on first use"
exit 0
