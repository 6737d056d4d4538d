"""A PyTorch model, or an ensemble of them, as an IncrementalDecoder, for decoding's (numpy) greedy
and beam search."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.models.base import Seq2SeqModel, reorder


class TorchIncrementalDecoder:
    """Runs a model's decode_step on a padded source batch, keeping its caches as tensors."""

    @torch.no_grad()
    def __init__(self, model: Seq2SeqModel, src: Tensor, attention_layer: int = -1) -> None:
        """attention_layer: whose attention `attention` holds after a step that asked for it."""
        self.model = model
        self.device = src.device
        self.encoded = model.encode(src)
        self.state = model.init_state(self.encoded)
        self.position = 0  # every row decodes the same position: rows join only at the start
        self.attention_layer = attention_layer
        self.output_attentions = False
        self.attention: np.ndarray | None = None

    @torch.no_grad()
    def step(self, tokens: np.ndarray) -> np.ndarray:
        previous = torch.from_numpy(tokens).to(self.device)
        if self.output_attentions:
            logits, self.state, attention = self.model.decode_step_with_attention(previous, self.position, self.encoded, self.state)
            self.attention = attention[:, self.attention_layer].float().cpu().numpy()
        else:
            logits, self.state = self.model.decode_step(previous, self.position, self.encoded, self.state)
            self.attention = None
        self.position += 1
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    def select(self, rows: np.ndarray) -> None:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        self.encoded, self.state = reorder(self.encoded, index), reorder(self.state, index)


class EnsembleDecoder:
    """Several models decoding the same sources in step: each step's distribution is the mean of
    their probabilities (a stronger teacher for distillation than any one of them). The models
    must share a vocabulary; the attention is the first model's."""

    def __init__(self, members: list[TorchIncrementalDecoder]) -> None:
        self.members = members

    @property
    def output_attentions(self) -> bool:
        return self.members[0].output_attentions

    @output_attentions.setter
    def output_attentions(self, value: bool) -> None:
        self.members[0].output_attentions = value

    @property
    def attention(self) -> np.ndarray | None:
        return self.members[0].attention

    def step(self, tokens: np.ndarray) -> np.ndarray:
        log_probs = np.stack([member.step(tokens) for member in self.members])
        return (np.logaddexp.reduce(log_probs, axis=0) - np.log(len(self.members))).astype(np.float32)

    def select(self, rows: np.ndarray) -> None:
        for member in self.members:
            member.select(rows)
