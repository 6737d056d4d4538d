"""Which graph builders make up each architecture, and the file names they are written to."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from export import rnn_graphs, transformer_fixed_step, transformer_graphs
from nmt_spec import ModelSpec

EncoderBuilder = Callable[[ModelSpec, dict[str, np.ndarray]], onnx.ModelProto]
DecoderBuilder = Callable[[ModelSpec, dict[str, np.ndarray]], onnx.ModelProto]
FixedStepBuilder = Callable[[ModelSpec, dict[str, np.ndarray], str], onnx.ModelProto]  # and the precision

BUILDERS: dict[str, tuple[EncoderBuilder, DecoderBuilder]] = {
    "transformer": (transformer_graphs.build_encoder, transformer_graphs.build_decoder_step),
    "rnn": (rnn_graphs.build_encoder, rnn_graphs.build_decoder_step),
}

# Architectures whose decoder step also has the fixed-shape form a CUDA graph replays
# (export/transformer_fixed_step.py); the RNN keeps its one step form.
FIXED_STEP_BUILDERS: dict[str, FixedStepBuilder] = {"transformer": transformer_fixed_step.build_fixed_decoder_step}

# Hugging Face Optimum's file names: the decoder takes (and returns) its cache at every step,
# starting from an empty one.
ENCODER_FILE = "encoder_model{suffix}.onnx"
DECODER_FILE = "decoder_with_past_model{suffix}.onnx"
FIXED_STEP_FILE = "decoder_fixed_step_model{suffix}.onnx"
# The precisions the fixed-shape form is written in: fp16 runs it on CUDA (where
# GroupQueryAttention has fp16 and bf16 kernels only), fp32 on the CPU (tests, --device cpu).
FIXED_STEP_VARIANTS = ("fp32", "fp16")


def build_graphs(spec: ModelSpec, weights: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    build_encoder, build_decoder = BUILDERS[spec.architecture]
    return build_encoder(spec, weights), build_decoder(spec, weights)


def build_fixed_step(spec: ModelSpec, weights: dict[str, np.ndarray], precision: str = "fp32") -> onnx.ModelProto | None:
    """The decoder step's fixed-shape form in this precision (fp32 or fp16), for architectures
    that have one."""
    builder = FIXED_STEP_BUILDERS.get(spec.architecture)
    return builder(spec, weights, precision) if builder else None
