"""Weights that both graphs of a model hold (the tied embedding, the position table) stored once,
in one external-data file beside them: a 2.35M-parameter Transformer's fp32 graphs hold its 8k x
128 embedding twice otherwise, 4 MB of its 13."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data

SHARED_WEIGHTS_FILE = "shared_weights.bin"
SMALLEST_SHARED_BYTES = 4096  # smaller tensors stay inside their graphs (fewer reads at load)
ALIGNMENT = 4096  # offsets on page boundaries, so a reader may map the file


def store_shared_weights_once(paths: list[Path]) -> list[str]:
    """Initializers of the same name and value in every graph of `paths` moved into
    SHARED_WEIGHTS_FILE (in their directory), each graph pointing at the one copy; returns the
    names moved (none: no file written)."""
    models = [onnx.load(path) for path in paths]
    tables = [{tensor.name: tensor for tensor in model.graph.initializer} for model in models]
    names = sorted(set.intersection(*(set(table) for table in tables)))
    shared = []
    for name in names:
        arrays = [numpy_helper.to_array(table[name]) for table in tables]
        if arrays[0].nbytes >= SMALLEST_SHARED_BYTES and all(a.dtype == arrays[0].dtype and np.array_equal(a, arrays[0]) for a in arrays[1:]):
            shared.append((name, np.ascontiguousarray(arrays[0]).tobytes()))
    if not shared:
        return []
    with open(paths[0].parent / SHARED_WEIGHTS_FILE, "wb") as file:
        for name, data in shared:
            file.write(b"\0" * (-file.tell() % ALIGNMENT))
            offset = file.tell()
            file.write(data)
            for table in tables:
                tensor = table[name]
                if not tensor.HasField("raw_data"):  # set_external_data insists on it
                    tensor.raw_data = data
                set_external_data(tensor, SHARED_WEIGHTS_FILE, offset, len(data))
                tensor.ClearField("raw_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
    for model, path in zip(models, paths):
        onnx.save(model, path)
    return [name for name, _ in shared]
