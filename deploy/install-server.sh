#!/bin/sh
# Installs the server from a built wheel with only the serving dependencies (no torch, no training
# code): the container image runs this, and CI runs it in a fresh virtual environment to prove
# the image's recipe outside a container.
# Versions are pinned by constraints-serve.txt beside this script.
#   deploy/install-server.sh WHEEL_DIRECTORY [EXTRA]    EXTRA: serve (CUDA build, default) or serve-cpu
set -eu
wheel_directory=$1
extra=${2:-serve}
wheel=$(ls "$wheel_directory"/nmt_serving-*.whl)
pip install --no-cache-dir --constraint "$(dirname "$0")/constraints-serve.txt" "${wheel}[${extra}]"
