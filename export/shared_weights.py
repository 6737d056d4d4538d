"""Weights that several graphs of a model hold (the tied embedding, the position table: in the
encoder and decoder of fp32 and of int8) stored once, in one external-data file beside them: a
2.35M-parameter Transformer's graphs hold its 8k x 128 embedding four times otherwise."""

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
    """Initializers of the same name and value in two or more graphs of `paths` (of one
    directory) moved into SHARED_WEIGHTS_FILE, each of those graphs pointing at the one copy;
    returns the names moved (none: no file written)."""
    models = [onnx.load(path) for path in paths]
    tables = [{tensor.name: tensor for tensor in model.graph.initializer} for model in models]
    shared: list[tuple[str, bytes, list[int]]] = []  # name, bytes, the graphs that hold them
    for name in sorted({name for table in tables for name in table}):
        holders = [index for index, table in enumerate(tables) if name in table]
        if len(holders) < 2:
            continue
        arrays = [numpy_helper.to_array(tables[index][name]) for index in holders]
        same = [index for index, array in zip(holders, arrays) if array.dtype == arrays[0].dtype and np.array_equal(array, arrays[0])]
        if len(same) >= 2 and arrays[0].nbytes >= SMALLEST_SHARED_BYTES:
            shared.append((name, np.ascontiguousarray(arrays[0]).tobytes(), same))
    if not shared:
        return []
    changed = set()
    with open(paths[0].parent / SHARED_WEIGHTS_FILE, "wb") as file:
        for name, data, holders in shared:
            file.write(b"\0" * (-file.tell() % ALIGNMENT))
            offset = file.tell()
            file.write(data)
            for index in holders:
                tensor = tables[index][name]
                if not tensor.HasField("raw_data"):  # set_external_data insists on it
                    tensor.raw_data = data
                set_external_data(tensor, SHARED_WEIGHTS_FILE, offset, len(data))
                tensor.ClearField("raw_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
                changed.add(index)
    for index in sorted(changed):
        onnx.save(models[index], paths[index])
    return [name for name, _, _ in shared]
