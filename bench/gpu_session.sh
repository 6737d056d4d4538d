#!/usr/bin/env bash
# A GPU run within what a lent GPU machine allows: at most 64 MiB travels per call (the tracked
# tree, about 38 MB, included) and about 15 minutes of device time per session. ONNX Runtime's
# CUDA build (a 256 MB wheel, 204 MB as tar | xz -6) does not fit one call, so it travels in
# pieces, one call each, while the machine stays up (it goes back about 30 s after a call); the
# machine's own python3 (PyTorch, CUDA 13) runs everything.
#
#   bash bench/gpu_session.sh prepare   # here: wheels into .gpu/ (git-ignored), the CUDA build packed and cut in pieces
#   bash bench/gpu_session.sh receive   # there, once per piece: carry [".gpu/meta", ".gpu/pieces/NN"]
#                                       # (the first call also says what the machine is)
#   bash bench/gpu_session.sh run       # there, last: carry [".gpu/meta", ".gpu/wheels"]; joins the pieces,
#                                       # installs, exports fp16 (held to the CPU's fp32 on the GPU), runs the
#                                       # CUDA tests, python -m bench.host_time and python -m bench.gpu;
#                                       # docs/BENCHMARKS-GPU.md, its plot and the logs go to $OUT
#   bash bench/gpu_session.sh run setup # the same in two calls, where one would pass a call's
#   bash bench/gpu_session.sh run bench # 10 minutes: setup installs, exports and tests, bench measures
#
# A call removes the carried paths it does not name, so `receive` copies its piece out of the work
# tree at once, into $NMT_GPU_PIECES (/tmp/nmt-gpu-pieces), which lasts while the machine stays
# warm (it goes back 30 s after a call: make the calls one after another). A call cut short is
# resent alone. Each step prints its seconds.
set -euo pipefail

GPU_DIR=.gpu
STORE=${NMT_GPU_PIECES:-/tmp/nmt-gpu-pieces}  # the pieces received, outside the work tree
ORT_WHEEL="onnxruntime-gpu>=1.31,<1.32"
# What the server needs that the machine's image lacks or holds at other versions (pyproject.toml's pins).
SMALL_WHEELS=("grpcio==1.85.1" "grpcio-health-checking==1.85.1" "grpcio-reflection==1.85.1" "protobuf==7.35.1" "sentencex>=1.0.32,<1.1")
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
CALL_LIMIT=$((64 * 1024 * 1024))
MARGIN=$((3 * 1024 * 1024)) # untracked files that travel, rounding

step() {
    local began=$SECONDS
    echo "== $1"
    shift
    "$@"
    echo "== $((SECONDS - began)) s"
}

download() {
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" -d "$@"
}

prepare() {
    rm -rf "$GPU_DIR" && mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/pieces" "$GPU_DIR/meta" "$GPU_DIR/download"
    download "$GPU_DIR/wheels" "${SMALL_WHEELS[@]}"
    download "$GPU_DIR/download" "$ORT_WHEEL"
    local wheel tracked piece
    wheel=$(ls "$GPU_DIR"/download/*.whl)
    # a wheel is a zip of compressed files, yet xz takes a fifth off it: two calls fewer
    tar -C "$GPU_DIR/download" -cf - "$(basename "$wheel")" | xz -6 -T0 >"$GPU_DIR/download/wheel.tar.xz"
    tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    piece=$((CALL_LIMIT - tracked - MARGIN))  # the small wheels travel with the last call
    if [ "$piece" -lt $((4 * 1024 * 1024)) ]; then
        echo "the tracked tree ($tracked bytes) leaves no room for pieces in a 64 MiB call" >&2
        exit 1
    fi
    split --bytes="$piece" --numeric-suffixes --suffix-length=2 "$GPU_DIR/download/wheel.tar.xz" "$GPU_DIR/pieces/"
    basename "$wheel" >"$GPU_DIR/meta/wheel-name"
    (cd "$GPU_DIR/download" && sha256sum -- *.whl) >"$GPU_DIR/meta/wheel.sha256"
    ls "$GPU_DIR/pieces" >"$GPU_DIR/meta/pieces"
    rm -r "$GPU_DIR/download"
    echo "tracked tree $tracked bytes, pieces of $piece bytes; the calls, one after another:"
    local name
    for name in $(cat "$GPU_DIR/meta/pieces"); do
        echo "  run: bash bench/gpu_session.sh receive   carry: [\".gpu/meta\", \".gpu/pieces/$name\"]"
    done
    echo "  run: bash bench/gpu_session.sh run       carry: [\".gpu/meta\", \".gpu/wheels\"]"
    echo "  (or, if one call would pass 10 minutes: run setup with that carry, then run bench with [\".gpu/meta\"])"
}

missing_pieces() {
    local name
    for name in $(cat "$GPU_DIR/meta/pieces"); do
        [ -f "$STORE/$name" ] || echo "$name"
    done
}

machine() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" || true
    nproc
}

receive() {
    mkdir -p "$STORE"
    if [ -d "$GPU_DIR/pieces" ]; then
        cp -- "$GPU_DIR"/pieces/* "$STORE/" 2>/dev/null || true
    fi
    if [ ! -f "$STORE/machine" ]; then
        step "the machine" machine | tee "$STORE/machine"
    fi
    echo "pieces received: $(ls "$STORE" | grep -v machine | tr '\n' ' ')"
    echo "pieces still missing: $(missing_pieces | tr '\n' ' ')"
}

install() {
    local wheel
    wheel="/tmp/$(cat "$GPU_DIR/meta/wheel-name")"
    local name
    for name in $(cat "$GPU_DIR/meta/pieces"); do
        cat "$STORE/$name"
    done | xz -d | tar -C /tmp -xf -
    (cd /tmp && sha256sum --check --quiet "$OLDPWD/$GPU_DIR/meta/wheel.sha256")
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheel" "$GPU_DIR"/wheels/*.whl
    python3 -c "import onnxruntime as ort; ort.preload_dlls(); print(ort.__version__, ort.get_available_providers())"
}

# The same export as `make bench-gpu`: fp32 and fp16, each held on the GPU to the CPU's fp32 greedy
# output (step loop and fixed-shape step); the default decoding is not searched (the benchmark
# decodes greedily), which saves minutes of device time.
export_fp16() {
    local model
    for model in transformer-en-de rnn-en-de; do
        python3 -m export --checkpoint "checkpoints/$model/model.pt" --name "$model" --version 2 --variants fp32 fp16 --out models-gpu --overwrite --decoding-split none
    done
}

run() {
    local stage=${1:-all}
    local missing
    missing=$(missing_pieces)
    if [ -n "$missing" ]; then
        echo "pieces missing, send them first: $missing" >&2
        exit 1
    fi
    export PYTHONPATH="/tmp/site:$PWD"
    local out="${OUT:-/tmp/gpu-out}"
    mkdir -p "$out"
    if [ "$stage" != bench ]; then
        step "install ONNX Runtime's CUDA build and the server's wheels" install 2>&1 | tee "$out/install.log"
        step "export fp16 graphs (parity checked on the GPU)" export_fp16 2>&1 | tee "$out/export.log"
        step "the CUDA tests" python3 -m pytest -q -p no:cacheprovider -rs tests/export/test_export.py tests/decoding 2>&1 | tee "$out/tests.log"
        step "python -m bench.host_time" python3 -m bench.host_time 2>&1 | tee "$out/host-time.log"
    fi
    if [ "$stage" != setup ]; then
        # models-gpu/ is git-ignored, so it stays in the work tree from the setup call
        step "python -m bench.gpu" python3 -m bench.gpu --repository models-gpu 2>&1 | tee "$out/bench-gpu.log"
        cp docs/BENCHMARKS-GPU.md docs/bench-gpu.png "$out/"
    fi
}

case "${1:-}" in
prepare) prepare ;;
receive) receive ;;
run) run "${2:-all}" ;;
*)
    sed -n '2,18p' "$0"
    exit 2
    ;;
esac
