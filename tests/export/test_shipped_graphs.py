"""The shipped models' graphs, built again from their checkpoints through the weight spec
(nmt_spec/weights.py): the same nodes and the same weights as the graphs in models/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.graphs import DECODER_FILE, ENCODER_FILE, build_graphs
from nmt_spec.manifest import latest_version
from nmt_spec.weights import fill
from training.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[2]
# Computed, not trained: the shipped graphs hold torch's float32 table of the machine that
# exported them; nmt_spec/positions.py computes it in float64, the same on every machine
# (1.5e-5 apart at the last positions, where float32 rounds the angle).
COMPUTED = {"positions.table": 2e-5}


@pytest.mark.parametrize("model", ["transformer-en-de", "rnn-en-de"])
def test_graphs_built_from_the_filled_spec_equal_the_shipped_ones(model: str) -> None:
    spec, module, _ = load_model(ROOT / "checkpoints" / model / "model.pt")
    weights = fill(spec, {name: value.detach().numpy() for name, value in module.state_dict().items()}, model)
    for built, file in zip(build_graphs(spec, weights), (ENCODER_FILE, DECODER_FILE)):
        shipped = onnx.load(latest_version(ROOT / "models" / model) / file.format(suffix=""))
        assert list(built.graph.node) == list(shipped.graph.node), file
        ours = {tensor.name: numpy_helper.to_array(tensor) for tensor in built.graph.initializer}
        theirs = {tensor.name: numpy_helper.to_array(tensor) for tensor in shipped.graph.initializer}
        assert ours.keys() == theirs.keys(), file
        for name, value in ours.items():
            assert value.dtype == theirs[name].dtype and value.shape == theirs[name].shape, name
            if name in COMPUTED:
                np.testing.assert_allclose(value, theirs[name], rtol=0, atol=COMPUTED[name])
            else:
                assert np.array_equal(value, theirs[name]), name
