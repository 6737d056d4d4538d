"""Row operations on a running batch's tensors where they live (GPU memory, or CPU memory bound
to ONNX Runtime values): beams reordered and finished rows dropped (Gather), newcomers appended
(Pad, Concat) or written into the slots of rows that left (ScatterND), cache slots no row uses
any more cut off (Slice); rows of a tensor at a fixed address overwritten in place (ScatterND
bound to its own input: a captured CUDA graph keeps reading the same memory). Each is a one-node ONNX
Runtime graph on the decoder's device, so the tensors never make a round trip through host
memory; only the small index arrays travel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from decoding.graph_io import Padding
from decoding.runtime import CPU, CUDA

ELEMENT_TYPES = {
    "tensor(float)": TensorProto.FLOAT,
    "tensor(float16)": TensorProto.FLOAT16,
    "tensor(int32)": TensorProto.INT32,
    "tensor(int64)": TensorProto.INT64,
    "tensor(bool)": TensorProto.BOOL,
}
INDEX = TensorProto.INT64
INDEX_INPUTS = {"rows", "pads", "starts", "ends", "axes"}


def _one_node(op_type: str, element_type: int, inputs: list[str], **attributes: object) -> bytes:
    """A graph of one node; its inputs in node order, those named in INDEX_INPUTS int64, the
    others tensors of the element type."""
    graph = helper.make_graph(
        [helper.make_node(op_type, inputs, ["out"], **attributes)],
        op_type.lower(),
        [helper.make_tensor_value_info(name, INDEX if name in INDEX_INPUTS else element_type, None) for name in inputs],
        [helper.make_tensor_value_info("out", element_type, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


OPERATIONS: dict[str, Callable[[int], bytes]] = {
    "gather": lambda element_type: _one_node("Gather", element_type, ["data", "rows"], axis=0),
    "pad": lambda element_type: _one_node("Pad", element_type, ["data", "pads"], mode="constant"),
    "concat": lambda element_type: _one_node("Concat", element_type, ["first", "second"], axis=0),
    "scatter": lambda element_type: _one_node("ScatterND", element_type, ["data", "rows", "updates"]),
    "slice": lambda element_type: _one_node("Slice", element_type, ["data", "starts", "ends", "axes"]),
}


class DeviceRows:
    """The row operations a running batch needs, on tensors of one device: one small session per
    operation and element type, made when first needed."""

    def __init__(self, device: Literal["cuda", "cpu"] = "cuda", device_id: int = 0) -> None:
        self.device = device
        self.device_id = device_id
        self.providers = [(CUDA, {"device_id": str(device_id)})] if device == "cuda" else [CPU]
        self.sessions: dict[tuple[str, str], ort.InferenceSession] = {}

    def _run(self, operation: str, tensors: dict[str, ort.OrtValue], indices: dict[str, np.ndarray], into: ort.OrtValue | None = None) -> ort.OrtValue:
        element_type = next(iter(tensors.values())).data_type()
        key = (operation, element_type)
        if key not in self.sessions:
            self.sessions[key] = ort.InferenceSession(OPERATIONS[operation](ELEMENT_TYPES[element_type]), providers=self.providers)
        binding = self.sessions[key].io_binding()
        for name, value in tensors.items():
            binding.bind_ortvalue_input(name, value)
        for name, array in indices.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array, dtype=np.int64))
        if into is None:
            binding.bind_output("out", self.device, self.device_id)
        else:
            binding.bind_ortvalue_output("out", into)
        self.sessions[key].run_with_iobinding(binding)
        return into if into is not None else binding.get_outputs()[0]

    def shape(self, value: ort.OrtValue) -> list[int]:
        return value.shape()

    def select(self, value: ort.OrtValue, rows: np.ndarray) -> ort.OrtValue:
        """These rows, in this order (repeats allowed)."""
        return self._run("gather", {"data": value}, {"rows": rows})

    def pad_to(self, value: ort.OrtValue, padding: Padding | None, length: int) -> ort.OrtValue:
        """Zeros added along the padded axis, at its start or end, up to length."""
        shape = value.shape()
        if padding is None or shape[padding.axis] >= length:
            return value
        pads = np.zeros(2 * len(shape), dtype=np.int64)
        pads[padding.axis + (0 if padding.at_start else len(shape))] = length - shape[padding.axis]
        return self._run("pad", {"data": value}, {"pads": pads})

    def _alike(self, first: ort.OrtValue, second: ort.OrtValue, padding: Padding | None) -> tuple[ort.OrtValue, ort.OrtValue]:
        if padding is None:
            return first, second
        length = max(first.shape()[padding.axis], second.shape()[padding.axis])
        return self.pad_to(first, padding, length), self.pad_to(second, padding, length)

    def concat(self, first: ort.OrtValue, second: ort.OrtValue, padding: Padding | None) -> ort.OrtValue:
        """The rows of both, zero-padded to a common length along the padded axis."""
        first, second = self._alike(first, second, padding)
        return self._run("concat", {"first": first, "second": second}, {})

    def place(self, target: ort.OrtValue, rows: np.ndarray, incoming: ort.OrtValue, padding: Padding | None) -> ort.OrtValue:
        """target with these rows replaced by incoming's, both padded to a common length first."""
        target, incoming = self._alike(target, incoming, padding)
        return self._run("scatter", {"data": target, "updates": incoming}, {"rows": np.asarray(rows).reshape(-1, 1)})

    def overwrite(self, target: ort.OrtValue, rows: np.ndarray, incoming: ort.OrtValue | np.ndarray) -> None:
        """These rows of target replaced by incoming's (same shape but the rows), in place."""
        if isinstance(incoming, np.ndarray):
            incoming = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(incoming), self.device, self.device_id)
        self._run("scatter", {"data": target, "updates": incoming}, {"rows": np.asarray(rows).reshape(-1, 1)}, into=target)

    def slice(self, value: ort.OrtValue, axis: int, start: int, end: int | None) -> ort.OrtValue:
        """Slots start to end (None: the last) of one axis."""
        stop = np.iinfo(np.int64).max if end is None else end
        return self._run("slice", {"data": value}, {"starts": np.array([start]), "ends": np.array([stop]), "axes": np.array([axis])})
