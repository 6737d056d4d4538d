"""The shipped models' graphs, built again by the export pipeline's build step from their
checkpoints through the weight spec (nmt_spec/weights.py): every variant the shipped version
holds (the fixed-shape step too) has the same nodes and the same weights as the graphs in models/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.pipeline import build
from export.pytorch_source import load_checkpoint
from nmt_spec.manifest import Manifest, latest_version

ROOT = Path(__file__).resolve().parents[2]
# Computed, not trained: the shipped graphs hold torch's float32 table of the machine that
# exported them; nmt_spec/positions.py computes it in float64, the same on every machine
# (1.5e-5 apart at the last positions, where float32 rounds the angle).
COMPUTED = {"positions.table": 2e-5}


def initializers(path: Path) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(path).graph.initializer}  # shared weights read from beside it


@pytest.mark.parametrize("model", ["transformer-en-de", "rnn-en-de"])
def test_the_build_step_remakes_every_shipped_graph(model: str, tmp_path: Path) -> None:
    shipped = latest_version(ROOT / "models" / model)
    manifest = Manifest.load(shipped, verify_files=False)
    checkpoint = ROOT / "checkpoints" / model / "model.pt"
    source = load_checkpoint(checkpoint)
    variants = tuple(manifest.variants)
    build(source.spec, source.weights, tmp_path, variants, {}, progress=lambda _: None)
    for variant in variants:
        for file in [graph.file for graph in manifest.variants[variant].graphs]:
            assert list(onnx.load(tmp_path / file, load_external_data=False).graph.node) == list(onnx.load(shipped / file, load_external_data=False).graph.node), file
            ours, theirs = initializers(tmp_path / file), initializers(shipped / file)
            assert ours.keys() == theirs.keys(), file
            for name, value in ours.items():
                assert value.dtype == theirs[name].dtype and value.shape == theirs[name].shape, (file, name)
                if name in COMPUTED:
                    np.testing.assert_allclose(value, theirs[name], rtol=0, atol=COMPUTED[name])
                else:
                    assert np.array_equal(value, theirs[name]), (file, name)
