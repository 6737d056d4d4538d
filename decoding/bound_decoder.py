"""The incremental decoder whose tensors stay where its session computes (IOBinding): on CUDA,
encoder outputs and caches stay in GPU memory. Each step only token ids go to the device and the
selected tokens (or log-probabilities) come back; beams reordered, finished rows dropped and
newcomers joining are row operations on the device (decoding/device_rows.py). The same code binds
to CPU memory too, which is how machines without a GPU test it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from decoding.batch_rows import BatchRows
from decoding.device_rows import DeviceRows
from decoding.graph_io import present_name
from decoding.step_graphs import StepGraphs
from nmt_spec.graph_names import (
    DECODER_INPUT_IDS,
    ENCODER_INPUT_IDS,
    LOG_PROBS,
    TOP_IDS,
    TOP_LOG_PROBS,
)

# Cache slots left empty by rows that finished are dropped once there are this many: each drop
# copies every cache (on the device), and a masked slot costs a step little.
DROP_UNUSED_SLOTS_AT = 16


class BoundIncrementalDecoder(BatchRows):
    def __init__(self, model: StepGraphs, source_ids: np.ndarray, rows: DeviceRows) -> None:
        self.device, self.device_id = rows.device, rows.device_id
        binding = model.encoder.io_binding()
        binding.bind_cpu_input(ENCODER_INPUT_IDS, np.ascontiguousarray(source_ids, dtype=np.int64))
        for name in model.encoder_outputs:
            binding.bind_output(name, self.device, self.device_id)
        model.encoder.run_with_iobinding(binding)
        encoded = dict(zip(model.encoder_outputs, binding.get_outputs()))
        constants, state = model.split_encoded(encoded, source_ids.shape[0], self.to_device)
        super().__init__(model, rows, constants, state, source_ids.shape[0])

    def to_device(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, self.device_id)

    def step(self, tokens: np.ndarray) -> np.ndarray | None:
        decoder = self.model.decoder
        binding = decoder.io_binding()
        binding.bind_cpu_input(DECODER_INPUT_IDS, np.ascontiguousarray(tokens.reshape(-1, 1), dtype=np.int64))
        mask = self.next_mask()
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
        self.drop_unused_slots(at_least=DROP_UNUSED_SLOTS_AT if self.model.takes_decoder_mask else 1)
        if self.top_k:
            self.top = outputs[TOP_IDS].numpy(), outputs[TOP_LOG_PROBS].numpy()
            return None
        return outputs[LOG_PROBS].numpy()
