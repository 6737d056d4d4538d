"""An encoder and a decoder-step graph run as an IncrementalDecoder.

Which decoder input is what follows from the names (nmt_spec.graph_names): inputs the encoder
also outputs are constant for a sentence; a past_* input is fed from the present_* output of
the previous step (or, for the first step, of the encoder, or else an empty cache)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from decoding.cuda_decoder import CudaIncrementalDecoder, DeviceRowSelector
from decoding.graph_io import initial_cache_shape, present_name
from decoding.runtime import CUDA
from nmt_spec.graph_names import DECODER_INPUT_IDS, ENCODER_INPUT_IDS, LOGITS, STEP


class OnnxSeq2Seq:
    """The two sessions of one model variant."""

    def __init__(self, encoder: ort.InferenceSession, decoder: ort.InferenceSession) -> None:
        self.encoder = encoder
        self.decoder = decoder
        encoder_outputs = {o.name for o in encoder.get_outputs()}
        self.decoder_outputs = [o.name for o in decoder.get_outputs()]
        self.constant_inputs: list[str] = []
        self.state_inputs: dict[str, list[int | str]] = {}  # past_* name -> declared shape
        self.takes_step = False
        for graph_input in decoder.get_inputs():
            name = graph_input.name
            if name == DECODER_INPUT_IDS:
                continue
            if name == STEP:
                self.takes_step = True
            elif name in encoder_outputs:
                self.constant_inputs.append(name)
            else:
                self.state_inputs[name] = graph_input.shape
        self.initial_state_from_encoder = {name: present_name(name) for name in self.state_inputs if present_name(name) in encoder_outputs}
        on_cuda = decoder.get_providers()[0] == CUDA
        self.row_selector = DeviceRowSelector(int(decoder.get_provider_options()[CUDA]["device_id"])) if on_cuda else None

    def split_encoded(self, encoded: dict, batch: int, empty_cache) -> tuple[dict, dict]:
        """The decoder's constant inputs and first state from the encoder's outputs; caches that
        the encoder does not provide start empty (empty_cache makes one from its shape)."""
        constants = {name: encoded[name] for name in self.constant_inputs}
        state = {
            name: encoded[self.initial_state_from_encoder[name]] if name in self.initial_state_from_encoder else empty_cache(initial_cache_shape(shape, batch))
            for name, shape in self.state_inputs.items()
        }
        return constants, state

    def start(self, source_ids: np.ndarray) -> OnnxIncrementalDecoder | CudaIncrementalDecoder:
        """A decoder for a padded (B, S) batch; on CUDA its tensors stay on the device."""
        if self.row_selector is not None:
            return CudaIncrementalDecoder(self, source_ids, self.row_selector)
        return OnnxIncrementalDecoder(self, source_ids)


class OnnxIncrementalDecoder:
    def __init__(self, model: OnnxSeq2Seq, source_ids: np.ndarray) -> None:
        self.model = model
        names = [o.name for o in model.encoder.get_outputs()]
        encoded = dict(zip(names, model.encoder.run(None, {ENCODER_INPUT_IDS: source_ids})))
        self.constants, self.state = model.split_encoded(encoded, source_ids.shape[0], lambda shape: np.zeros(shape, dtype=np.float32))

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        feeds = {DECODER_INPUT_IDS: tokens.reshape(-1, 1).astype(np.int64), **self.constants, **self.state}
        if self.model.takes_step:
            feeds[STEP] = np.array([position], dtype=np.int64)
        outputs = dict(zip(self.model.decoder_outputs, self.model.decoder.run(None, feeds)))
        self.state = {name: outputs[present_name(name)] for name in self.state}
        return outputs[LOGITS]

    def select(self, rows: np.ndarray) -> None:
        self.constants = {name: value[rows] for name, value in self.constants.items()}
        self.state = {name: value[rows] for name, value in self.state.items()}
