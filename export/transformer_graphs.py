"""ONNX graphs of the Transformer: an encoder, and a decoder step with its key/value cache.

Attention is emitted as com.microsoft MultiHeadAttention nodes (ONNX Runtime's fused kernels
on CPU and CUDA) and every norm as an ONNX LayerNormalization node, so the graphs keep the
model's structure instead of a MatMul/Softmax soup that the runtime has to rediscover.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from export.graph_builder import BOOL, FLOAT, INT32, INT64, MICROSOFT_DOMAIN, GraphBuilder, empty_branch
from nmt_spec import ModelSpec, TransformerConfig
from nmt_spec.graph_names import (
    CROSS_ATTENTIONS,
    DECODER_INPUT_IDS,
    ENCODER_HIDDEN_STATES,
    ENCODER_INPUT_IDS,
    ENCODER_MASK,
    DECODER_MASK,
    OUTPUT_ATTENTIONS,
    POSITION_IDS,
    cross_key,
    cross_value,
    past_key,
    past_value,
    present_key,
    present_value,
)
from nmt_spec.positions import sinusoidal_table

Weights = dict[str, np.ndarray]


def _position_table(config: TransformerConfig, weights: Weights) -> np.ndarray:
    if config.positional == "learned":
        return weights["positions.table.weight"]
    return sinusoidal_table(config.max_positions, config.d_model, split=config.positional == "sinusoidal_split")


class TransformerGraph:
    def __init__(self, spec: ModelSpec, weights: Weights, name: str, rows_only: bool = False, float_type: type = np.float32) -> None:
        """float_type: of every weight and activation (np.float16: a graph built in fp16, with
        no Cast between its layers)."""
        assert isinstance(spec.config, TransformerConfig)
        self.spec = spec
        self.config: TransformerConfig = spec.config
        self.float_type = float_type
        self.weights = weights if float_type == np.float32 else {name: value.astype(float_type) for name, value in weights.items()}
        self.g = GraphBuilder(name)
        self.heads = self.config.n_heads
        self.head_dim = self.config.d_model // self.config.n_heads
        # A decoder step computes one position per row: its activations are (B, D) matrices,
        # so ONNX Runtime fuses each MatMul with its bias into one Gemm (it does not for
        # (B, 1, D)); only MultiHeadAttention sees them as sequences of length one.
        self.rows_only = rows_only
        self.axis_one = self.g.constant("axis_one", np.array([1], np.int64)) if self.rows_only else ""

    def as_sequence(self, rows: str) -> str:
        """(B, D) -> (B, 1, D)."""
        return self.g.op("Unsqueeze", [rows, self.axis_one])

    def as_rows(self, sequence: str) -> str:
        """(B, 1, D) -> (B, D)."""
        return self.g.op("Squeeze", [sequence, self.axis_one])

    def w(self, name: str) -> np.ndarray:
        return self.weights[name]

    def position_table(self) -> str:
        return self.g.constant("positions.table", _position_table(self.config, self.weights).astype(self.float_type))

    def embed(self, token_vectors: str, position_rows: str) -> str:
        """token embeddings * sqrt(d_model) + the rows of the position table for these positions."""
        if self.config.scale_embeddings:
            scale = self.g.constant("embed_scale", np.array(math.sqrt(self.config.d_model), self.float_type))
            token_vectors = self.g.op("Mul", [token_vectors, scale])
        return self.g.op("Add", [token_vectors, position_rows])

    def split_heads(self, x: str) -> str:
        """(B, L, D) -> (B, H, L, Dh)."""
        g = self.g
        shape = g.constant(g.fresh("heads_shape"), np.array([0, -1, self.heads, self.head_dim], np.int64))
        return g.op("Transpose", [g.op("Reshape", [x, shape])], perm=[0, 2, 1, 3])

    def sublayer(self, x: str, prefix: str, body) -> str:
        """Residual + LayerNorm around body, pre- or post-norm as the config says."""
        g = self.g
        norm = (self.w(f"{prefix}.norm.weight"), self.w(f"{prefix}.norm.bias"), f"{prefix}.norm")
        if self.config.norm == "pre":
            return g.op("Add", [x, body(g.layer_norm(x, *norm))])
        return g.layer_norm(g.op("Add", [x, body(x)]), *norm)

    def feed_forward(self, x: str, prefix: str) -> str:
        g = self.g
        hidden = g.linear(x, self.w(f"{prefix}.linear_in.weight"), self.w(f"{prefix}.linear_in.bias"), f"{prefix}.linear_in")
        if self.config.activation == "relu":
            hidden = g.op("Relu", [hidden])
        elif self.config.activation == "gelu":
            # Gelu joins the ONNX domain only at opset 20; ORT's contrib Gelu is the exact (erf) one, as torch's.
            hidden = g.op("Gelu", [hidden], domain=MICROSOFT_DOMAIN)
        else:  # swish: x * sigmoid(x)
            hidden = g.op("Mul", [hidden, g.op("Sigmoid", [hidden])])
        return g.linear(hidden, self.w(f"{prefix}.linear_out.weight"), self.w(f"{prefix}.linear_out.bias"), f"{prefix}.linear_out")

    def qkv(self, x: str, prefix: str) -> list[str]:
        """One MatMul for the three projections of self-attention, then split into the (B, L, D)
        query, key and value that MultiHeadAttention takes; a decoder step's rows (B, D) become
        sequences of one."""
        g = self.g
        weight = np.concatenate([self.w(f"{prefix}.{p}_proj.weight") for p in "qkv"], axis=0)
        bias = np.concatenate([self.w(f"{prefix}.{p}_proj.bias") for p in "qkv"], axis=0)
        packed = g.linear(x, weight, bias, f"{prefix}.qkv_proj")
        if self.rows_only:
            packed = self.as_sequence(packed)
        return g.op("Split", [packed, g.constant(g.fresh("qkv_split"), np.array([self.config.d_model] * 3, np.int64))], axis=-1, outputs=3)

    def attention_output(self, attended: str, prefix: str) -> str:
        return self.g.linear(attended, self.w(f"{prefix}.out_proj.weight"), self.w(f"{prefix}.out_proj.bias"), f"{prefix}.out_proj")

    def decoder_embedding(self, ids: str) -> tuple[str, str]:
        """The decoder's input tokens (B, 1) as (B, D) vectors, and the (D, V) output matrix
        (the same constant when the embeddings are tied)."""
        g = self.g
        if self.config.tie_embeddings:
            output_weight = g.constant("output_proj.weight", self.w("src_embed.weight").T)
            return g.tied_embedding(self.as_rows(ids), output_weight), output_weight
        output_weight = g.constant("output_proj.weight", self.w("output_proj.weight").T)
        return g.op("Gather", [g.constant("tgt_embed.weight", self.w("tgt_embed.weight")), self.as_rows(ids)]), output_weight

    def cross_attention(self, y: str, prefix: str, keys: str, values: str, mask: str, on_query=None) -> str:
        """Attention of the rows y (B, D) over the encoder's keys and values; on_query hears the
        projected query."""
        g = self.g
        q = g.linear(y, self.w(f"{prefix}.cross_attn.q_proj.weight"), self.w(f"{prefix}.cross_attn.q_proj.bias"), f"{prefix}.cross_attn.q_proj")
        if on_query is not None:
            on_query(q)
        attended = g.op("MultiHeadAttention", [self.as_sequence(q), keys, values, "", mask], domain=MICROSOFT_DOMAIN, num_heads=self.heads)
        return self.attention_output(self.as_rows(attended), f"{prefix}.cross_attn")

    def decoder_layer(self, x: str, prefix: str, self_attention, cross_attention) -> str:
        x = self.sublayer(x, f"{prefix}.self_sublayer", self_attention)
        x = self.sublayer(x, f"{prefix}.cross_sublayer", cross_attention)
        return self.sublayer(x, f"{prefix}.ff_sublayer", lambda y: self.feed_forward(y, f"{prefix}.feed_forward"))

    def logits(self, x: str, output_weight: str) -> str:
        """The decoder's last layer output (B, D) -> next-token logits (B, V)."""
        logits = self.g.op("MatMul", [self.final_norm(x, "decoder_norm"), output_weight])
        if self.config.output_bias:
            logits = self.g.op("Add", [logits, self.g.constant("output_proj.bias", self.w("output_proj.bias"))])
        return logits

    def final_norm(self, x: str, prefix: str) -> str:
        if self.config.norm != "pre":
            return x
        return self.g.layer_norm(x, self.w(f"{prefix}.weight"), self.w(f"{prefix}.bias"), prefix)


def build_encoder(spec: ModelSpec, weights: Weights) -> onnx.ModelProto:
    """input_ids (B, S) -> encoder_hidden_states (B, S, D), encoder_attention_mask (B, S) int32
    and, per decoder layer, the cross-attention keys and values (B, H, S, Dh), computed once
    per sentence instead of at every decoder step."""
    t = TransformerGraph(spec, weights, "encoder")
    g, config = t.g, t.config
    ids = g.input(ENCODER_INPUT_IDS, INT64, ["batch_size", "encoder_sequence_length"])
    pad = g.constant("pad_id", np.array(spec.special_ids.pad, np.int64))
    mask = g.op("Cast", [g.op("Not", [g.op("Equal", [ids, pad])])], to=INT32)
    # The first S rows of the table. (Gather over a Range would do too, but ORT's extended
    # optimizer rewrites that into a Slice with scalar starts and then fails to run it.)
    length = g.op("Shape", [ids], start=1, end=2)
    zero = g.constant("zero", np.array([0], np.int64))
    if config.tie_embeddings:  # the decoder's (D, V) output matrix, so both graphs can share one copy
        token_vectors = g.tied_embedding(ids, g.constant("output_proj.weight", t.w("src_embed.weight").T))
    else:
        token_vectors = g.op("Gather", [g.constant("src_embed.weight", t.w("src_embed.weight")), ids])
    x = t.embed(token_vectors, g.op("Slice", [t.position_table(), zero, length, zero]))
    for i in range(config.n_encoder_layers):
        prefix = f"encoder_layers.{i}"

        def self_attention(y: str, prefix: str = prefix) -> str:
            q, k, v = t.qkv(y, f"{prefix}.self_attn")
            attended = g.op("MultiHeadAttention", [q, k, v, "", mask], domain=MICROSOFT_DOMAIN, num_heads=t.heads)
            return t.attention_output(attended, f"{prefix}.self_attn")

        x = t.sublayer(x, f"{prefix}.attn_sublayer", self_attention)
        x = t.sublayer(x, f"{prefix}.ff_sublayer", lambda y, prefix=prefix: t.feed_forward(y, f"{prefix}.feed_forward"))
    memory = t.final_norm(x, "encoder_norm")
    g.output(memory, ENCODER_HIDDEN_STATES, FLOAT, ["batch_size", "encoder_sequence_length", config.d_model])
    g.output(mask, ENCODER_MASK, INT32, ["batch_size", "encoder_sequence_length"])
    cache_shape = ["batch_size", t.heads, "encoder_sequence_length", t.head_dim]
    for i in range(config.n_decoder_layers):
        prefix = f"decoder_layers.{i}.cross_attn"
        for projection, name in (("k", cross_key(i)), ("v", cross_value(i))):
            projected = g.linear(memory, t.w(f"{prefix}.{projection}_proj.weight"), t.w(f"{prefix}.{projection}_proj.bias"), f"{prefix}.{projection}_proj")
            g.output(t.split_heads(projected), name, FLOAT, cache_shape)
    return g.model()


def build_decoder_step(spec: ModelSpec, weights: Weights) -> onnx.ModelProto:
    """One decoder step: input_ids (B, 1), position_ids (B, 1), decoder_attention_mask
    (B, past + 1), encoder_attention_mask, the cross-attention keys/values, the self-attention
    caches past_key_values.{i}.decoder.key|value (B, H, past, Dh) and output_attentions (bool)
    -> log_probs (B, V), present.{i}.decoder.key|value, one slot longer (MultiHeadAttention
    concatenates), and cross_attentions (B, layers, S), empty unless output_attentions.
    (Caches written in place by DecoderMaskedMultiHeadAttention were exported until they gave
    wrong answers on CUDA, whose kernel keeps K in another layout.)"""
    t = TransformerGraph(spec, weights, "decoder_step", rows_only=True)
    g, config = t.g, t.config
    ids = g.input(DECODER_INPUT_IDS, INT64, ["batch_size", 1])
    positions = g.input(POSITION_IDS, INT64, ["batch_size", 1])
    self_mask = g.input(DECODER_MASK, INT32, ["batch_size", "total_decoder_sequence_length"])
    mask = g.input(ENCODER_MASK, INT32, ["batch_size", "encoder_sequence_length"])
    past_shape = ["batch_size", t.heads, "past_decoder_sequence_length", t.head_dim]
    cross_shape = ["batch_size", t.heads, "encoder_sequence_length", t.head_dim]
    caches = []
    for i in range(config.n_decoder_layers):
        caches.append(
            (
                g.input(past_key(i), FLOAT, past_shape),
                g.input(past_value(i), FLOAT, past_shape),
                g.input(cross_key(i), FLOAT, cross_shape),
                g.input(cross_value(i), FLOAT, cross_shape),
            )
        )
    token_vectors, output_weight = t.decoder_embedding(ids)
    x = t.embed(token_vectors, g.op("Gather", [t.position_table(), t.as_rows(positions)]))  # (B, D)
    presents: list[tuple[str, str]] = []
    queries: list[tuple[str, str]] = []  # each layer's cross-attention query (B, D) and keys
    for i, (key_cache, value_cache, keys, values) in enumerate(caches):
        prefix = f"decoder_layers.{i}"

        def self_attention(y: str, prefix: str = prefix, key_cache: str = key_cache, value_cache: str = value_cache, layer: int = i) -> str:
            q, k, v = t.qkv(y, f"{prefix}.self_attn")
            presents.append((present_key(layer), present_value(layer)))
            inputs = [q, k, v, "", self_mask, "", key_cache, value_cache]
            output_names = [g.fresh("MultiHeadAttention_out"), *presents[-1]]
            attended = g.op("MultiHeadAttention", inputs, domain=MICROSOFT_DOMAIN, output_names=output_names, num_heads=t.heads)[0]
            return t.attention_output(t.as_rows(attended), f"{prefix}.self_attn")

        def remember(q: str, prefix: str = prefix, keys: str = keys) -> None:
            # Named by an Identity in the outer graph: the int8 quantizer rewires the outer graph
            # when it fuses a MatMul with its bias, but not the If branch that reads the query.
            queries.append((g.op("Identity", [q], name=f"{prefix}.cross_attn.query"), keys))

        def cross_attention(y: str, prefix: str = prefix, keys: str = keys, values: str = values, remember=remember) -> str:
            return t.cross_attention(y, prefix, keys, values, mask, on_query=remember)

        x = t.decoder_layer(x, prefix, self_attention, cross_attention)
    g.next_token_outputs(t.logits(x, output_weight), config.vocab_size)
    present_shape = ["batch_size", t.heads, "present_decoder_sequence_length", t.head_dim]
    for new_keys, new_values in presents:
        g.output(new_keys, new_keys, FLOAT, present_shape)
        g.output(new_values, new_values, FLOAT, present_shape)
    wanted = g.input(OUTPUT_ATTENTIONS, BOOL, [])
    attentions = g.op("If", [wanted], then_branch=_cross_attentions(t, queries, mask), else_branch=_no_attentions(len(queries)))
    g.output(attentions, CROSS_ATTENTIONS, FLOAT, ["attention_rows", len(queries), "attention_length"])
    return g.model()


def _cross_attentions(t: TransformerGraph, queries: list[tuple[str, str]], mask: str) -> onnx.GraphProto:
    """The If branch that computes what MultiHeadAttention does not output: each layer's
    attention probabilities softmax(q k^T / sqrt(Dh)) over the source, averaged over heads
    (the convention fairseq and CTranslate2 align with), stacked to (B, layers, S)."""
    b = GraphBuilder("cross_attentions", prefix="attention_branch.")
    heads_shape = b.constant(b.fresh("heads_shape"), np.array([0, t.heads, 1, t.head_dim], np.int64))
    scale = b.constant(b.fresh("scale"), np.array(1 / math.sqrt(t.head_dim), np.float32))
    lowest = b.constant(b.fresh("lowest"), np.array(np.finfo(np.float32).min, np.float32))
    allowed = b.op("Unsqueeze", [b.op("Cast", [mask], to=BOOL), b.constant(b.fresh("axes"), np.array([1, 2], np.int64))])  # (B, 1, 1, S)
    layers = []
    for query, keys in queries:
        q = b.op("Reshape", [query, heads_shape])  # (B, H, 1, Dh)
        scores = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [keys], perm=[0, 1, 3, 2])]), scale])  # (B, H, 1, S)
        probabilities = b.op("Softmax", [b.op("Where", [allowed, scores, lowest])], axis=-1)
        layers.append(b.op("ReduceMean", [probabilities], axes=[1], keepdims=0))  # (B, 1, S)
    b.output(b.op("Concat", layers, axis=1), b.fresh("stacked"), FLOAT, ["attention_rows", len(queries), "attention_length"])
    return b.subgraph()


def _no_attentions(layers: int) -> onnx.GraphProto:
    return empty_branch("no_attentions", "empty_branch.", ["attention_rows", layers, "attention_length"])
