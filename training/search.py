"""Search with a PyTorch model: an IncrementalDecoder adapter over decoding's numpy search."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from decoding import search
from decoding.search import Hypothesis
from nmt_spec import SpecialIds
from training.models.base import Seq2SeqModel, reorder


class TorchIncrementalDecoder:
    """Runs a model's decode_step on a padded source batch, keeping its caches as tensors."""

    def __init__(self, model: Seq2SeqModel, src: Tensor) -> None:
        self.model = model
        self.device = src.device
        self.encoded = model.encode(src)
        self.state = model.init_state(self.encoded)

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        logits, self.state = self.model.decode_step(torch.from_numpy(tokens).to(self.device), position, self.encoded, self.state)
        return logits.float().cpu().numpy()

    def select(self, rows: np.ndarray) -> None:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        self.encoded, self.state = reorder(self.encoded, index), reorder(self.state, index)


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, special: SpecialIds, max_length: int) -> list[Hypothesis]:
    return search.greedy_search(TorchIncrementalDecoder(model, src), src.size(0), special, max_length)


@torch.no_grad()
def beam_search(
    model: Seq2SeqModel,
    src: Tensor,
    special: SpecialIds,
    max_length: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    num_hypotheses: int = 1,
) -> list[list[Hypothesis]]:
    return search.beam_search(
        TorchIncrementalDecoder(model, src), src.size(0), special, max_length, beam_size, length_penalty, num_hypotheses
    )
