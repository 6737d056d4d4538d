"""The weight contract between a trained model and its graphs: for each architecture, every named
weight with its shape, and which ones share another's values (tied embeddings). As in
CTranslate2's specs, a converter only fills these names (our checkpoints: their PyTorch
state_dict; a MarianMT directory: its names mapped), `fill` checks what it was given, and the
graph builders read nothing but these names.

Names are those of the PyTorch modules' state_dict (training/models/), so a checkpoint is a
filled spec as it is. To add an architecture: its config in nmt_spec/model_spec.py, its weights
here, its PyTorch module in training/models/, its graph builders in export/ (README, "Adding an
architecture")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nmt_spec.model_spec import ModelSpec, RNNConfig, TransformerConfig


@dataclass(frozen=True)
class WeightSpec:
    name: str
    shape: tuple[int, ...]
    tied_to: str = ""  # the weight whose values this one is ("": its own)
    dtype: str = "float32"


class WeightError(ValueError):
    """Weights that do not fill the spec; the message names each weight and what is wrong."""


def _linear(prefix: str, out_features: int, in_features: int, bias: bool = True) -> list[WeightSpec]:
    weights = [WeightSpec(f"{prefix}.weight", (out_features, in_features))]
    return weights + [WeightSpec(f"{prefix}.bias", (out_features,))] if bias else weights


def _norm(prefix: str, width: int) -> list[WeightSpec]:
    return [WeightSpec(f"{prefix}.weight", (width,)), WeightSpec(f"{prefix}.bias", (width,))]


def _attention(prefix: str, width: int) -> list[WeightSpec]:
    return [weight for projection in ("q_proj", "k_proj", "v_proj", "out_proj") for weight in _linear(f"{prefix}.{projection}", width, width)]


def _feed_forward(prefix: str, config: TransformerConfig) -> list[WeightSpec]:
    return _linear(f"{prefix}.linear_in", config.d_ff, config.d_model) + _linear(f"{prefix}.linear_out", config.d_model, config.d_ff)


def transformer_weights(config: TransformerConfig) -> list[WeightSpec]:
    width, vocabulary = config.d_model, config.vocab_size
    weights = [
        WeightSpec("src_embed.weight", (vocabulary, width)),
        WeightSpec("tgt_embed.weight", (vocabulary, width), "src_embed.weight" if config.tie_embeddings else ""),
    ]
    if config.positional == "learned":
        weights.append(WeightSpec("positions.table.weight", (config.max_positions, width)))
    for i in range(config.n_encoder_layers):
        prefix = f"encoder_layers.{i}"
        weights += _attention(f"{prefix}.self_attn", width) + _feed_forward(f"{prefix}.feed_forward", config)
        weights += _norm(f"{prefix}.attn_sublayer.norm", width) + _norm(f"{prefix}.ff_sublayer.norm", width)
    for i in range(config.n_decoder_layers):
        prefix = f"decoder_layers.{i}"
        weights += _attention(f"{prefix}.self_attn", width) + _attention(f"{prefix}.cross_attn", width) + _feed_forward(f"{prefix}.feed_forward", config)
        weights += _norm(f"{prefix}.self_sublayer.norm", width) + _norm(f"{prefix}.cross_sublayer.norm", width) + _norm(f"{prefix}.ff_sublayer.norm", width)
    if config.norm == "pre":  # post-norm layers already end in a LayerNorm
        weights += _norm("encoder_norm", width) + _norm("decoder_norm", width)
    weights.append(WeightSpec("output_proj.weight", (vocabulary, width), "tgt_embed.weight" if config.tie_embeddings else ""))
    if config.output_bias:
        weights.append(WeightSpec("output_proj.bias", (vocabulary,)))
    return weights


def _recurrent(prefix: str, config: RNNConfig, input_size: int, hidden_size: int, layers: int, bidirectional: bool) -> list[WeightSpec]:
    """PyTorch's GRU/LSTM parameters: gates stacked (3 for a GRU, 4 for an LSTM), layer by layer,
    the reverse direction after the forward one."""
    gates = (3 if config.cell == "gru" else 4) * hidden_size
    weights = []
    for layer in range(layers):
        layer_input = input_size if layer == 0 else hidden_size * (2 if bidirectional else 1)
        for suffix in ("", "_reverse") if bidirectional else ("",):
            weights += [
                WeightSpec(f"{prefix}.weight_ih_l{layer}{suffix}", (gates, layer_input)),
                WeightSpec(f"{prefix}.weight_hh_l{layer}{suffix}", (gates, hidden_size)),
                WeightSpec(f"{prefix}.bias_ih_l{layer}{suffix}", (gates,)),
                WeightSpec(f"{prefix}.bias_hh_l{layer}{suffix}", (gates,)),
            ]
    return weights


def rnn_weights(config: RNNConfig) -> list[WeightSpec]:
    hidden, embedding, vocabulary = config.hidden_size, config.embed_dim, config.vocab_size
    directions = 2 if config.bidirectional else 1
    weights = [
        WeightSpec("src_embed.weight", (vocabulary, embedding)),
        WeightSpec("tgt_embed.weight", (vocabulary, embedding), "src_embed.weight" if config.tie_embeddings else ""),
    ]
    weights += _recurrent("encoder_rnn", config, embedding, hidden // directions, config.encoder_layers, config.bidirectional)
    weights += _linear("bridge", hidden * config.decoder_layers, hidden)
    weights += _recurrent("decoder_rnn", config, embedding, hidden, config.decoder_layers, False)
    if config.attention == "general":
        weights += _linear("attention.general", hidden, hidden, bias=False)
    weights += _linear("combine", hidden, 2 * hidden) + _linear("readout", embedding, hidden)
    weights.append(WeightSpec("output_proj.weight", (vocabulary, embedding), "tgt_embed.weight"))  # always tied (Press & Wolf, 2017)
    return weights


ARCHITECTURE_WEIGHTS: dict[str, Callable] = {"transformer": transformer_weights, "rnn": rnn_weights}


def weight_specs(spec: ModelSpec) -> list[WeightSpec]:
    """Every weight of the model `spec` describes, in the PyTorch module's order."""
    return ARCHITECTURE_WEIGHTS[spec.architecture](spec.config)


def check_shapes(spec: ModelSpec, shapes: Mapping[str, Sequence[int]], where: str) -> None:
    """WeightError unless `shapes` names every weight of the spec that is not tied to another
    (tied ones may be left out), each with its shape, and nothing else."""
    expected = {weight.name: weight for weight in weight_specs(spec)}
    problems = [f"{name}: not a weight of this {spec.architecture}" for name in shapes if name not in expected]
    for name, weight in expected.items():
        if name not in shapes:
            if not weight.tied_to:
                problems.append(f"{name}: missing")
        elif tuple(shapes[name]) != weight.shape:
            problems.append(f"{name}: shape {tuple(shapes[name])}, the spec says {weight.shape}")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise WeightError(f"{where}: the weights do not fill the {spec.architecture} spec: {shown}")


def fill(spec: ModelSpec, arrays: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """The spec's weights from `arrays` (checked by check_shapes), as float32, tied ones given
    the values of the weight they are tied to when left out: what the graph builders read."""
    check_shapes(spec, {name: np.shape(value) for name, value in arrays.items()}, where)
    filled: dict[str, np.ndarray] = {}
    for weight in weight_specs(spec):
        value = arrays[weight.name] if weight.name in arrays else filled[weight.tied_to]
        filled[weight.name] = np.asarray(value, dtype=weight.dtype)
    return filled
