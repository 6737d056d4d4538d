"""The weight spec of each architecture (nmt_spec/weights.py) is the PyTorch modules' state_dict,
name for name and shape for shape, in every configuration; our checkpoints and a MarianMT
directory both fill it; weights that do not fill it are refused naming each one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from nmt_spec import ModelSpec, RNNConfig, TransformerConfig
from nmt_spec.weights import WeightError, check_shapes, fill, weight_specs
from training.models import build_model

ROOT = Path(__file__).resolve().parents[2]
SMALL_TRANSFORMER = TransformerConfig(vocab_size=50, d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=1, d_ff=24)
SMALL_RNN = RNNConfig(vocab_size=50, embed_dim=8, hidden_size=12, encoder_layers=2, decoder_layers=2)
CONFIGS = [
    ("transformer", SMALL_TRANSFORMER),
    ("transformer", dataclasses.replace(SMALL_TRANSFORMER, norm="post", positional="learned", tie_embeddings=False, output_bias=True, activation="swish")),
    ("rnn", SMALL_RNN),
    ("rnn", dataclasses.replace(SMALL_RNN, cell="lstm", bidirectional=False, attention="general", tie_embeddings=False, decoder_layers=1)),
]


@pytest.mark.parametrize(("architecture", "config"), CONFIGS, ids=["transformer", "transformer post-norm learned untied", "rnn", "rnn lstm general untied"])
def test_the_spec_names_every_weight_of_the_pytorch_module_with_its_shape(architecture: str, config) -> None:
    spec = ModelSpec(architecture=architecture, config=config)
    state = build_model(spec).state_dict()
    assert [(w.name, w.shape) for w in weight_specs(spec)] == [(name, tuple(value.shape)) for name, value in state.items()]
    for weight in weight_specs(spec):
        if weight.tied_to:  # the module shares one tensor between them
            assert state[weight.name].data_ptr() == state[weight.tied_to].data_ptr(), weight.name


@pytest.mark.parametrize("model", ["transformer-en-de", "rnn-en-de"])
def test_a_shipped_checkpoint_fills_the_spec(model: str) -> None:
    checkpoint = torch.load(ROOT / "checkpoints" / model / "model.pt", map_location="cpu", weights_only=True)
    spec = ModelSpec.from_dict(checkpoint["spec"])
    filled = fill(spec, {name: value.float().numpy() for name, value in checkpoint["model"].items()}, model)
    assert {name: value.shape for name, value in filled.items()} == {w.name: w.shape for w in weight_specs(spec)}
    assert all(value.dtype == np.float32 for value in filled.values())


def test_a_marian_directory_fills_the_spec_and_tied_weights_share_the_embedding(tmp_path: Path) -> None:
    from export.marian import CONFIG_FILE, GENERATION_CONFIG_FILE, VOCABULARY, marian_languages, marian_spec, marian_weights, read_json, MarianImport
    from tests.export.tiny_marian import build_tiny_marian

    directory = build_tiny_marian(tmp_path / "opus-mt-en-de")
    config, generation = read_json(directory / CONFIG_FILE), read_json(directory / GENERATION_CONFIG_FILE)
    spec = marian_spec(directory, config, generation, read_json(directory / VOCABULARY), marian_languages(directory, config, MarianImport(directory=directory, name="tiny")))
    filled, _ = marian_weights(directory, config, spec)
    assert {name: value.shape for name, value in filled.items()} == {w.name: w.shape for w in weight_specs(spec)}
    assert spec.config.tie_embeddings and np.array_equal(filled["output_proj.weight"], filled["src_embed.weight"])


def test_missing_extra_and_misshapen_weights_are_refused_naming_each() -> None:
    spec = ModelSpec(architecture="transformer", config=SMALL_TRANSFORMER)
    shapes = {w.name: w.shape for w in weight_specs(spec) if not w.tied_to}
    del shapes["encoder_layers.1.self_attn.k_proj.bias"]
    shapes["decoder_layers.0.feed_forward.linear_in.weight"] = (99, 16)
    shapes["decoder_layers.7.self_attn.q_proj.weight"] = (16, 16)
    with pytest.raises(WeightError) as refused:
        check_shapes(spec, shapes, "a checkpoint")
    message = str(refused.value)
    assert "a checkpoint" in message and "encoder_layers.1.self_attn.k_proj.bias: missing" in message
    assert "decoder_layers.0.feed_forward.linear_in.weight: shape (99, 16), the spec says (24, 16)" in message
    assert "decoder_layers.7.self_attn.q_proj.weight: not a weight of this transformer" in message
