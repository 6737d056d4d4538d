"""How much arithmetic a generated token costs, and how much the machine can do: together they
say what fraction of the hardware an engine uses."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import numpy as np

from bench.engines import ROOT
from nmt_spec import ModelSpec, RNNConfig, TransformerConfig


def flops_per_generated_token(spec: ModelSpec, source_tokens: float, target_tokens: float) -> float:
    """Multiply-adds x 2 of one decoder step, plus the encoder's work spread over the target
    tokens, for sentences of these average lengths (eos included)."""
    config = spec.config
    if isinstance(config, TransformerConfig):
        d, ff, layers_e, layers_d = config.d_model, config.d_ff, config.n_encoder_layers, config.n_decoder_layers
        attended = target_tokens / 2  # the self-attention cache is half full on average
        decoder = layers_d * (4 * d * d + 2 * d * d + 2 * d * ff + 2 * d * (attended + source_tokens)) + d * config.vocab_size
        encoder_per_source_token = layers_e * (4 * d * d + 2 * d * ff + 2 * d * source_tokens) + layers_d * 2 * d * d  # + cross-attention K/V
    else:
        assert isinstance(config, RNNConfig)
        h, e = config.hidden_size, config.embed_dim
        decoder = config.decoder_layers * 3 * h * (e + h) + 2 * h * source_tokens + 2 * h * h + h * e + e * config.vocab_size
        directions = 2 if config.bidirectional else 1
        per_direction = h // directions
        first = 3 * per_direction * (e + per_direction) * directions
        rest = (config.encoder_layers - 1) * 3 * per_direction * (h + per_direction) * directions
        encoder_per_source_token = first + rest
    return 2.0 * (decoder + encoder_per_source_token * source_tokens / target_tokens)


def matmul_peak_flops(size: int = 1024, repeats: int = 10) -> float:
    """fp32 GEMM throughput of numpy's BLAS on this machine (all the threads it uses)."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def one_core_matmul_peak_flops() -> float:
    """matmul_peak_flops on one core: BLAS reads its thread count when it loads, so in a child
    process."""
    one = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = "from bench.flops import matmul_peak_flops; print(matmul_peak_flops())"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **one}, capture_output=True, text=True, check=True)
    return float(result.stdout)


def matrix_product_flops(output_shape: list[int], inner: int) -> float:
    """A MatMul or Gemm of this output shape, summing over `inner` (the first input's last axis)."""
    return 2.0 * math.prod(output_shape) * inner
