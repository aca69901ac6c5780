#!/bin/sh
# The image's install step (deploy/Dockerfile runs exactly this), runnable outside Docker to
# test it: install allocbot from the source tree SRC into the current Python with the tested
# versions pinned by deploy/constraints.txt, then check the shipped config loads.
#   python3 -m venv /tmp/v && . /tmp/v/bin/activate && sh deploy/install.sh .
set -eu
src="${1:-.}"
python -m pip install --no-cache-dir --quiet -c "$src/deploy/constraints.txt" "$src"
allocbot --version
allocbot check-config --config "$src/config.toml" > /dev/null
echo "allocbot installed from $src with deploy/constraints.txt"
