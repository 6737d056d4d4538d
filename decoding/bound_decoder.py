"""The incremental decoder whose tensors stay where its session computes (IOBinding): on CUDA,
encoder outputs and caches stay in GPU memory. Each step only token ids go to the device and
log-probabilities come back; beam reordering and finished sentences leaving the batch are Gathers
on the device. The same code binds to CPU memory too, which is how machines without a GPU test it."""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from decoding.graph_io import RowPositions, concat_rows, place_rows, present_name
from decoding.runtime import CPU, CUDA
from decoding.step_graphs import StepGraphs
from nmt_spec.graph_names import (
    DECODER_INPUT_IDS,
    ENCODER_INPUT_IDS,
    LOG_PROBS,
    TOP_IDS,
    TOP_LOG_PROBS,
)

# Cache slots left empty by rows that finished are dropped once there are this many: each drop
# is a round trip through host memory.
DROP_UNUSED_SLOTS_AT = 16
ELEMENT_TYPES = {"tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16, "tensor(int32)": TensorProto.INT32}


def _row_gather_model(element_type: int) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Gather", ["data", "rows"], ["selected"], axis=0)],
        "select_rows",
        [helper.make_tensor_value_info("data", element_type, None), helper.make_tensor_value_info("rows", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("selected", element_type, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


class DeviceRowSelector:
    """Gather along the batch axis without leaving the device, one small session per element type."""

    def __init__(self, device: Literal["cuda", "cpu"] = "cuda", device_id: int = 0) -> None:
        self.device = device
        self.device_id = device_id
        self.providers = [(CUDA, {"device_id": str(device_id)})] if device == "cuda" else [CPU]
        self.sessions: dict[str, ort.InferenceSession] = {}

    def select(self, value: ort.OrtValue, rows: ort.OrtValue) -> ort.OrtValue:
        element_type = value.data_type()
        if element_type not in self.sessions:
            self.sessions[element_type] = ort.InferenceSession(_row_gather_model(ELEMENT_TYPES[element_type]), providers=self.providers)
        session = self.sessions[element_type]
        binding = session.io_binding()
        binding.bind_ortvalue_input("data", value)
        binding.bind_ortvalue_input("rows", rows)
        binding.bind_output("selected", self.device, self.device_id)
        session.run_with_iobinding(binding)
        return binding.get_outputs()[0]


class BoundIncrementalDecoder:
    def __init__(self, model: StepGraphs, source_ids: np.ndarray, selector: DeviceRowSelector) -> None:
        self.model = model
        self.selector = selector
        self.device, self.device_id = selector.device, selector.device_id
        binding = model.encoder.io_binding()
        binding.bind_cpu_input(ENCODER_INPUT_IDS, np.ascontiguousarray(source_ids, dtype=np.int64))
        for name in model.encoder_outputs:
            binding.bind_output(name, self.device, self.device_id)
        model.encoder.run_with_iobinding(binding)
        encoded = dict(zip(model.encoder_outputs, binding.get_outputs()))
        self.constants, self.state = model.split_encoded(
            encoded,
            source_ids.shape[0],
            self.to_device,
        )
        self.rows = RowPositions(source_ids.shape[0])
        self.output_attentions = False
        self.attention: np.ndarray | None = None
        self.selects_tokens = model.selects_tokens
        self.top_k = 0
        self.top: tuple[np.ndarray, np.ndarray] | None = None

    def to_device(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, self.device_id)

    def step(self, tokens: np.ndarray) -> np.ndarray | None:
        decoder = self.model.decoder
        binding = decoder.io_binding()
        binding.bind_cpu_input(DECODER_INPUT_IDS, np.ascontiguousarray(tokens.reshape(-1, 1), dtype=np.int64))
        mask = self.rows.next_mask()
        for name, value in self.model.step_feeds(self.rows, mask, self.output_attentions, self.top_k).items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name, value in (self.constants | self.state).items():
            binding.bind_ortvalue_input(name, value)
        to_host = set(self.model.step_fetches(self.output_attentions, self.top_k)) - {present_name(name) for name in self.state}
        for name in self.model.decoder_outputs:
            if name in to_host:
                binding.bind_output(name)  # to the host: the search reads it
            else:
                binding.bind_output(name, self.device, self.device_id)
        decoder.run_with_iobinding(binding)
        outputs = dict(zip(self.model.decoder_outputs, binding.get_outputs()))
        self.state = {name: outputs[present_name(name)] for name in self.state}
        self.attention = self.model.attention_of(outputs[self.model.attention_output].numpy()) if self.output_attentions else None
        self.rows.advance(mask)
        unused = self.rows.unused_leading_slots()
        if unused and (unused >= DROP_UNUSED_SLOTS_AT or not self.model.takes_decoder_mask):
            self.rows.drop_leading(unused)
            self.state = {
                name: self.to_device(self.model.drop_leading_slots(name, value.numpy(), unused)) if self.model.pads_at_start(name) else value
                for name, value in self.state.items()
            }
        if self.top_k:
            self.top = outputs[TOP_IDS].numpy(), outputs[TOP_LOG_PROBS].numpy()
            return None
        return outputs[LOG_PROBS].numpy()

    def select(self, rows: np.ndarray) -> None:
        on_device = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(rows, dtype=np.int64), self.device, self.device_id)
        if not self.rows.sentences_after(rows):  # beams reordered within their sentences keep them
            self.constants = {name: self.selector.select(value, on_device) for name, value in self.constants.items()}
        self.state = {name: self.selector.select(value, on_device) for name, value in self.state.items()}
        self.rows.select(rows)

    def extend(self, other: BoundIncrementalDecoder) -> None:
        """Through host memory: newcomers join a running batch a few times per second at most."""

        def joined(name: str, first: ort.OrtValue, second: ort.OrtValue) -> ort.OrtValue:
            return self.to_device(concat_rows(first.numpy(), second.numpy(), self.model.padding[name]))

        self.constants = {name: joined(name, value, other.constants[name]) for name, value in self.constants.items()}
        self.state = {name: joined(name, value, other.state[name]) for name, value in self.state.items()}
        self.rows.extend(other.rows)

    def place(self, rows: np.ndarray, other: BoundIncrementalDecoder) -> None:
        def placed(name: str, target: ort.OrtValue, incoming: ort.OrtValue) -> ort.OrtValue:
            return self.to_device(place_rows(target.numpy(), rows, incoming.numpy(), self.model.padding[name]))

        self.constants = {name: placed(name, value, other.constants[name]) for name, value in self.constants.items()}
        self.state = {name: placed(name, value, other.state[name]) for name, value in self.state.items()}
        self.rows.place(rows, other.rows)
