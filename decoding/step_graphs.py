"""What the inputs and outputs of an encoder and a decoder-step graph are, for the incremental
decoders that run them.

Which decoder input is what follows from the names (nmt_spec.graph_names): inputs the encoder
also outputs are constant for a sentence; a past_* input is fed from the present_* output of
the previous step (or, for the first step, of the encoder, or else an empty cache)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from decoding.graph_io import Padding, RowOps, RowPositions, initial_cache_shape, length_groups, padding_of, present_name, stack_rows
from nmt_spec.graph_names import (
    ATTENTION_WEIGHTS,
    CROSS_ATTENTIONS,
    DECODER_INPUT_IDS,
    DECODER_MASK,
    ENCODER_INPUT_IDS,
    LOG_PROBS,
    OUTPUT_ATTENTIONS,
    OUTPUT_LOG_PROBS,
    POSITION_IDS,
    TOP_IDS,
    TOP_K,
    TOP_LOG_PROBS,
)

# What one more encoder call costs, in padded source tokens of work.
ENCODER_CALL_COST_TOKENS = 64


class StepGraphs:
    """The encoder and decoder-step sessions of one model variant: which input is what, what a
    step feeds and fetches, and the encoder's outputs as a decoder's first state."""

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        pad_id: int | None = None,
        attention_layer: int = -1,
    ) -> None:
        """pad_id: the padding of source batches; given, a batch of mixed lengths is encoded in
        groups of similar length (on the host).
        attention_layer: the decoder layer (an index, -1 the last) whose cross-attention a step
        returns when asked, for graphs that have one per layer."""
        self.encoder = encoder
        self.decoder = decoder
        self.pad_id = pad_id
        self.attention_layer = attention_layer
        self.encoder_outputs = [o.name for o in encoder.get_outputs()]
        self.encoder_padding = {o.name: padding_of(o.shape) for o in encoder.get_outputs()}
        encoder_outputs = set(self.encoder_outputs)
        self.decoder_outputs = [o.name for o in decoder.get_outputs()]
        self.constant_inputs: list[str] = []
        self.state_inputs: dict[str, list[int | str]] = {}  # past_* name -> declared shape
        self.state_dtypes: dict[str, np.dtype] = {}  # fp16 graphs keep their caches in fp16
        self.padding: dict[str, Padding | None] = {}
        decoder_inputs = {i.name: i.shape for i in decoder.get_inputs()}
        input_types = {i.name: i.type for i in decoder.get_inputs()}
        self.takes_positions = POSITION_IDS in decoder_inputs
        self.takes_decoder_mask = DECODER_MASK in decoder_inputs
        self.takes_attention_switch = OUTPUT_ATTENTIONS in decoder_inputs
        self.takes_top_k = TOP_K in decoder_inputs  # graphs exported before it have none
        self.takes_log_probs_switch = OUTPUT_LOG_PROBS in decoder_inputs  # before it, log_probs always came out
        self.selects_tokens = self.takes_top_k  # steps may read only the best tokens (a switch, for comparisons)
        # The RNN's attention is part of its step; the Transformer's is computed when asked.
        self.attention_output = next((name for name in (CROSS_ATTENTIONS, ATTENTION_WEIGHTS) if name in self.decoder_outputs), None)
        for name, shape in decoder_inputs.items():
            if name in (DECODER_INPUT_IDS, POSITION_IDS, DECODER_MASK, OUTPUT_ATTENTIONS, OUTPUT_LOG_PROBS, TOP_K):
                continue
            if name in encoder_outputs:
                self.constant_inputs.append(name)
            else:
                self.state_inputs[name] = shape
                self.state_dtypes[name] = np.dtype(np.float16 if input_types[name] == "tensor(float16)" else np.float32)
            self.padding[name] = padding_of(shape)
        self.initial_state_from_encoder = {name: present_name(name) for name in self.state_inputs if present_name(name) in encoder_outputs}

    def encode(self, source_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The encoder's outputs for a padded (B, S) batch. Sentences arrive in any order, and a
        batch padded to its longest sentence doubles the encoder's work (test2016 in batches of
        64 as it comes: 1.98x the real tokens); groups of similar length are encoded apart and
        their outputs padded back together."""
        lengths = (source_ids != self.pad_id).sum(axis=1) if self.pad_id is not None else None
        groups = length_groups(lengths, ENCODER_CALL_COST_TOKENS) if lengths is not None else []
        if len(groups) <= 1:  # lengths alike, or padding unknown: the batch as it is
            return dict(zip(self.encoder_outputs, self.encoder.run(None, {ENCODER_INPUT_IDS: source_ids})))
        parts = [self.encoder.run(None, {ENCODER_INPUT_IDS: source_ids[group, : lengths[group[-1]]]}) for group in groups]
        original_order = np.argsort(np.concatenate(groups))
        return {
            name: stack_rows([part[index] for part in parts], self.encoder_padding[name])[original_order]
            for index, name in enumerate(self.encoder_outputs)
        }

    def split_encoded(self, encoded: dict, batch: int, empty_cache) -> tuple[dict, dict]:
        """The decoder's constant inputs and first state from the encoder's outputs; caches that
        the encoder does not provide start empty (empty_cache makes one from a numpy array of zeros)."""
        constants = {name: encoded[name] for name in self.constant_inputs}
        state = {
            name: encoded[self.initial_state_from_encoder[name]]
            if name in self.initial_state_from_encoder
            else empty_cache(np.zeros(initial_cache_shape(shape, batch), dtype=self.state_dtypes[name]))
            for name, shape in self.state_inputs.items()
        }
        return constants, state

    def step_feeds(self, rows: RowPositions, mask: np.ndarray, output_attentions: bool, top_k: int) -> dict[str, np.ndarray]:
        """The inputs that place each row (its position, and this step's cache mask) and say
        whether to compute the attention and how many best tokens to select."""
        feeds = {}
        if self.takes_top_k:
            feeds[TOP_K] = np.array([max(top_k, 1)], dtype=np.int64)
        if self.takes_log_probs_switch:
            feeds[OUTPUT_LOG_PROBS] = np.array(not top_k)
        if self.takes_positions:
            feeds[POSITION_IDS] = rows.positions.reshape(-1, 1)
        if self.takes_decoder_mask:
            feeds[DECODER_MASK] = mask
        if self.takes_attention_switch:
            feeds[OUTPUT_ATTENTIONS] = np.array(output_attentions)
        return feeds

    def step_fetches(self, output_attentions: bool, top_k: int) -> list[str]:
        """The decoder outputs a step reads: the new state, then the distribution or the best
        top_k tokens (only those leave the session), then the attention when asked."""
        fetches = [present_name(name) for name in self.state_inputs]
        fetches += [TOP_IDS, TOP_LOG_PROBS] if top_k else [LOG_PROBS]
        return fetches + ([self.attention_output] if output_attentions else [])

    @property
    def has_attention(self) -> bool:
        return self.attention_output is not None

    def attention_of(self, output: np.ndarray) -> np.ndarray:
        """(rows, S) float32: this step's attention over the source, from the graph's output."""
        chosen = output[:, self.attention_layer] if self.attention_output == CROSS_ATTENTIONS else output
        return chosen.astype(np.float32, copy=False)

    def pads_at_start(self, name: str) -> bool:
        """A self-attention cache: its first slots are the oldest, dropped once no row uses them."""
        padding = self.padding[name]
        return padding is not None and padding.at_start

    def drop_leading_slots(self, state: dict, ops: RowOps, count: int) -> dict:
        """The caches without their first count slots, which no row attends to any more."""
        return {name: ops.slice(value, self.padding[name].axis, count, None) if self.pads_at_start(name) else value for name, value in state.items()}
