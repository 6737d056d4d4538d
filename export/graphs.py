"""Which graph builders make up each architecture, and the file names they are written to."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from export import rnn_graphs, transformer_graphs
from nmt_spec import ModelSpec

EncoderBuilder = Callable[[ModelSpec, dict[str, np.ndarray]], onnx.ModelProto]
DecoderBuilder = Callable[[ModelSpec, dict[str, np.ndarray]], onnx.ModelProto]

BUILDERS: dict[str, tuple[EncoderBuilder, DecoderBuilder]] = {
    "transformer": (transformer_graphs.build_encoder, transformer_graphs.build_decoder_step),
    "rnn": (rnn_graphs.build_encoder, rnn_graphs.build_decoder_step),
}

# Hugging Face Optimum's file names: the decoder takes (and returns) its cache at every step,
# starting from an empty one.
ENCODER_FILE = "encoder_model{suffix}.onnx"
DECODER_FILE = "decoder_with_past_model{suffix}.onnx"


def build_graphs(spec: ModelSpec, weights: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    build_encoder, build_decoder = BUILDERS[spec.architecture]
    return build_encoder(spec, weights), build_decoder(spec, weights)
