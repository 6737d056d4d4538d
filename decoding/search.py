"""Greedy and beam search, independent of the framework that computes the logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nmt_spec import SpecialIds


class IncrementalDecoder(Protocol):
    """A source batch already encoded, decoded one target position at a time.

    Rows are the sentences (or beams) still being decoded; ``select`` keeps, repeats or
    reorders them, so the decoder's caches follow the search."""

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        """tokens (rows,) int64, the previous token of each row -> logits (rows, V) float32."""

    def select(self, rows: np.ndarray) -> None:
        """Keep only these rows, in this order (indices may repeat)."""


@dataclass
class Hypothesis:
    tokens: list[int]  # without bos and eos
    score: float  # sum of token log-probabilities, eos included when it was generated
    normalized_score: float  # score / length ** length_penalty: what beams are ranked by


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def length_normalized(score: float, length: int, length_penalty: float) -> float:
    """CTranslate2's convention: divide by length ** length_penalty (0 disables it)."""
    return score / (max(length, 1) ** length_penalty)


def greedy_search(decoder: IncrementalDecoder, batch_size: int, special: SpecialIds, max_length: int) -> list[Hypothesis]:
    """Argmax decoding; sentences that emit eos leave the batch, so the decoder works only on
    unfinished rows."""
    active = np.arange(batch_size)  # sentence of each row
    prev = np.full(batch_size, special.bos, dtype=np.int64)
    tokens: list[list[int]] = [[] for _ in range(batch_size)]
    scores = np.zeros(batch_size, dtype=np.float64)
    for position in range(max_length):
        log_probs = log_softmax(decoder.step(prev, position).astype(np.float32))
        best = log_probs.argmax(axis=-1)
        scores[active] += log_probs[np.arange(len(active)), best]
        unfinished = best != special.eos
        for sentence, token in zip(active[unfinished], best[unfinished]):
            tokens[sentence].append(int(token))
        if not unfinished.any():
            break
        if not unfinished.all():
            keep = np.flatnonzero(unfinished)
            decoder.select(keep)
            active, best = active[keep], best[keep]
        prev = best
    return [Hypothesis(t, float(s), float(s)) for t, s in zip(tokens, scores)]


def beam_search(
    decoder: IncrementalDecoder,
    batch_size: int,
    special: SpecialIds,
    max_length: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    num_hypotheses: int = 1,
) -> list[list[Hypothesis]]:
    """Beam search; returns num_hypotheses per sentence, best first.

    A sentence is done once beam_size hypotheses have ended with eos; its rows then leave the
    batch. Hypotheses still open at max_length are finished as they are."""
    if not 1 <= num_hypotheses <= beam_size:
        raise ValueError(f"num_hypotheses must be between 1 and beam_size ({beam_size})")
    decoder.select(np.repeat(np.arange(batch_size), beam_size))
    sentences = np.arange(batch_size)  # the sentences still decoding, beam_size rows each
    beam_scores = np.zeros((batch_size, beam_size))
    beam_scores[:, 1:] = -np.inf  # the beams start identical: expand only the first
    beam_tokens: list[list[int]] = [[] for _ in range(batch_size * beam_size)]
    prev = np.full(batch_size * beam_size, special.bos, dtype=np.int64)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]

    for position in range(max_length):
        log_probs = log_softmax(decoder.step(prev, position).astype(np.float32))
        vocab = log_probs.shape[-1]
        candidates = (beam_scores[:, :, None] + log_probs.reshape(len(sentences), beam_size, vocab)).reshape(len(sentences), -1)
        # 2 x beam candidates always hold beam_size that do not end, whatever the eos count.
        top = np.argpartition(-candidates, 2 * beam_size - 1, axis=-1)[:, : 2 * beam_size]
        top_scores = np.take_along_axis(candidates, top, axis=-1)
        order = np.argsort(-top_scores, axis=-1, kind="stable")
        top, top_scores = np.take_along_axis(top, order, axis=-1), np.take_along_axis(top_scores, order, axis=-1)

        next_rows: list[int] = []
        next_tokens: list[int] = []
        next_scores: list[float] = []
        still_open: list[int] = []
        for slot, sentence in enumerate(sentences):
            chosen_rows, chosen_tokens, chosen_scores = [], [], []
            for rank, (flat, score) in enumerate(zip(top[slot].tolist(), top_scores[slot].tolist())):
                row, token = slot * beam_size + flat // vocab, flat % vocab
                if token == special.eos:
                    if rank < beam_size and score > -np.inf:
                        hypothesis = beam_tokens[row]
                        finished[sentence].append(Hypothesis(list(hypothesis), score, length_normalized(score, len(hypothesis) + 1, length_penalty)))
                    continue
                chosen_rows.append(row)
                chosen_tokens.append(token)
                chosen_scores.append(score)
                if len(chosen_rows) == beam_size:
                    break
            if len(finished[sentence]) >= beam_size:
                continue  # done: its rows leave the batch
            still_open.append(slot)
            next_rows += chosen_rows
            next_tokens += chosen_tokens
            next_scores += chosen_scores
        if not still_open:
            sentences = sentences[:0]
            break
        beam_tokens = [beam_tokens[r] + [t] for r, t in zip(next_rows, next_tokens)]
        rows = np.array(next_rows)
        decoder.select(rows)
        sentences = sentences[still_open]
        beam_scores = np.array(next_scores).reshape(len(sentences), beam_size)
        prev = np.array(next_tokens, dtype=np.int64)

    for slot, sentence in enumerate(sentences):  # max_length reached: open beams count as they are
        for beam in range(beam_size):
            score = float(beam_scores[slot, beam])
            if score > -np.inf:
                tokens = beam_tokens[slot * beam_size + beam]
                finished[sentence].append(Hypothesis(list(tokens), score, length_normalized(score, len(tokens), length_penalty)))
    return [sorted(hypotheses, key=lambda h: h.normalized_score, reverse=True)[:num_hypotheses] for hypotheses in finished]
