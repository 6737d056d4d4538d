"""Our decoding module's model: the step graphs of one variant, and the incremental decoder that
starts from a batch of sources, on the host (numpy between steps) or bound to the sessions'
device (decoding/bound_decoder.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from decoding.batch_rows import BatchRows
from decoding.bound_decoder import BoundIncrementalDecoder
from decoding.device_rows import DeviceRows
from decoding.graph_io import HostRows, present_name
from decoding.runtime import CUDA
from decoding.step_graphs import StepGraphs
from nmt_spec.graph_names import DECODER_INPUT_IDS, LOG_PROBS, TOP_IDS, TOP_LOG_PROBS


class OnnxSeq2Seq(StepGraphs):
    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        bind_to_device: bool | None = None,
        pad_id: int | None = None,
        attention_layer: int = -1,
    ) -> None:
        """bind_to_device: keep encoder outputs and caches in the sessions' device memory between
        steps (IOBinding); None: on CUDA only, where it saves two host copies per step. The
        rest: StepGraphs'."""
        super().__init__(encoder, decoder, pad_id=pad_id, attention_layer=attention_layer)
        on_cuda = decoder.get_providers()[0] == CUDA
        self.device_rows = None
        if bind_to_device or (bind_to_device is None and on_cuda):
            self.device_rows = DeviceRows("cuda", int(decoder.get_provider_options()[CUDA]["device_id"])) if on_cuda else DeviceRows("cpu")

    def start(self, source_ids: np.ndarray) -> OnnxIncrementalDecoder | BoundIncrementalDecoder:
        """A decoder for a padded (B, S) batch; bound to the device, its tensors stay there."""
        if self.device_rows is not None:
            return BoundIncrementalDecoder(self, source_ids, self.device_rows)
        return OnnxIncrementalDecoder(self, source_ids)


class OnnxIncrementalDecoder(BatchRows):
    """Its tensors are numpy arrays between steps."""

    def __init__(self, model: StepGraphs, source_ids: np.ndarray) -> None:
        constants, state = model.split_encoded(model.encode(source_ids), source_ids.shape[0], lambda zeros: zeros)
        super().__init__(model, HostRows(), constants, state, source_ids.shape[0])

    def step(self, tokens: np.ndarray) -> np.ndarray | None:
        mask = self.next_mask()
        feeds = {DECODER_INPUT_IDS: tokens.reshape(-1, 1).astype(np.int64), **self.model.step_feeds(self.rows, mask, self.output_attentions, self.top_k), **self.constants, **self.state}
        fetches = self.model.step_fetches(self.output_attentions, self.top_k)
        outputs = dict(zip(fetches, self.model.decoder.run(fetches, feeds)))
        self.state = {name: outputs[present_name(name)] for name in self.state}
        self.attention = self.model.attention_of(outputs[self.model.attention_output]) if self.output_attentions else None
        self.rows.advance(mask)
        self.drop_unused_slots()
        if self.top_k:
            self.top = outputs[TOP_IDS], outputs[TOP_LOG_PROBS]
            return None
        return outputs[LOG_PROBS]
