"""Rules on which token may come next, applied to a step's log-probabilities before a search
picks from them: CTranslate2's `min_decoding_length`, `repetition_penalty` and
`no_repeat_ngram_size`, and the output length bound that follows the source length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenRules:
    """What the next token of a hypothesis may be, given the tokens it has so far."""

    min_length: int = 0  # eos is not chosen before this many tokens
    # > 1 makes tokens already in the hypothesis less likely. Applied to log-probabilities
    # (all <= 0), so it multiplies them; CTranslate2 divides positive logits instead, which on
    # log-probabilities is the same rule.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0  # no n-gram of this size twice in a hypothesis; 0: off
    suppressed: tuple[int, ...] = ()  # tokens never chosen (a model's bad_words_ids)

    @property
    def active(self) -> bool:
        return self.min_length > 0 or self.repetition_penalty != 1.0 or self.no_repeat_ngram_size > 0 or bool(self.suppressed)

    def apply(self, log_probs: np.ndarray, histories: Sequence[Sequence[int]], position: int, eos: int) -> np.ndarray:
        """log_probs (rows, V) of rows whose generated tokens are `histories` (bos excluded),
        all at `position` -> a modified copy."""
        scores = log_probs.copy()
        if self.suppressed:
            scores[:, list(self.suppressed)] = -np.inf
        if position < self.min_length:
            scores[:, eos] = -np.inf
        if self.repetition_penalty == 1.0 and self.no_repeat_ngram_size <= 0:
            return scores  # no rule looks at a row's history: no per-row loop on the hot path
        for row, history in enumerate(histories):
            if not history:
                continue
            if self.repetition_penalty != 1.0:
                seen = np.unique(np.asarray(history, dtype=np.int64))
                values = scores[row, seen]
                scores[row, seen] = np.where(values < 0, values * self.repetition_penalty, values / self.repetition_penalty)
            banned = banned_ngram_ends(history, self.no_repeat_ngram_size)
            if banned:
                scores[row, banned] = -np.inf
        return scores


def banned_ngram_ends(history: Sequence[int], size: int) -> list[int]:
    """Tokens that would complete an n-gram of `size` already in `history`."""
    if size <= 0 or len(history) < size - 1:
        return []
    if size == 1:
        return sorted(set(history))
    prefix = tuple(history[len(history) - size + 1 :])
    return sorted({history[i + size - 1] for i in range(len(history) - size + 1) if tuple(history[i : i + size - 1]) == prefix})


@dataclass(frozen=True)
class LengthBound:
    """Output length as a function of the source's (fairseq's max_len_a / max_len_b): at most
    a x source tokens + b target tokens, both counted with eos. a = 0: no bound beyond the cap."""

    a: float = 0.0
    b: int = 0

    def limits(self, source_lengths: Sequence[int], cap: int) -> np.ndarray:
        lengths = np.asarray(source_lengths, dtype=np.float64)
        if self.a <= 0:
            return np.full(len(lengths), cap, dtype=np.int64)
        return np.minimum(np.floor(self.a * lengths + self.b), cap).astype(np.int64).clip(min=1)
