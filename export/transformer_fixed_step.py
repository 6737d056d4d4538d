"""The Transformer's decoder step in a fixed-shape form that a CUDA graph can replay (the form
onnxruntime-genai replays): every input and output keeps its shape and address from step to step,
and greedy search runs inside the graph, so the host only launches steps and now and then reads
which rows have finished.

- Self-attention caches are buffers of a fixed capacity, written in place by GroupQueryAttention
  (past and present bound to the same memory): each row writes its new key/value at its own
  length (seqlens_k, on the device) and attends up to it, so rows at different positions share
  the buffers and a row that joins starts from slot 0 of its own.
- Cross-attention reads the encoder's keys/values in buffers padded to a source-length bucket,
  with the padding mask.
- TopK picks each row's next token; the step writes it, the row's new length, its finished flag,
  its score and its token history as next_* outputs, which the decoding engine binds to the
  inputs of the following step (decoding/fixed_greedy.py). No If or Loop node.

ONNX Runtime runs GroupQueryAttention in fp16/bf16 on CUDA and in fp32 on the CPU, which is how
machines without a GPU test this form."""

from __future__ import annotations

import numpy as np
import onnx

from export.graph_builder import BOOL, FLOAT, FLOAT16, INT32, INT64, MICROSOFT_DOMAIN
from export.transformer_graphs import TransformerGraph, Weights
from nmt_spec import ModelSpec
from nmt_spec.graph_names import (
    DECODER_INPUT_IDS,
    ENCODER_MASK,
    FINISHED,
    MAX_LENGTHS,
    SCORES,
    SEQLENS_K,
    TOKEN_HISTORY,
    TOTAL_SEQUENCE_LENGTH,
    cross_key,
    cross_value,
    next_state,
    past_key,
    past_value,
    present_key,
    present_value,
)

CAPACITY = "cache_capacity"
FLOAT_TYPES = {"fp32": (np.float32, FLOAT), "fp16": (np.float16, FLOAT16)}


def build_fixed_decoder_step(spec: ModelSpec, weights: Weights, precision: str = "fp32") -> onnx.ModelProto:
    """One greedy step over fixed buffers: input_ids (B, 1), seqlens_k (B,) int32,
    total_sequence_length (the capacity), finished (B,), max_lengths (B,) int32, scores (B,),
    token_history (B, capacity) int64, encoder_attention_mask (B, S), the cross-attention
    keys/values (B, H, S, Dh) and the self-attention caches (B, H, capacity, Dh) -> next_* of the
    five state inputs, and present.* (the caches, bound to the same memory as past_*).
    precision fp16: weights, caches, encoder keys/values and activations in fp16 (built so, not
    converted, so no Cast sits between layers); the scores stay a sum in fp32."""
    float_type, tensor_type = FLOAT_TYPES[precision]
    t = TransformerGraph(spec, weights, "decoder_fixed_step", rows_only=True, float_type=float_type)
    g, config = t.g, t.config
    special = spec.special_ids
    ids = g.input(DECODER_INPUT_IDS, INT64, ["batch_size", 1])
    lengths = g.input(SEQLENS_K, INT32, ["batch_size"])
    capacity = g.input(TOTAL_SEQUENCE_LENGTH, INT32, [])
    finished = g.input(FINISHED, BOOL, ["batch_size"])
    max_lengths = g.input(MAX_LENGTHS, INT32, ["batch_size"])
    scores = g.input(SCORES, FLOAT, ["batch_size"])
    history = g.input(TOKEN_HISTORY, INT64, ["batch_size", CAPACITY])
    mask = g.input(ENCODER_MASK, INT32, ["batch_size", "encoder_sequence_length"])
    cache_shape = ["batch_size", t.heads, CAPACITY, t.head_dim]
    cross_shape = ["batch_size", t.heads, "encoder_sequence_length", t.head_dim]
    layers = [
        (g.input(past_key(i), tensor_type, cache_shape), g.input(past_value(i), tensor_type, cache_shape), g.input(cross_key(i), tensor_type, cross_shape), g.input(cross_value(i), tensor_type, cross_shape))
        for i in range(config.n_decoder_layers)
    ]
    token_vectors, output_weight = t.decoder_embedding(ids)
    x = t.embed(token_vectors, g.op("Gather", [t.position_table(), lengths]))  # a row's length is its position
    for i, (key_cache, value_cache, keys, values) in enumerate(layers):
        prefix = f"decoder_layers.{i}"

        def self_attention(y: str, prefix: str = prefix, key_cache: str = key_cache, value_cache: str = value_cache, layer: int = i) -> str:
            q, k, v = t.qkv(y, f"{prefix}.self_attn")
            outputs = [g.fresh("GroupQueryAttention_out"), present_key(layer), present_value(layer)]
            attended = g.op(
                "GroupQueryAttention", [q, k, v, key_cache, value_cache, lengths, capacity], domain=MICROSOFT_DOMAIN, output_names=outputs, num_heads=t.heads, kv_num_heads=t.heads
            )[0]
            return t.attention_output(t.as_rows(attended), f"{prefix}.self_attn")

        def cross_attention(y: str, prefix: str = prefix, keys: str = keys, values: str = values) -> str:
            return t.cross_attention(y, prefix, keys, values, mask)

        x = t.decoder_layer(x, prefix, self_attention, cross_attention)
    logits = t.logits(x, output_weight)
    best_log_prob, best = g.op("TopK", [g.op("LogSoftmax", [logits], axis=-1), g.constant("one", np.array([1], np.int64))], outputs=2, axis=-1, largest=1, sorted=1)
    if tensor_type != FLOAT:
        best_log_prob = g.op("Cast", [best_log_prob], to=FLOAT)  # B values, added up in fp32
    _greedy_state(t, ids, lengths, finished, max_lengths, scores, history, best, best_log_prob, special.pad, special.eos)
    for i in range(config.n_decoder_layers):
        g.output(present_key(i), present_key(i), tensor_type, cache_shape)
        g.output(present_value(i), present_value(i), tensor_type, cache_shape)
    return g.model()


def _greedy_state(t: TransformerGraph, ids: str, lengths: str, finished: str, max_lengths: str, scores: str, history: str, best: str, best_log_prob: str, pad: int, eos: int) -> None:
    """Each row's state after emitting `best` (B, 1) with `best_log_prob` (B, 1); a finished row
    keeps its length, score and flag and is fed pad."""
    g = t.g
    rows_shape = g.constant("rows_shape", np.array([-1], np.int64))
    token = g.op("Where", [g.op("Unsqueeze", [finished, t.axis_one]), g.constant("pad_token", np.array(pad, np.int64)), best])  # (B, 1)
    going_on = g.op("Not", [finished])
    new_lengths = g.op("Add", [lengths, g.op("Cast", [going_on], to=INT32)])
    ended = g.op("Or", [g.op("Equal", [g.op("Reshape", [best, rows_shape]), g.constant("eos_token", np.array(eos, np.int64))]), g.op("GreaterOrEqual", [new_lengths, max_lengths])])
    emitted = g.op("Where", [going_on, g.op("Reshape", [best_log_prob, rows_shape]), g.constant("no_score", np.array(0.0, np.float32))])
    new_history = g.op("ScatterElements", [history, g.op("Unsqueeze", [g.op("Cast", [lengths], to=INT64), t.axis_one]), token], axis=1)
    g.output(token, next_state(ids), INT64, ["batch_size", 1])
    g.output(new_lengths, next_state(lengths), INT32, ["batch_size"])
    g.output(g.op("Or", [finished, ended]), next_state(finished), BOOL, ["batch_size"])
    g.output(g.op("Add", [scores, emitted]), next_state(scores), FLOAT, ["batch_size"])
    g.output(new_history, next_state(history), INT64, ["batch_size", CAPACITY])
