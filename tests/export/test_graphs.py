"""The graph builders against PyTorch, for every architecture variant the configs allow."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from decoding.onnx_decoder import OnnxSeq2Seq
from export.graphs import build_graphs
from tests.training.conftest import MODEL_SPECS, SPECIAL, random_tokens
from training.models import build_model
from training.search import TorchIncrementalDecoder


def sessions_of(spec, model: torch.nn.Module) -> list[ort.InferenceSession]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    graphs = build_graphs(spec, {name: value.numpy() for name, value in model.state_dict().items()})
    return [ort.InferenceSession(g.SerializeToString(), options, providers=["CPUExecutionProvider"]) for g in graphs]


@pytest.mark.parametrize("variant", sorted(MODEL_SPECS))
@pytest.mark.parametrize("bound", [False, True])
def test_graphs_follow_pytorch_step_by_step(variant: str, bound: bool) -> None:
    """pre/post-norm, sinusoidal/learned positions, relu/gelu, tied/untied, GRU/LSTM, dot/general;
    numpy between steps or bound values."""
    spec = MODEL_SPECS[variant]
    torch.manual_seed(0)
    model = build_model(spec).eval()
    src, tgt = random_tokens(3, 7), random_tokens(3, 5, seed=1)
    src[1, 4:] = SPECIAL.pad
    with torch.no_grad():
        expected = torch.log_softmax(model(src, tgt), dim=-1).numpy()
    steps = OnnxSeq2Seq(*sessions_of(spec, model), bind_to_device=bound).start(src.numpy())
    for position in range(tgt.size(1)):
        np.testing.assert_allclose(steps.step(tgt[:, position].numpy()), expected[:, position], atol=1e-5, rtol=0)


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
