"""The graph builders against PyTorch, for every architecture variant the configs allow."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.step_graphs import CACHE_GROWTH_SLOTS
from export.graphs import build_graphs
from tests.training.conftest import MODEL_SPECS, SPECIAL, random_tokens
from training.models import build_model
from training.search import TorchIncrementalDecoder


def sessions_of(spec, model: torch.nn.Module, in_place_caches: bool = False) -> list[ort.InferenceSession]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    graphs = build_graphs(spec, {name: value.numpy() for name, value in model.state_dict().items()}, in_place_caches)
    return [ort.InferenceSession(g.SerializeToString(), options, providers=["CPUExecutionProvider"]) for g in graphs]


@pytest.mark.parametrize("variant", sorted(MODEL_SPECS))
@pytest.mark.parametrize("in_place_caches", [False, True])
@pytest.mark.parametrize("bound", [False, True])
def test_graphs_follow_pytorch_step_by_step(variant: str, in_place_caches: bool, bound: bool) -> None:
    """pre/post-norm, sinusoidal/learned positions, relu/gelu, tied/untied, GRU/LSTM, dot/general;
    caches one slot longer each step or written in place; numpy between steps or bound values."""
    spec = MODEL_SPECS[variant]
    torch.manual_seed(0)
    model = build_model(spec).eval()
    src, tgt = random_tokens(3, 7), random_tokens(3, 5, seed=1)
    src[1, 4:] = SPECIAL.pad
    with torch.no_grad():
        expected = torch.log_softmax(model(src, tgt), dim=-1).numpy()
    steps = OnnxSeq2Seq(*sessions_of(spec, model, in_place_caches), bind_to_device=bound).start(src.numpy())
    for position in range(tgt.size(1)):
        np.testing.assert_allclose(steps.step(tgt[:, position].numpy()), expected[:, position], atol=1e-5, rtol=0)


@pytest.mark.parametrize("bound", [False, True])
def test_caches_written_in_place_grow_only_when_full(bound: bool) -> None:
    """A bound decoder's step writes its slot into the buffer it was given; a full buffer grows
    by CACHE_GROWTH_SLOTS; the log-probabilities stay PyTorch's over the growth."""
    spec = MODEL_SPECS["transformer-pre"]
    torch.manual_seed(0)
    model = build_model(spec).eval()
    src, tgt = random_tokens(2, 6), random_tokens(2, CACHE_GROWTH_SLOTS + 4, seed=1)
    with torch.no_grad():
        expected = torch.log_softmax(model(src, tgt), dim=-1).numpy()
    steps = OnnxSeq2Seq(*sessions_of(spec, model, in_place_caches=True), bind_to_device=bound).start(src.numpy())
    name = "past_key_values.0.decoder.key"
    buffers, capacities = [], []
    for position in range(tgt.size(1)):
        np.testing.assert_allclose(steps.step(tgt[:, position].numpy()), expected[:, position], atol=1e-5, rtol=0)
        cache = steps.state[name]
        capacities.append(cache.shape()[2] if bound else cache.shape[2])
        buffers.append(cache.data_ptr() if bound else None)
    assert capacities == [CACHE_GROWTH_SLOTS] * CACHE_GROWTH_SLOTS + [2 * CACHE_GROWTH_SLOTS] * 4
    if bound:  # the same buffer from one growth to the next
        assert len(set(buffers[:CACHE_GROWTH_SLOTS])) == 1 and len(set(buffers[CACHE_GROWTH_SLOTS:])) == 1


@pytest.mark.parametrize("variant", sorted(MODEL_SPECS))
@pytest.mark.parametrize("layer", [0, -1])
def test_the_graphs_attention_equals_pytorchs_and_asking_for_it_changes_nothing_else(variant: str, layer: int) -> None:
    """The cross-attention a step returns when asked (every layer's, averaged over heads, for
    the Transformer; the one attention for the RNN) against the PyTorch model's, and the
    log-probabilities with and without it."""
    spec = MODEL_SPECS[variant]
    torch.manual_seed(0)
    model = build_model(spec).eval()
    sessions = [ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"]) for g in build_graphs(spec, {n: v.numpy() for n, v in model.state_dict().items()})]
    src, tgt = random_tokens(3, 7), random_tokens(3, 5, seed=1)
    src[1, 4:] = SPECIAL.pad
    onnx_model = OnnxSeq2Seq(*sessions, attention_layer=layer)
    asked, unasked = onnx_model.start(src.numpy()), onnx_model.start(src.numpy())
    reference = TorchIncrementalDecoder(model, src, attention_layer=layer)
    asked.output_attentions = reference.output_attentions = True
    for position in range(tgt.size(1)):
        tokens = tgt[:, position].numpy()
        expected_log_probs = reference.step(tokens)
        np.testing.assert_allclose(asked.step(tokens), expected_log_probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(unasked.step(tokens), expected_log_probs, atol=1e-5, rtol=0)
        assert unasked.attention is None
        np.testing.assert_allclose(asked.attention, reference.attention, atol=1e-5, rtol=0)
        np.testing.assert_allclose(asked.attention.sum(axis=-1), 1.0, atol=1e-5)
        assert np.all(asked.attention[1, 4:] == 0)
