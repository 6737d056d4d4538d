"""Grouping sentences into length-sorted batches bounded by padded tokens, and running a search
over each batch."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from decoding.constraints import LengthBound, TokenRules
from decoding.fixed_greedy import FixedShapeGreedy
from decoding.search import (
    BeamSearch,
    GreedySearch,
    Hypothesis,
    IncrementalDecoder,
    Search,
    run_to_completion,
)
from nmt_spec import SpecialIds


def token_batches(lengths: list[tuple[int, int]], max_tokens: int, seed: int | None, max_examples: int | None = None) -> list[list[int]]:
    """Group example indices into batches of similar length whose padded size
    (examples x longest side) stays within max_tokens, and of at most max_examples. With a
    seed, lengths are broken into ties randomly and the batch order is shuffled: the same seed
    gives the same batches."""
    rng = random.Random(seed)
    tie_break = [rng.random() for _ in lengths] if seed is not None else [0.0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][0], lengths[i][1], tie_break[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        longest_with = max(longest, *lengths[index])
        if current and (longest_with * (len(current) + 1) > max_tokens or len(current) == max_examples):
            batches.append(current)
            current, longest_with = [], max(lengths[index])
        current.append(index)
        longest = longest_with
    if current:
        batches.append(current)
    if seed is not None:
        rng.shuffle(batches)
    return batches


def pad_ids(sequences: list[list[int]], pad_id: int) -> np.ndarray:
    batch = np.full((len(sequences), max(len(s) for s in sequences)), pad_id, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = sequence
    return batch


@dataclass(frozen=True)
class SearchOptions:
    beam_size: int = 1  # 1: greedy search
    length_penalty: float = 1.0
    num_hypotheses: int = 1
    max_decoding_length: int = 128  # target tokens (eos included), for every sentence
    length_bound: LengthBound = LengthBound()  # and at most this function of each source's length
    rules: TokenRules = TokenRules()
    with_attention: bool = False  # hypotheses carry their attention over the source

    @property
    def plain_greedy(self) -> bool:
        """Greedy with nothing else of a step (no token rules, no attention): what the
        fixed-shape step decodes."""
        return self.beam_size == 1 and not self.rules.active and not self.with_attention

    def max_lengths(self, sources: Sequence[Sequence[int]]) -> np.ndarray:
        """Each sentence's maximum output length: the bound of its source, within the cap, and
        never below the minimum asked for."""
        bound = self.length_bound.limits([len(source) for source in sources], self.max_decoding_length)
        return np.maximum(bound, min(self.rules.min_length, self.max_decoding_length))


def make_search(options: SearchOptions, sources: Sequence[Sequence[int]], special: SpecialIds) -> Search:
    max_lengths = options.max_lengths(sources)
    if options.beam_size == 1:
        return GreedySearch(len(sources), special, max_lengths, options.rules, options.with_attention)
    return BeamSearch(len(sources), special, max_lengths, options.beam_size, options.length_penalty, options.num_hypotheses, options.rules, options.with_attention)


def search_batches(
    sources: list[list[int]],
    start: Callable[[np.ndarray], IncrementalDecoder],
    special: SpecialIds,
    options: SearchOptions,
    max_batch_tokens: int,
    max_batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[Hypothesis]]:
    """N-best lists for token-id sources (each ending in eos), in input order. `start` encodes a
    padded (B, S) batch and returns its decoder. Batches are sorted by length and sized by
    rows x longest source, beams counted as rows, and hold at most max_batch_size sentences;
    on_batch hears how many sentences each finished batch held (progress)."""
    lengths = [(len(s) * options.beam_size, len(s) * options.beam_size) for s in sources]
    results: list[list[Hypothesis]] = [[] for _ in sources]
    for indices in token_batches(lengths, max_batch_tokens, seed=None, max_examples=max_batch_size):
        batch_sources = [sources[i] for i in indices]
        search = make_search(options, batch_sources, special)
        nbest = run_to_completion(lambda batch: start(pad_ids(batch, special.pad)), search, batch_sources)
        for index, hypotheses in zip(indices, nbest):
            results[index] = hypotheses
        if on_batch is not None:
            on_batch(len(indices))
    return results


def fixed_greedy_batches(
    sources: list[list[int]], engine: FixedShapeGreedy, options: SearchOptions, max_batch_tokens: int, max_batch_size: int | None = None
) -> list[list[Hypothesis]]:
    """search_batches' greedy search, in its batches, on the fixed-shape step (options without
    token rules or attention, which that form does not apply)."""
    results: list[list[Hypothesis]] = [[] for _ in sources]
    for indices in token_batches([(len(s), len(s)) for s in sources], max_batch_tokens, seed=None, max_examples=max_batch_size):
        batch = [sources[i] for i in indices]
        for index, hypothesis in zip(indices, engine.translate(batch, options.max_lengths(batch))):
            results[index] = [hypothesis]
    return results
