"""Greedy and beam search, run on the PyTorch models."""

from __future__ import annotations

import pytest
import torch

from decoding import search
from decoding.search import Hypothesis
from tests.training.conftest import SPECIAL, random_tokens
from training.models import Seq2SeqModel
from training.search import TorchIncrementalDecoder


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: torch.Tensor, special, max_length: int) -> list[Hypothesis]:
    return search.greedy_search(TorchIncrementalDecoder(model, src), src.size(0), special, max_length)


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: torch.Tensor, special, max_length: int, **options) -> list[list[Hypothesis]]:
    return search.beam_search(TorchIncrementalDecoder(model, src), src.size(0), special, max_length, **options)


def test_beam_search_with_beam_1_equals_greedy(model: Seq2SeqModel) -> None:
    src = random_tokens(6, 7)
    src[3, 4:] = SPECIAL.pad
    greedy = greedy_search(model, src, SPECIAL, max_length=12)
    beam = beam_search(model, src, SPECIAL, max_length=12, beam_size=1)
    assert [h.tokens for h in greedy] == [nbest[0].tokens for nbest in beam]
    for g, b in zip(greedy, beam):
        assert g.score == pytest.approx(b[0].score, abs=1e-4)


def test_batched_greedy_equals_one_sentence_at_a_time(model: Seq2SeqModel) -> None:
    src = random_tokens(4, 8)
    src[0, 5:] = SPECIAL.pad
    src[2, 3:] = SPECIAL.pad
    batched = greedy_search(model, src, SPECIAL, max_length=10)
    for row in range(4):
        length = int(src[row].ne(SPECIAL.pad).sum())
        alone = greedy_search(model, src[row : row + 1, :length], SPECIAL, max_length=10)
        assert alone[0].tokens == batched[row].tokens


def test_beam_search_returns_n_best_sorted_by_normalized_score(model: Seq2SeqModel) -> None:
    src = random_tokens(3, 6)
    results = beam_search(model, src, SPECIAL, max_length=8, beam_size=4, length_penalty=1.0, num_hypotheses=3)
    assert [len(nbest) for nbest in results] == [3, 3, 3]
    for nbest in results:
        scores = [h.normalized_score for h in nbest]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in nbest}) == 3  # distinct hypotheses


@torch.no_grad()
def test_beam_search_scores_are_the_sum_of_token_log_probabilities(model: Seq2SeqModel) -> None:
    src = random_tokens(1, 6)
    best = beam_search(model, src, SPECIAL, max_length=6, beam_size=3)[0][0]
    encoded = model.encode(src)
    state = model.init_state(encoded)
    total, prev = 0.0, torch.tensor([SPECIAL.bos])
    tokens = best.tokens + ([SPECIAL.eos] if len(best.tokens) < 6 else [])
    for step, token in enumerate(tokens):
        logits, state = model.decode_step(prev, step, encoded, state)
        total += float(torch.log_softmax(logits, dim=-1)[0, token])
        prev = torch.tensor([token])
    assert best.score == pytest.approx(total, abs=1e-4)


def test_beam_search_rejects_more_hypotheses_than_beams(model: Seq2SeqModel) -> None:
    with pytest.raises(ValueError, match="num_hypotheses"):
        beam_search(model, random_tokens(1, 4), SPECIAL, max_length=4, beam_size=2, num_hypotheses=3)


def test_a_huge_length_penalty_ranks_instead_of_overflowing() -> None:
    """Found by fuzzing the server: length ** 342 overflowed a Python float and failed the batch."""
    assert search.length_normalized(-3.0, 5, 342.0) <= 0.0
    assert search.length_normalized(-3.0, 5, 1.0) == pytest.approx(-0.6)
