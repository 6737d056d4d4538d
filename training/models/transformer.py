"""Encoder-decoder Transformer (Vaswani et al., 2017) with an incremental decoder step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from nmt_spec import TransformerConfig
from nmt_spec.graph_names import cross_key as cross_key_name
from nmt_spec.graph_names import cross_value as cross_value_name
from nmt_spec.graph_names import past_key as self_key_name
from nmt_spec.graph_names import past_value as self_value_name
from nmt_spec.positions import sinusoidal_table
from training.models.attention import MultiHeadAttention
from training.models.base import DecoderState, Encoded, Seq2SeqModel, source_padding_mask


class PositionalEmbedding(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.learned = config.positional == "learned"
        if self.learned:
            self.table = nn.Embedding(config.max_positions, config.d_model)
        else:
            table = sinusoidal_table(config.max_positions, config.d_model, split=config.positional == "sinusoidal_split")
            self.register_buffer("table", torch.from_numpy(table), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """positions: (L,) integer positions -> (L, D)."""
        if self.learned:
            return self.table(positions)
        return self.table[positions]


class SublayerConnection(nn.Module):
    """Residual connection with LayerNorm before the sublayer (pre-norm) or after the sum
    (post-norm, as in the paper). Split in two halves so sublayers with extra outputs (the
    decoder's cache) can use it too."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def sublayer_input(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.pre_norm else x

    def residual(self, x: Tensor, sublayer_output: Tensor) -> Tensor:
        summed = x + self.dropout(sublayer_output)
        return summed if self.pre_norm else self.norm(summed)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        return self.residual(x, sublayer(self.sublayer_input(x)))


class FeedForward(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.linear_in = nn.Linear(config.d_model, config.d_ff)
        self.activation = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}[config.activation]()
        self.dropout = nn.Dropout(config.dropout)
        self.linear_out = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_out(self.dropout(self.activation(self.linear_in(x))))


class EncoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        pre_norm = config.norm == "pre"
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.feed_forward = FeedForward(config)
        self.attn_sublayer = SublayerConnection(config.d_model, config.dropout, pre_norm)
        self.ff_sublayer = SublayerConnection(config.d_model, config.dropout, pre_norm)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.attn_sublayer(x, lambda y: self.self_attn(y, y, mask))
        return self.ff_sublayer(x, self.feed_forward)


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        pre_norm = config.norm == "pre"
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.cross_attn = MultiHeadAttention(config.d_model, config.n_heads, config.attention_dropout)
        self.feed_forward = FeedForward(config)
        self.self_sublayer = SublayerConnection(config.d_model, config.dropout, pre_norm)
        self.cross_sublayer = SublayerConnection(config.d_model, config.dropout, pre_norm)
        self.ff_sublayer = SublayerConnection(config.d_model, config.dropout, pre_norm)

    def forward(self, x: Tensor, memory: Tensor, causal_mask: Tensor, memory_mask: Tensor) -> Tensor:
        x = self.self_sublayer(x, lambda y: self.self_attn(y, y, causal_mask))
        x = self.cross_sublayer(x, lambda y: self.cross_attn(y, memory, memory_mask))
        return self.ff_sublayer(x, self.feed_forward)

    def step(
        self,
        x: Tensor,
        past_key: Tensor,
        past_value: Tensor,
        cross_key: Tensor,
        cross_value: Tensor,
        memory_mask: Tensor,
        with_attention: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """x: (B, 1, D), the newest position only. The self-attention cache (B, H, T, Dh) gains
        one position; no causal mask is needed since the cache holds only the past. With
        with_attention, also the cross-attention averaged over heads (B, S)."""
        y = self.self_sublayer.sublayer_input(x)
        new_key, new_value = self.self_attn.project_key_value(y)
        key = torch.cat([past_key, new_key], dim=2)
        value = torch.cat([past_value, new_value], dim=2)
        x = self.self_sublayer.residual(x, self.self_attn.attend(y, key, value, None))
        y = self.cross_sublayer.sublayer_input(x)
        attention = self.cross_attn.weights(y, cross_key, memory_mask).mean(dim=1)[:, 0] if with_attention else None
        x = self.cross_sublayer.residual(x, self.cross_attn.attend(y, cross_key, cross_value, memory_mask))
        return self.ff_sublayer(x, self.feed_forward), key, value, attention


class Transformer(Seq2SeqModel):
    def __init__(self, config: TransformerConfig, pad_id: int) -> None:
        super().__init__()
        self.config = config
        self.pad_id = pad_id
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embeddings else 1.0
        self.src_embed = nn.Embedding(config.vocab_size, config.d_model, padding_idx=pad_id)
        self.tgt_embed = (
            self.src_embed
            if config.tie_embeddings
            else nn.Embedding(config.vocab_size, config.d_model, padding_idx=pad_id)
        )
        self.positions = PositionalEmbedding(config)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layers))
        # Pre-norm stacks end un-normalised; post-norm layers already end in a LayerNorm.
        final_norm = (lambda: nn.LayerNorm(config.d_model)) if config.norm == "pre" else nn.Identity
        self.encoder_norm = final_norm()
        self.decoder_norm = final_norm()
        self.output_proj = nn.Linear(config.d_model, config.vocab_size, bias=config.output_bias)
        self._init_weights()
        if config.tie_embeddings:
            self.output_proj.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)
        for embedding in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(embedding.weight, std=self.config.d_model**-0.5)
            nn.init.zeros_(embedding.weight[self.pad_id])

    def embed(self, embedding: nn.Embedding, tokens: Tensor, first_position: int = 0) -> Tensor:
        positions = torch.arange(first_position, first_position + tokens.size(1), device=tokens.device)
        return self.embed_dropout(embedding(tokens) * self.embed_scale + self.positions(positions))

    def encode(self, src: Tensor) -> Encoded:
        src_mask = source_padding_mask(src, self.pad_id)
        attention_mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        x = self.embed(self.src_embed, src)
        for layer in self.encoder_layers:
            x = layer(x, attention_mask)
        return {"memory": self.encoder_norm(x), "src_mask": src_mask}

    def init_state(self, encoded: Encoded) -> DecoderState:
        memory = encoded["memory"]
        batch = memory.size(0)
        empty = memory.new_zeros(batch, self.config.n_heads, 0, self.config.d_model // self.config.n_heads)
        state: DecoderState = {}
        for i, layer in enumerate(self.decoder_layers):
            state[self_key_name(i)] = empty
            state[self_value_name(i)] = empty
            state[cross_key_name(i)], state[cross_value_name(i)] = layer.cross_attn.project_key_value(memory)
        return state

    def decode_step(
        self, prev_tokens: Tensor, step: int, encoded: Encoded, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        logits, new_state, _ = self._decode_step(prev_tokens, step, encoded, state, with_attention=False)
        return logits, new_state

    def decode_step_with_attention(
        self, prev_tokens: Tensor, step: int, encoded: Encoded, state: DecoderState
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """The attention of every decoder layer, averaged over its heads: (B, layers, S)."""
        logits, new_state, attention = self._decode_step(prev_tokens, step, encoded, state, with_attention=True)
        return logits, new_state, torch.stack(attention, dim=1)

    def _decode_step(
        self, prev_tokens: Tensor, step: int, encoded: Encoded, state: DecoderState, with_attention: bool
    ) -> tuple[Tensor, DecoderState, list[Tensor]]:
        memory_mask = encoded["src_mask"][:, None, None, :]
        x = self.embed(self.tgt_embed, prev_tokens.unsqueeze(1), first_position=step)
        new_state: DecoderState = {}
        attention = []
        for i, layer in enumerate(self.decoder_layers):
            x, new_state[self_key_name(i)], new_state[self_value_name(i)], layer_attention = layer.step(
                x,
                state[self_key_name(i)],
                state[self_value_name(i)],
                state[cross_key_name(i)],
                state[cross_value_name(i)],
                memory_mask,
                with_attention,
            )
            attention.append(layer_attention)
            new_state[cross_key_name(i)] = state[cross_key_name(i)]
            new_state[cross_value_name(i)] = state[cross_value_name(i)]
        return self.output_proj(self.decoder_norm(x)).squeeze(1), new_state, attention

    def decode(self, tgt_in: Tensor, encoded: Encoded) -> Tensor:
        length = tgt_in.size(1)
        causal_mask = torch.ones(length, length, dtype=torch.bool, device=tgt_in.device).tril()
        memory_mask = encoded["src_mask"][:, None, None, :]
        x = self.embed(self.tgt_embed, tgt_in)
        for layer in self.decoder_layers:
            x = layer(x, encoded["memory"], causal_mask, memory_mask)
        return self.output_proj(self.decoder_norm(x))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(tgt_in, self.encode(src))


__all__ = ["Transformer"]
