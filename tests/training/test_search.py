"""Greedy and beam search, run on the PyTorch models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decoding import search
from decoding.constraints import LengthBound, TokenRules, banned_ngram_ends
from decoding.search import Hypothesis
from tests.training.conftest import MODEL_SPECS, SPECIAL, random_tokens
from training.models import Seq2SeqModel, build_model
from training.search import EnsembleDecoder, TorchIncrementalDecoder


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


@torch.no_grad()
def run(model: Seq2SeqModel, src: torch.Tensor, searcher) -> list[list[Hypothesis]]:
    return search.run_to_completion(lambda _: TorchIncrementalDecoder(model, src), searcher, [[]] * src.size(0))


def repeats(tokens: list[int], size: int) -> bool:
    ngrams = [tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
    return len(ngrams) != len(set(ngrams))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_each_sentence_stops_at_its_own_maximum_length_as_it_would_alone(model: Seq2SeqModel, beam_size: int) -> None:
    src = random_tokens(4, 6, seed=3)
    limits = [3, 9, 1, 6]

    no_eos = TokenRules(min_length=20)  # every hypothesis runs to its limit

    def searcher(sentences: int, max_length):
        if beam_size == 1:
            return search.GreedySearch(sentences, SPECIAL, max_length, no_eos)
        return search.BeamSearch(sentences, SPECIAL, max_length, beam_size=beam_size, num_hypotheses=2, rules=no_eos)

    together = run(model, src, searcher(4, limits))
    for row, limit in enumerate(limits):
        alone = run(model, src[row : row + 1], searcher(1, limit))[0]
        assert [h.tokens for h in together[row]] == [h.tokens for h in alone]
        assert [len(h.tokens) for h in together[row]] == [limit] * len(together[row])


@pytest.mark.parametrize("beam_size", [1, 3])
def test_no_repeat_ngram_size_leaves_no_ngram_twice_and_min_length_holds_eos_back(model: Seq2SeqModel, beam_size: int) -> None:
    src = random_tokens(5, 6, seed=4)

    def searcher(rules: TokenRules):
        if beam_size == 1:
            return search.GreedySearch(5, SPECIAL, 16, rules)
        return search.BeamSearch(5, SPECIAL, 16, beam_size=beam_size, num_hypotheses=beam_size, rules=rules)

    free = [h.tokens for nbest in run(model, src, searcher(TokenRules(min_length=16))) for h in nbest]
    assert any(repeats(tokens, 1) for tokens in free), "16 tokens of an untrained model repeat some; the rule must stop it"
    for size in (1, 2, 3):
        ruled = [h.tokens for nbest in run(model, src, searcher(TokenRules(min_length=16, no_repeat_ngram_size=size))) for h in nbest]
        assert not any(repeats(tokens, size) for tokens in ruled), size
        assert all(len(tokens) == 16 for tokens in ruled)
    at_least = [h.tokens for nbest in run(model, src, searcher(TokenRules(min_length=12))) for h in nbest]
    assert all(len(tokens) >= 12 and SPECIAL.eos not in tokens for tokens in at_least)


def test_repetition_penalty_scales_only_the_tokens_already_generated() -> None:
    log_probs = np.log(np.full((2, 6), 1 / 6, dtype=np.float32))
    penalized = TokenRules(repetition_penalty=2.0).apply(log_probs, [[4, 4, 5], []], position=3, eos=SPECIAL.eos)
    np.testing.assert_allclose(penalized[0, [4, 5]], 2 * log_probs[0, [4, 5]])
    np.testing.assert_array_equal(penalized[0, :4], log_probs[0, :4])
    np.testing.assert_array_equal(penalized[1], log_probs[1])
    held = TokenRules(min_length=4).apply(log_probs, [[4, 5, 6], [4]], position=3, eos=SPECIAL.eos)
    assert np.isneginf(held[:, SPECIAL.eos]).all() and np.isfinite(np.delete(held, SPECIAL.eos, axis=1)).all()


def test_banned_ngram_ends_are_the_tokens_that_would_repeat_an_ngram() -> None:
    assert banned_ngram_ends([7, 8, 9, 7, 8], 3) == [9]
    assert banned_ngram_ends([7, 8, 7, 9, 7], 2) == [8, 9]
    assert banned_ngram_ends([7, 8], 1) == [7, 8]
    assert banned_ngram_ends([7], 3) == [] and banned_ngram_ends([7, 7], 0) == []


def test_the_length_bound_follows_the_source_within_the_cap() -> None:
    bound = LengthBound(a=1.5, b=10)
    assert bound.limits([3, 20, 100], cap=128).tolist() == [14, 40, 128]
    assert LengthBound().limits([3, 20], cap=50).tolist() == [50, 50]


@torch.no_grad()
def test_an_ensemble_decodes_with_the_mean_of_its_members_probabilities() -> None:
    """A Transformer and an RNN as one teacher: every step's distribution is the mean of theirs,
    through beam reordering, and a beam search over it differs from each member's own."""
    torch.manual_seed(1)
    members = [build_model(MODEL_SPECS["transformer-pre"]).eval(), build_model(MODEL_SPECS["rnn-gru-dot"]).eval()]
    src = random_tokens(3, 6, seed=2)
    ensemble = EnsembleDecoder([TorchIncrementalDecoder(member, src) for member in members])
    alone = [TorchIncrementalDecoder(member, src) for member in members]
    tokens = np.full(3, SPECIAL.bos, dtype=np.int64)
    for rows in (np.array([2, 0, 1]), np.array([1, 1, 0])):
        mixed = ensemble.step(tokens)
        expected = np.log(np.mean([np.exp(decoder.step(tokens)) for decoder in alone], axis=0))
        np.testing.assert_allclose(mixed, expected, atol=1e-5)
        np.testing.assert_allclose(np.exp(mixed).sum(axis=-1), 1.0, atol=1e-5)
        ensemble.select(rows)
        for decoder in alone:
            decoder.select(rows)
        tokens = mixed.argmax(axis=-1)[rows]
    ensembled = search.beam_search(EnsembleDecoder([TorchIncrementalDecoder(member, src) for member in members]), 3, SPECIAL, 8, beam_size=3)
    own = [beam_search(member, src, SPECIAL, max_length=8, beam_size=3) for member in members]
    assert all([n[0].tokens for n in ensembled] != [n[0].tokens for n in nbest] for nbest in own)
