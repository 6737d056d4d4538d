"""Greedy and beam search, independent of the framework that computes the logits.

A search is written as one step at a time over the decoder rows it owns, so that several
searches (the sentences of several requests, greedy or beam) can share one running decoder
batch: `RunningBatch` steps them together, drops the rows of finished sentences, and admits new
searches between two steps (in-flight batching)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from decoding.constraints import TokenRules
from nmt_spec import SpecialIds


class IncrementalDecoder(Protocol):
    """A source batch already encoded, decoded one target position at a time.

    Rows are the sentences (or beams) still being decoded; each row knows its own position.
    ``select`` keeps, repeats or reorders rows, so the decoder's caches follow the search.
    With ``output_attentions`` set before a step, ``attention`` holds that step's attention
    over the source (rows, S) after it. A decoder whose graph selects tokens
    (``selects_tokens``) may be given ``top_k`` > 0 before a step: the step then returns None
    and ``top`` holds each row's best top_k tokens and their log-probabilities."""

    output_attentions: bool
    attention: np.ndarray | None

    def step(self, tokens: np.ndarray) -> np.ndarray | None:
        """tokens (rows,) int64, the previous token of each row -> log-probabilities of the
        next token (rows, V) float32 (None when top_k was set)."""

    def select(self, rows: np.ndarray) -> None:
        """Keep only these rows, in this order (indices may repeat)."""


class MergeableDecoder(IncrementalDecoder, Protocol):
    def extend(self, other: MergeableDecoder) -> None:
        """Append the rows of another decoder of the same model, whatever their positions."""

    def place(self, rows: np.ndarray, other: MergeableDecoder) -> None:
        """Overwrite these rows with the rows of another decoder of the same model."""


@dataclass
class Hypothesis:
    tokens: list[int]  # without bos and eos
    score: float  # sum of token log-probabilities, eos included when it was generated
    normalized_score: float  # score / length ** length_penalty: what beams are ranked by
    # (len(tokens), S), with_attention only: row t is the attention over the (padded) source
    # when token t was chosen
    attention: np.ndarray | None = None


def stacked(rows: list[np.ndarray]) -> np.ndarray:
    """Attention rows of one hypothesis as (T, S); a row from before a longer sentence joined
    the batch is narrower, and the source positions it lacks had no weight."""
    width = max((len(row) for row in rows), default=0)
    out = np.zeros((len(rows), width), dtype=np.float32)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def per_sentence(max_length: int | Sequence[int], sentences: int) -> np.ndarray:
    """One maximum output length per sentence, from one for all or one each."""
    return np.broadcast_to(np.asarray(max_length, dtype=np.int64), (sentences,)).copy()


def length_normalized(score: float, length: int, length_penalty: float) -> float:
    """CTranslate2's convention: divide by length ** length_penalty (0 disables it). A large
    penalty overflows the power to infinity (found by fuzzing): the result is then -0.0, not an
    exception that fails the whole batch."""
    with np.errstate(over="ignore"):
        return float(score / np.float64(max(length, 1)) ** length_penalty)


@dataclass
class StepOutput:
    """One decoder step over some rows: the log-probabilities (unless the graph selected the
    tokens), and each row's best tokens, best first, with their log-probabilities, computed
    once for the whole batch rather than per search."""

    log_probs: np.ndarray | None  # (rows, V); None when only the best tokens left the graph
    top_ids: np.ndarray  # (rows, K) int64
    top_log_probs: np.ndarray  # (rows, K)
    attention: np.ndarray | None = None  # (rows, S), when a search asked for it

    @classmethod
    def of(cls, log_probs: np.ndarray, attention: np.ndarray | None = None) -> StepOutput:
        best = log_probs.argmax(axis=-1)[:, None]
        return cls(log_probs, best, np.take_along_axis(log_probs, best, axis=-1), attention)

    @property
    def best(self) -> np.ndarray:
        return self.top_ids[:, 0]

    @property
    def best_log_probs(self) -> np.ndarray:
        return self.top_log_probs[:, 0]

    def candidates(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best tokens of each row, best first, and their log-probabilities (rows, k)."""
        if self.top_ids.shape[1] >= k:
            return self.top_ids[:, :k], self.top_log_probs[:, :k]
        assert self.log_probs is not None, "fewer tokens selected than the search needs"
        vocab = self.log_probs.shape[-1]
        ids = np.argpartition(self.log_probs, vocab - k, axis=-1)[:, vocab - k :]
        scores = np.take_along_axis(self.log_probs, ids, axis=-1)
        order = np.lexsort((ids, -scores), axis=-1)  # best first; ties to the lower id, as TopK
        return np.take_along_axis(ids, order, axis=-1), np.take_along_axis(scores, order, axis=-1)

    def take(self, rows: np.ndarray) -> StepOutput:
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1:  # a contiguous block: views, no copies
            index = slice(int(rows[0]), int(rows[-1]) + 1)
        else:
            index = rows
        attention = self.attention[index] if self.attention is not None else None
        log_probs = self.log_probs[index] if self.log_probs is not None else None
        return StepOutput(log_probs, self.top_ids[index], self.top_log_probs[index], attention)


class Search(Protocol):
    """The search of some sentences over the decoder rows it owns (a contiguous block)."""

    sentences: int
    with_attention: bool  # its hypotheses carry their attention

    @property
    def top_k(self) -> int:
        """The best tokens per row it reads from a step; 0: it needs the whole distribution."""

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, tokens): which of its freshly encoded sentences each first row decodes, and
        the first input token of each row."""

    def advance(self, step: StepOutput) -> tuple[np.ndarray, np.ndarray]:
        """The step's output for its rows -> (rows to keep, in order, and their next tokens).
        No rows left means the search is done."""

    def results(self, start: int = 0, stop: int | None = None) -> list[list[Hypothesis]]:
        """N-best hypotheses per sentence (of sentences start:stop), best first."""


class GreedySearch:
    """Argmax decoding; a sentence that emits eos leaves the batch. One search can hold the
    sentences of many requests (a server merges them: one search per step instead of one per
    request); `finished` says which sentences are done, `cancel` drops some before they are."""

    def __init__(self, sentences: int, special: SpecialIds, max_length: int | Sequence[int], rules: TokenRules = TokenRules(), with_attention: bool = False) -> None:
        self.sentences = sentences
        self.special = special
        self.max_lengths = per_sentence(max_length, sentences)
        self.rules = rules
        self.with_attention = with_attention
        self.attention: list[list[np.ndarray]] = [[] for _ in range(sentences)]
        self.position = 0
        self.active = np.arange(sentences)  # sentence of each row
        self.tokens: list[list[int]] = [[] for _ in range(sentences)]
        self.scores = np.zeros(sentences, dtype=np.float64)
        self.finished = np.zeros(sentences, dtype=bool)
        self.cancelled = np.zeros(sentences, dtype=bool)

    @property
    def top_k(self) -> int:
        return 0 if self.rules.active else 1

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(self.sentences), np.full(self.sentences, self.special.bos, dtype=np.int64)

    def cancel(self, start: int, stop: int) -> None:
        """These sentences' rows leave the batch at the next step."""
        self.cancelled[start:stop] = True

    def advance(self, step: StepOutput) -> tuple[np.ndarray, np.ndarray]:
        if self.rules.active:
            step = StepOutput.of(self.rules.apply(step.log_probs, [self.tokens[s] for s in self.active.tolist()], self.position, self.special.eos), step.attention)
        best = step.best
        self.scores[self.active] += step.best_log_probs
        unfinished = (best != self.special.eos) & ~self.cancelled[self.active]
        for sentence, token in zip(self.active[unfinished].tolist(), best[unfinished].tolist()):
            self.tokens[sentence].append(token)
        if self.with_attention:
            for row in np.flatnonzero(unfinished).tolist():
                self.attention[int(self.active[row])].append(step.attention[row])
        self.position += 1
        unfinished &= self.max_lengths[self.active] > self.position
        keep = np.flatnonzero(unfinished)
        self.finished[self.active[~unfinished]] = True
        self.active = self.active[keep]
        return keep, best[keep]

    def results(self, start: int = 0, stop: int | None = None) -> list[list[Hypothesis]]:
        attention = [stacked(rows) if self.with_attention else None for rows in self.attention[start:stop]]
        return [[Hypothesis(t, float(s), float(s), a)] for t, s, a in zip(self.tokens[start:stop], self.scores[start:stop], attention)]


class BeamSearch:
    """Beam search with n-best. A sentence is done once beam_size hypotheses have ended with
    eos; its rows then leave the batch. Hypotheses still open at max_length are finished as
    they are."""

    def __init__(
        self,
        sentences: int,
        special: SpecialIds,
        max_length: int | Sequence[int],
        beam_size: int = 4,
        length_penalty: float = 1.0,
        num_hypotheses: int = 1,
        rules: TokenRules = TokenRules(),
        with_attention: bool = False,
    ) -> None:
        if not 1 <= num_hypotheses <= beam_size:
            raise ValueError(f"num_hypotheses must be between 1 and beam_size ({beam_size})")
        self.sentences = sentences
        self.special = special
        self.max_lengths = per_sentence(max_length, sentences)
        self.rules = rules
        self.with_attention = with_attention
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.num_hypotheses = num_hypotheses
        self.position = 0
        self.open = np.arange(sentences)  # the sentences still decoding, beam_size rows each
        self.beam_scores = np.zeros((sentences, beam_size))
        self.beam_scores[:, 1:] = -np.inf  # the beams start identical: expand only the first
        self.beam_tokens: list[list[int]] = [[] for _ in range(sentences * beam_size)]
        self.beam_attention: list[list[np.ndarray]] = [[] for _ in range(sentences * beam_size)]  # reordered with the beams
        self.finished: list[list[Hypothesis]] = [[] for _ in range(sentences)]

    @property
    def top_k(self) -> int:
        # A sentence's 2 x beam best candidates over all its beams, which always hold beam_size
        # that do not end whatever the eos count, are among the 2 x beam best of each beam.
        return 0 if self.rules.active else 2 * self.beam_size

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.repeat(np.arange(self.sentences), self.beam_size)
        return rows, np.full(len(rows), self.special.bos, dtype=np.int64)

    def _finish(self, sentence: int, row: int, score: float, length: int) -> None:
        attention = stacked(self.beam_attention[row]) if self.with_attention else None
        self.finished[sentence].append(Hypothesis(list(self.beam_tokens[row]), score, length_normalized(score, length, self.length_penalty), attention))

    def advance(self, step: StepOutput) -> tuple[np.ndarray, np.ndarray]:
        if self.rules.active:
            step = StepOutput.of(self.rules.apply(step.log_probs, self.beam_tokens, self.position, self.special.eos), step.attention)
        beam_size, width = self.beam_size, 2 * self.beam_size
        row_ids, row_scores = step.candidates(width)
        candidates = (self.beam_scores[:, :, None] + row_scores.reshape(len(self.open), beam_size, width)).reshape(len(self.open), -1)
        top = np.argsort(-candidates, axis=-1, kind="stable")[:, :width]
        top_scores = np.take_along_axis(candidates, top, axis=-1)
        row_ids = row_ids.reshape(len(self.open), -1)

        next_rows: list[int] = []
        next_tokens: list[int] = []
        next_scores: list[float] = []
        still_open: list[int] = []
        for slot, sentence in enumerate(self.open.tolist()):
            chosen_rows, chosen_tokens, chosen_scores = [], [], []
            tokens = row_ids[slot]
            for rank, (flat, score) in enumerate(zip(top[slot].tolist(), top_scores[slot].tolist())):
                row, token = slot * beam_size + flat // width, int(tokens[flat])
                if token == self.special.eos:
                    if rank < beam_size and score > -np.inf:
                        self._finish(sentence, row, score, len(self.beam_tokens[row]) + 1)
                    continue
                chosen_rows.append(row)
                chosen_tokens.append(token)
                chosen_scores.append(score)
                if len(chosen_rows) == beam_size:
                    break
            if len(self.finished[sentence]) >= beam_size:
                continue  # done: its rows leave the batch
            still_open.append(slot)
            next_rows += chosen_rows
            next_tokens += chosen_tokens
            next_scores += chosen_scores
        self.beam_tokens = [self.beam_tokens[r] + [t] for r, t in zip(next_rows, next_tokens)]
        if self.with_attention:
            self.beam_attention = [self.beam_attention[r] + [step.attention[r]] for r in next_rows]
        self.open = self.open[still_open]
        self.beam_scores = np.array(next_scores).reshape(len(self.open), beam_size)
        self.position += 1
        rows, tokens = np.array(next_rows, dtype=np.int64), np.array(next_tokens, dtype=np.int64)
        at_limit = self.max_lengths[self.open] <= self.position
        if at_limit.any():
            return self._finish_at_limit(at_limit, rows, tokens)
        return rows, tokens

    def _finish_at_limit(self, at_limit: np.ndarray, rows: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sentences at their maximum length are finished with their open beams as they are;
        the rows of the others go on."""
        for slot in np.flatnonzero(at_limit).tolist():
            for beam in range(self.beam_size):
                score = float(self.beam_scores[slot, beam])
                if score > -np.inf:
                    row = slot * self.beam_size + beam
                    self._finish(int(self.open[slot]), row, score, len(self.beam_tokens[row]))
        going_on = np.flatnonzero(~at_limit)
        kept = (going_on[:, None] * self.beam_size + np.arange(self.beam_size)).ravel()
        self.open, self.beam_scores = self.open[going_on], self.beam_scores[going_on]
        self.beam_tokens = [self.beam_tokens[r] for r in kept.tolist()]
        if self.with_attention:
            self.beam_attention = [self.beam_attention[r] for r in kept.tolist()]
        return rows[kept], tokens[kept]

    def results(self, start: int = 0, stop: int | None = None) -> list[list[Hypothesis]]:
        return [sorted(hypotheses, key=lambda h: h.normalized_score, reverse=True)[: self.num_hypotheses] for hypotheses in self.finished[start:stop]]


class RunningBatch:
    """Searches decoded together in one decoder batch, each owning some of its rows.

    ``admit`` encodes new sentences and appends their rows (the decoder must then be a
    MergeableDecoder); ``step`` advances every search by one token and returns those that
    finished. Rows a search lets go of are not copied out at once: compacting the caches costs
    about as much as decoding a dozen rows, so dead rows ride along until there are enough of
    them, or for a few steps at most, or until rows must be reordered (beams) or appended."""

    def __init__(self, start: Callable[[list[list[int]]], IncrementalDecoder], compact_fraction: float = 0.25, max_dead_steps: int = 8) -> None:
        self.start = start  # token-id sources (each ending in eos) -> their encoded decoder
        self.compact_fraction = compact_fraction
        self.max_dead_steps = max_dead_steps
        self.decoder: IncrementalDecoder | None = None
        self.searches: list[Search] = []
        self.rows: list[np.ndarray] = []  # the decoder rows of each search
        self.tokens = np.zeros(0, dtype=np.int64)  # next input of every decoder row, dead ones too
        self.dead_steps = 0  # steps since the oldest dead row died

    @property
    def size(self) -> int:
        """Live rows."""
        return sum(len(rows) for rows in self.rows)

    def admit(self, searches: Sequence[Search], sources: list[list[int]]) -> None:
        """Start searches whose sentences are, in order, the given sources. They take the
        places of dead rows when there are enough, else the batch is compacted and grows."""
        decoder = self.start(sources)
        selections, tokens, offset = [], [], 0
        for search in searches:
            rows, first = search.start()
            selections.append(rows + offset)
            tokens.append(first)
            offset += search.sentences
        selection = np.concatenate(selections)
        if not np.array_equal(selection, np.arange(offset)):
            decoder.select(selection)
        new_tokens = np.concatenate(tokens)
        dead = np.setdiff1d(np.arange(len(self.tokens)), np.concatenate(self.rows)) if self.rows else np.arange(len(self.tokens))
        if self.decoder is not None and len(dead) >= len(new_tokens):
            slots = dead[: len(new_tokens)]
            self.decoder.place(slots, decoder)  # type: ignore[attr-defined]
            self.tokens[slots] = new_tokens
        else:
            if self.decoder is None:
                self.decoder = decoder
            else:
                self._compact()
                self.decoder.extend(decoder)  # type: ignore[attr-defined]
            slots = len(self.tokens) + np.arange(len(new_tokens))
            self.tokens = np.concatenate([self.tokens, new_tokens])
        start = 0
        for first in tokens:
            self.rows.append(slots[start : start + len(first)])
            start += len(first)
        self.searches += searches

    def remove(self, search: Search) -> None:
        """Drop a search before it finishes (its client went away): its rows die."""
        index = self.searches.index(search)
        del self.searches[index], self.rows[index]
        if not self.searches:
            self._reset()

    def _reset(self) -> None:
        self.decoder, self.rows, self.tokens, self.dead_steps = None, [], np.zeros(0, dtype=np.int64), 0

    def _compact(self, rows: list[np.ndarray] | None = None, tokens: np.ndarray | None = None) -> None:
        """Copy the live rows (in the order given, repeats allowed) into a dense batch."""
        rows = self.rows if rows is None else rows
        order = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        if self.decoder is not None and not np.array_equal(order, np.arange(len(self.tokens))):
            self.decoder.select(order)
        self.tokens = self.tokens[order] if tokens is None else tokens
        starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
        self.rows = [start + np.arange(len(r)) for start, r in zip(starts, rows)]
        self.dead_steps = 0

    def step(self) -> list[Search]:
        assert self.decoder is not None, "step() on an empty batch"
        # Computed only for the steps of batches holding a search that wants it.
        self.decoder.output_attentions = any(search.with_attention for search in self.searches)
        if getattr(self.decoder, "selects_tokens", False):
            wanted = [search.top_k for search in self.searches]
            self.decoder.top_k = max(wanted) if min(wanted) > 0 else 0
        log_probs = self.decoder.step(self.tokens)
        attention = self.decoder.attention if self.decoder.output_attentions else None
        output = StepOutput.of(log_probs, attention) if log_probs is not None else StepOutput(None, *self.decoder.top, attention)
        kept_rows, kept_tokens, running, done = [], [], [], []
        reordered = False
        for search, rows in zip(self.searches, self.rows):
            kept, next_tokens = search.advance(output.take(rows))
            if len(kept) == 0:
                done.append(search)
                continue
            chosen = rows[kept]
            reordered = reordered or bool(np.any(np.diff(chosen) <= 0))
            kept_rows.append(chosen)
            kept_tokens.append(next_tokens)
            running.append(search)
        self.searches = running
        if not running:
            self._reset()
            return done
        live = sum(len(r) for r in kept_rows)
        dead = len(self.tokens) - live
        self.dead_steps = self.dead_steps + 1 if dead else 0
        if reordered or dead > self.compact_fraction * len(self.tokens) or self.dead_steps > self.max_dead_steps:
            self.rows = kept_rows
            self._compact(kept_rows, np.concatenate(kept_tokens))
        else:
            self.rows = kept_rows
            self.tokens = np.zeros_like(self.tokens)  # dead rows decode a pad token
            for chosen, next_tokens in zip(kept_rows, kept_tokens):
                self.tokens[chosen] = next_tokens
        return done


def run_to_completion(start: Callable[[list[list[int]]], IncrementalDecoder], search: Search, sources: list[list[int]]) -> list[list[Hypothesis]]:
    batch = RunningBatch(start)
    batch.admit([search], sources)
    while batch.searches:
        batch.step()
    return search.results()


def greedy_search(decoder: IncrementalDecoder, batch_size: int, special: SpecialIds, max_length: int) -> list[Hypothesis]:
    """Greedy search over an already encoded batch."""
    return [nbest[0] for nbest in run_to_completion(lambda _: decoder, GreedySearch(batch_size, special, max_length), [[]] * batch_size)]


def beam_search(
    decoder: IncrementalDecoder,
    batch_size: int,
    special: SpecialIds,
    max_length: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    num_hypotheses: int = 1,
) -> list[list[Hypothesis]]:
    """Beam search over an already encoded batch; num_hypotheses per sentence, best first."""
    search = BeamSearch(batch_size, special, max_length, beam_size, length_penalty, num_hypotheses)
    return run_to_completion(lambda _: decoder, search, [[]] * batch_size)
