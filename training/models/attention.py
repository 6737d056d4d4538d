"""Multi-head scaled dot-product attention, written out so export controls the graph."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Per-head Q/K/V projections, scaled dot products, softmax, weighted sum, heads
    concatenated and projected (Vaswani et al., 2017, section 3.2.2)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)

    def project_key_value(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of x, split into heads: each (B, H, L, Dh)."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def attend(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None) -> Tensor:
        """query (B, Lq, D); key/value already split (B, H, Lk, Dh); mask broadcastable to
        (B, H, Lq, Lk), True where attention is allowed."""
        q = self.split_heads(self.q_proj(query))  # (B, H, Lq, Dh)
        dropout = self.dropout if self.training else 0.0
        heads = F.scaled_dot_product_attention(q, key, value, attn_mask=mask, dropout_p=dropout)
        batch, _, length, _ = heads.shape
        merged = heads.transpose(1, 2).reshape(batch, length, self.n_heads * self.head_dim)
        return self.out_proj(merged)

    def weights(self, query: Tensor, key: Tensor, mask: Tensor) -> Tensor:
        """The attention probabilities `attend` uses, written out (SDPA does not return them):
        query (B, Lq, D), key (B, H, Lk, Dh), mask as for attend -> (B, H, Lq, Lk)."""
        q = self.split_heads(self.q_proj(query))
        scores = q @ key.transpose(-1, -2) / math.sqrt(self.head_dim)
        return torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)

    def forward(self, query: Tensor, key_value: Tensor, mask: Tensor | None) -> Tensor:
        key, value = self.project_key_value(key_value)
        return self.attend(query, key, value, mask)
