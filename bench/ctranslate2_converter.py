"""Our Transformer checkpoint as a CTranslate2 model, filled in through CTranslate2's spec API
(ctranslate2.specs.TransformerSpec), so that the fastest open NMT engine runs the very same
weights. Names map one to one; nothing is retrained or approximated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sentencepiece as spm
from ctranslate2.specs import common_spec, transformer_spec

from nmt_spec import ModelSpec, TransformerConfig
from nmt_spec.positions import sinusoidal_table

Weights = dict[str, np.ndarray]


def _linear(spec: common_spec.LinearSpec, weights: Weights, prefixes: list[str]) -> None:
    """One CTranslate2 linear from one or several (fused) PyTorch linears, torch (out, in) layout."""
    spec.weight = np.concatenate([weights[f"{p}.weight"] for p in prefixes])
    spec.bias = np.concatenate([weights[f"{p}.bias"] for p in prefixes])


def _layer_norm(spec: common_spec.LayerNormSpec, weights: Weights, prefix: str) -> None:
    spec.gamma, spec.beta = weights[f"{prefix}.weight"], weights[f"{prefix}.bias"]


def _attention(spec, weights: Weights, prefix: str, self_attention: bool) -> None:
    if self_attention:
        _linear(spec.linear[0], weights, [f"{prefix}.{p}_proj" for p in "qkv"])
    else:
        _linear(spec.linear[0], weights, [f"{prefix}.q_proj"])
        _linear(spec.linear[1], weights, [f"{prefix}.k_proj", f"{prefix}.v_proj"])
    _linear(spec.linear[-1], weights, [f"{prefix}.out_proj"])


def _feed_forward(spec, weights: Weights, prefix: str, norm: str) -> None:
    _layer_norm(spec.layer_norm, weights, norm)
    _linear(spec.linear_0, weights, [f"{prefix}.linear_in"])
    _linear(spec.linear_1, weights, [f"{prefix}.linear_out"])


def build_spec(model_spec: ModelSpec, weights: Weights, tokenizer_file: Path) -> transformer_spec.TransformerSpec:
    config = model_spec.config
    if not isinstance(config, TransformerConfig) or config.norm != "pre" or config.positional != "sinusoidal" or config.activation != "relu":
        raise ValueError("the converter covers the pre-norm, sinusoidal, relu Transformer (the shipped configuration)")
    spec = transformer_spec.TransformerSpec.from_config((config.n_encoder_layers, config.n_decoder_layers), config.n_heads, pre_norm=True)
    spec.config.layer_norm_epsilon = 1e-5  # torch's LayerNorm default; CTranslate2 assumes 1e-6
    positions = sinusoidal_table(config.max_positions, config.d_model)
    target_embedding = weights["src_embed.weight"] if config.tie_embeddings else weights["tgt_embed.weight"]

    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = weights["src_embed.weight"]
    encoder.position_encodings.encodings = positions
    _layer_norm(encoder.layer_norm, weights, "encoder_norm")
    for i, layer in enumerate(encoder.layer):
        prefix = f"encoder_layers.{i}"
        _attention(layer.self_attention, weights, f"{prefix}.self_attn", self_attention=True)
        _layer_norm(layer.self_attention.layer_norm, weights, f"{prefix}.attn_sublayer.norm")
        _feed_forward(layer.ffn, weights, f"{prefix}.feed_forward", f"{prefix}.ff_sublayer.norm")

    decoder.embeddings.weight = target_embedding
    decoder.position_encodings.encodings = positions
    _layer_norm(decoder.layer_norm, weights, "decoder_norm")
    decoder.projection.weight = target_embedding if config.tie_embeddings else weights["output_proj.weight"]
    decoder.projection.bias = np.zeros(config.vocab_size, dtype=np.float32)
    for i, layer in enumerate(decoder.layer):
        prefix = f"decoder_layers.{i}"
        _attention(layer.self_attention, weights, f"{prefix}.self_attn", self_attention=True)
        _layer_norm(layer.self_attention.layer_norm, weights, f"{prefix}.self_sublayer.norm")
        _attention(layer.attention, weights, f"{prefix}.cross_attn", self_attention=False)
        _layer_norm(layer.attention.layer_norm, weights, f"{prefix}.cross_sublayer.norm")
        _feed_forward(layer.ffn, weights, f"{prefix}.feed_forward", f"{prefix}.ff_sublayer.norm")

    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_file))
    vocabulary = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    special = model_spec.special_ids
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = (vocabulary[special.unk], vocabulary[special.bos], vocabulary[special.eos])
    spec.config.decoder_start_token = vocabulary[special.bos]
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    return spec


def convert(checkpoint: Path, output_directory: Path) -> Path:
    """Write the CTranslate2 model of a checkpoint (its tokenizer lies beside it)."""
    from training.checkpoint import load_model

    model_spec, model, _ = load_model(checkpoint)
    weights = {name: value.detach().numpy() for name, value in model.state_dict().items()}
    spec = build_spec(model_spec, weights, checkpoint.parent / model_spec.tokenizer_file)
    spec.validate()
    spec.optimize(quantization=None)
    output_directory.mkdir(parents=True, exist_ok=True)
    spec.save(str(output_directory))
    return output_directory
