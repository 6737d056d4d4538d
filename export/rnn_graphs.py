"""ONNX graphs of the attention RNN: an encoder, and a decoder step carrying the RNN state.

The recurrences are ONNX GRU/LSTM nodes (PyTorch's gate layout reordered to ONNX's), the
attention is written out as in the model: dot scores, masked softmax, weighted sum."""

from __future__ import annotations

import numpy as np
import onnx

from export.graph_builder import FLOAT, INT32, INT64, GraphBuilder
from nmt_spec import ModelSpec, RNNConfig
from nmt_spec.graph_names import (
    ATTENTION_WEIGHTS,
    DECODER_INPUT_IDS,
    ENCODER_HIDDEN_STATES,
    ENCODER_INPUT_IDS,
    ENCODER_MASK,
    RNN_PAST_CELL,
    RNN_PAST_HIDDEN,
    RNN_PRESENT_CELL,
    RNN_PRESENT_HIDDEN,
)

Weights = dict[str, np.ndarray]

# Gate blocks of torch's weight_ih/weight_hh, in the order ONNX wants them.
# torch GRU: r, z, n -> ONNX: z, r, h.   torch LSTM: i, f, g, o -> ONNX: i, o, f, c.
GATE_ORDER = {"gru": [1, 0, 2], "lstm": [0, 3, 1, 2]}


def _reorder_gates(array: np.ndarray, cell: str) -> np.ndarray:
    blocks = np.split(array, len(GATE_ORDER[cell]), axis=0)
    return np.concatenate([blocks[i] for i in GATE_ORDER[cell]], axis=0)


class _RNNGraph:
    def __init__(self, spec: ModelSpec, weights: Weights, name: str) -> None:
        assert isinstance(spec.config, RNNConfig)
        self.config: RNNConfig = spec.config
        self.spec = spec
        self.weights = weights
        self.g = GraphBuilder(name)

    def rnn_layer(self, x: str, module: str, layer: int, directions: int, initial: list[str], sequence_lengths: str, hidden_size: int) -> list[str]:
        """One ONNX GRU/LSTM layer over x (S, B, in); returns Y (S, dirs, B, h), Y_h[, Y_c]."""
        g, cell = self.g, self.config.cell
        suffixes = [f"_l{layer}"] + ([f"_l{layer}_reverse"] if directions == 2 else [])
        W = np.stack([_reorder_gates(self.weights[f"{module}.weight_ih{s}"], cell) for s in suffixes])
        R = np.stack([_reorder_gates(self.weights[f"{module}.weight_hh{s}"], cell) for s in suffixes])
        B = np.stack([np.concatenate([_reorder_gates(self.weights[f"{module}.bias_ih{s}"], cell), _reorder_gates(self.weights[f"{module}.bias_hh{s}"], cell)]) for s in suffixes])
        prefix = f"{module}.layer{layer}"
        inputs = [x, g.constant(f"{prefix}.W", W), g.constant(f"{prefix}.R", R), g.constant(f"{prefix}.B", B), sequence_lengths, *initial]
        attributes: dict[str, object] = {"hidden_size": hidden_size, "direction": "bidirectional" if directions == 2 else "forward"}
        if cell == "gru":
            attributes["linear_before_reset"] = 1  # torch applies the reset gate after the hidden matmul
            return g.op("GRU", inputs, outputs=2, **attributes)
        return g.op("LSTM", inputs, outputs=3, **attributes)

    def embed(self, ids: str, embedding: str) -> str:
        return self.g.op("Gather", [self.g.constant(f"{embedding}.weight", self.weights[f"{embedding}.weight"]), ids])


def build_encoder(spec: ModelSpec, weights: Weights) -> onnx.ModelProto:
    """input_ids (B, S) -> encoder_hidden_states (B, S, H), encoder_attention_mask (B, S) int32
    and the decoder's initial state present_hidden (B, layers, H) (and present_cell, for an LSTM)."""
    r = _RNNGraph(spec, weights, "encoder")
    g, config = r.g, r.config
    ids = g.input(ENCODER_INPUT_IDS, INT64, ["batch_size", "encoder_sequence_length"])
    mask = g.op("Cast", [g.op("Not", [g.op("Equal", [ids, g.constant("pad_id", np.array(spec.special_ids.pad, np.int64))])])], to=INT32)
    lengths = g.op("ReduceSum", [mask, g.constant("axis_one", np.array([1], np.int64))], keepdims=0)
    if config.tie_embeddings:  # the decoder's (E, V) output matrix, so both graphs can share one copy
        embedded = g.tied_embedding(ids, g.constant("output_proj.weight", weights["output_proj.weight"].T))
    else:
        embedded = r.embed(ids, "src_embed")
    x = g.op("Transpose", [embedded], perm=[1, 0, 2])  # (S, B, E)
    directions = 2 if config.bidirectional else 1
    merge = g.constant("merge_directions", np.array([0, 0, -1], np.int64))
    for layer in range(config.encoder_layers):
        y = r.rnn_layer(x, "encoder_rnn", layer, directions, [], lengths, config.hidden_size // directions)[0]
        # (S, dirs, B, h) -> (S, B, dirs * h): forward then backward features, as torch concatenates them
        x = g.op("Reshape", [g.op("Transpose", [y], perm=[0, 2, 1, 3]), merge])
    memory = g.op("Transpose", [x], perm=[1, 0, 2])  # (B, S, H)
    g.output(memory, ENCODER_HIDDEN_STATES, FLOAT, ["batch_size", "encoder_sequence_length", config.hidden_size])
    g.output(mask, ENCODER_MASK, INT32, ["batch_size", "encoder_sequence_length"])
    # Decoder's first state: tanh(bridge(mean of the encoder states over real tokens)).
    float_mask = g.op("Unsqueeze", [g.op("Cast", [mask], to=FLOAT), g.constant("axis_last", np.array([-1], np.int64))])
    total = g.op("ReduceSum", [g.op("Mul", [memory, float_mask]), g.constant("axis_one_b", np.array([1], np.int64))], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [float_mask, g.constant("axis_one_c", np.array([1], np.int64))], keepdims=0), g.constant("one_f", np.array(1.0, np.float32))])
    bridged = g.op("Tanh", [g.linear(g.op("Div", [total, count]), weights["bridge.weight"], weights["bridge.bias"], "bridge")])
    state_shape = g.constant("state_shape", np.array([0, config.decoder_layers, config.hidden_size], np.int64))
    hidden = g.op("Reshape", [bridged, state_shape])
    g.output(hidden, RNN_PRESENT_HIDDEN, FLOAT, ["batch_size", config.decoder_layers, config.hidden_size])
    if config.cell == "lstm":
        g.output(g.op("Mul", [hidden, g.constant("zero_f", np.array(0.0, np.float32))]), RNN_PRESENT_CELL, FLOAT, ["batch_size", config.decoder_layers, config.hidden_size])
    return g.model()


def build_decoder_step(spec: ModelSpec, weights: Weights) -> onnx.ModelProto:
    """input_ids (B, 1), encoder_hidden_states, encoder_attention_mask, past_hidden (and
    past_cell) -> log_probs (B, V), present_hidden (and present_cell), attention_weights (B, S)."""
    r = _RNNGraph(spec, weights, "decoder_step")
    g, config = r.g, r.config
    state_shape = ["batch_size", config.decoder_layers, config.hidden_size]
    ids = g.input(DECODER_INPUT_IDS, INT64, ["batch_size", 1])
    memory = g.input(ENCODER_HIDDEN_STATES, FLOAT, ["batch_size", "encoder_sequence_length", config.hidden_size])
    mask = g.input(ENCODER_MASK, INT32, ["batch_size", "encoder_sequence_length"])
    hidden = g.input(RNN_PAST_HIDDEN, FLOAT, state_shape)
    cell = g.input(RNN_PAST_CELL, FLOAT, state_shape) if config.cell == "lstm" else None
    # The output projection is always tied to the target embedding (AttentionRNN): one matrix.
    output_weight = g.constant("output_proj.weight", weights["output_proj.weight"].T)
    x = g.op("Transpose", [g.tied_embedding(ids, output_weight)], perm=[1, 0, 2])  # (1, B, E)
    batch_lengths = g.op("Cast", [g.op("Expand", [g.constant("one_i", np.array([1], np.int64)), g.op("Shape", [ids], start=0, end=1)])], to=INT32)
    layer_states = g.op("Transpose", [hidden], perm=[1, 0, 2])  # (L, B, H)
    layer_cells = g.op("Transpose", [cell], perm=[1, 0, 2]) if cell else None
    new_hidden, new_cell = [], []
    for layer in range(config.decoder_layers):
        pick = g.constant(f"layer{layer}_index", np.array([layer], np.int64))
        initial = [g.op("Gather", [layer_states, pick])]  # (1, B, H)
        if layer_cells:
            initial.append(g.op("Gather", [layer_cells, pick]))
        outputs = r.rnn_layer(x, "decoder_rnn", layer, 1, initial, batch_lengths, config.hidden_size)
        x = g.op("Squeeze", [outputs[0], g.constant(f"dir_axis{layer}", np.array([1], np.int64))])  # (1, B, H)
        new_hidden.append(outputs[1])
        if layer_cells:
            new_cell.append(outputs[2])
    query = g.op("Transpose", [x], perm=[1, 0, 2])  # (B, 1, H)
    # general: h . (W e) == (h W) . e, so the query is projected instead of every encoder state
    scored_query = g.op("MatMul", [query, g.constant("attention.general.weight", weights["attention.general.weight"])]) if config.attention == "general" else query
    scores = g.op("MatMul", [scored_query, g.op("Transpose", [memory], perm=[0, 2, 1])])  # (B, 1, S)
    allowed = g.op("Unsqueeze", [g.op("Cast", [mask], to=onnx.TensorProto.BOOL), g.constant("axis_one_u", np.array([1], np.int64))])
    scores = g.op("Where", [allowed, scores, g.constant("masked_score", np.array(np.finfo(np.float32).min, np.float32))])
    attention = g.op("Softmax", [scores], axis=-1)
    context = g.op("MatMul", [attention, memory])  # (B, 1, H)
    attentional = g.op("Tanh", [g.linear(g.op("Concat", [context, query], axis=-1), weights["combine.weight"], weights["combine.bias"], "combine")])
    readout = g.linear(attentional, weights["readout.weight"], weights["readout.bias"], "readout")
    logits = g.op("MatMul", [readout, output_weight])
    axis_one = g.constant("squeeze_axis", np.array([1], np.int64))
    g.next_token_outputs(g.op("Squeeze", [logits, axis_one]), config.vocab_size)
    g.output(g.op("Transpose", [g.op("Concat", new_hidden, axis=0)], perm=[1, 0, 2]), RNN_PRESENT_HIDDEN, FLOAT, state_shape)
    if cell:
        g.output(g.op("Transpose", [g.op("Concat", new_cell, axis=0)], perm=[1, 0, 2]), RNN_PRESENT_CELL, FLOAT, state_shape)
    g.output(g.op("Squeeze", [attention, axis_one]), ATTENTION_WEIGHTS, FLOAT, ["batch_size", "encoder_sequence_length"])
    return g.model()
