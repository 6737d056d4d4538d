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


@pytest.mark.parametrize("variant", sorted(MODEL_SPECS))
def test_graphs_follow_pytorch_step_by_step(variant: str) -> None:
    """pre/post-norm, sinusoidal/learned positions, relu/gelu, tied/untied, GRU/LSTM, dot/general."""
    spec = MODEL_SPECS[variant]
    torch.manual_seed(0)
    model = build_model(spec).eval()
    encoder, decoder = build_graphs(spec, {name: value.numpy() for name, value in model.state_dict().items()})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(g.SerializeToString(), options, providers=["CPUExecutionProvider"]) for g in (encoder, decoder)]
    src, tgt = random_tokens(3, 7), random_tokens(3, 5, seed=1)
    src[1, 4:] = SPECIAL.pad
    with torch.no_grad():
        expected = torch.log_softmax(model(src, tgt), dim=-1).numpy()
    steps = OnnxSeq2Seq(*sessions).start(src.numpy())
    for position in range(tgt.size(1)):
        np.testing.assert_allclose(steps.step(tgt[:, position].numpy()), expected[:, position], atol=1e-5, rtol=0)
