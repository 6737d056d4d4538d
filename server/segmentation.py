"""Texts (paragraphs, lines of a document, subtitles) into the sentences a model translates, and
the translations back into one text with the original whitespace and line breaks between them.

Lines are split first (a line break always ends a sentence), then each line into sentences by
sentencex (Wikimedia's rule-based segmenter: on 534 paragraphs of 5 Multi30k sentences it
recovered 532 exactly at under 3 us a sentence, where pysbd recovered 534 at 600 us and
sentence-splitter 520, losing double spaces; docs/SEGMENTATION.md). A sentence still
longer than the model accepts is cut at clause punctuation, then at whitespace, then, as a last
resort, between characters."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import sentencex

from nmt_spec.text import normalize_text, remove_invisible

LINE_BREAK = re.compile("(\r\n|[\n\r\u000b\u000c\u0085\u2028\u2029])")
CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2013\u2014])(\s+)")  # the whitespace after a comma, semicolon, colon, dash
WORD_BREAK = re.compile(r"(\s+)")


@dataclass(frozen=True)
class Segmented:
    """A text as sentences and what lies around them: gaps[0] before the first sentence,
    gaps[i] between sentences i-1 and i, gaps[-1] after the last."""

    sentences: list[str]
    gaps: list[str]

    def join(self, translations: Sequence[str]) -> str:
        """The translations of the sentences, in the text's layout."""
        parts = [self.gaps[0]]
        for translation, gap in zip(translations, self.gaps[1:], strict=True):
            parts += [translation, gap]
        return "".join(parts)


def whole(text: str) -> Segmented:
    """The text as one sentence (splitting turned off), surrounding whitespace kept aside."""
    core = text.strip()
    if not normalize_text(core):
        return Segmented([], [remove_invisible(text)])
    start = text.find(core)
    return Segmented([core], [text[:start], text[start + len(core) :]])


def split_text(text: str, language: str) -> Segmented:
    """The sentences of a text; pieces that hold nothing to translate go into the gaps, of which
    only the whitespace is kept (invisible characters are no layout)."""
    sentences: list[str] = []
    gaps = [""]
    for piece in _pieces(text, language):
        core = piece.strip()
        if not normalize_text(core):
            gaps[-1] += remove_invisible(piece)
            continue
        start = piece.find(core)
        gaps[-1] += piece[:start]
        sentences.append(core)
        gaps.append(piece[start + len(core) :])
    return Segmented(sentences, gaps)


def _pieces(text: str, language: str) -> Iterator[str]:
    """Consecutive pieces of the text (joined, they are the text): line breaks, and the sentences
    of each line with their trailing whitespace."""
    for part in LINE_BREAK.split(text):
        if not part or LINE_BREAK.fullmatch(part):
            yield part
        else:
            yield from sentencex.segment(language, part)


@dataclass(frozen=True)
class CutSentence:
    """A sentence cut into pieces that fit (its layout: pieces and the whitespace cut at), and
    the token ids of each piece, so nothing is tokenized again."""

    layout: Segmented
    ids: list[list[int]]


def split_long(sentence: str, tokens: int, encode: Callable[[str], list[int]], limit: int, cancelled: Callable[[], bool] = lambda: False) -> CutSentence:
    """A sentence of `tokens` tokens (eos included) as pieces of at most `limit` tokens each (as
    `encode` counts them), cut at clause punctuation, else at whitespace, else between characters.

    In linear time: a piece is a window of a character budget, ended at the best break in it;
    the budget comes from the characters per token of what was last tokenized, and is at most
    twice the last piece. A piece is tokenized once, and again only when it came out
    over the limit, on a window at most 0.9 of the last, so the characters tokenized are a small
    multiple of the sentence's (tests/server/test_segmentation.py counts them on adversarial
    text)."""
    eos_tokens = len(encode(""))
    room = limit - eos_tokens  # what a piece may hold besides eos
    pieces: list[str] = []
    ids: list[list[int]] = []
    gaps = [""]
    start = 0
    budget = _budget(len(sentence), tokens - eos_tokens, room, 0.95)
    while start < len(sentence):
        if cancelled():
            raise Cancelled
        end = _cut(sentence, start, budget)
        piece = sentence[start:end]
        encoded = encode(piece)
        content = len(encoded) - eos_tokens
        if len(encoded) > limit and len(piece) > 1:
            budget = min(_budget(len(piece), content, room, 0.9), int(0.9 * len(piece)))
            continue
        after = _after_whitespace(sentence, end)
        if normalize_text(piece):
            pieces.append(piece)
            ids.append(encoded)
            gaps.append(sentence[end:after])
        else:  # invisible characters only: nothing to translate, so layout
            gaps[-1] += remove_invisible(piece) + sentence[end:after]
        budget = min(_budget(len(piece), content, room, 0.95), 2 * len(piece))
        start = after
    return CutSentence(Segmented(pieces, gaps), ids)


def _budget(characters: int, content_tokens: int, room: int, margin: float) -> int:
    """Characters that should make `room` tokens, at the rate of the last text tokenized."""
    if content_tokens <= 0:
        return max(1, characters)
    return max(1, int(margin * characters * room / content_tokens))


def _cut(text: str, start: int, budget: int) -> int:
    """Where the piece from `start` ends: the text's end if within budget, else the last clause
    break in the window's second half, else the window's last whitespace, else its end."""
    stop = start + budget
    if stop >= len(text):
        return len(text)
    window = text[start:stop]
    for breaks, earliest in ((CLAUSE_BREAK, len(window) // 2), (WORD_BREAK, 1)):
        last = None
        for last in breaks.finditer(window, earliest):
            pass
        if last is not None:
            return start + last.start()
    return stop


def _after_whitespace(text: str, position: int) -> int:
    """The next piece starts after the whitespace a cut fell on, however far it runs."""
    run = WORD_BREAK.match(text, position)
    return run.end() if run else position


class Cancelled(Exception):
    """The request was cancelled (its deadline passed, its client left) while it was prepared."""


def _window_end(text: str, start: int, budget: int) -> tuple[int, int]:
    """(where the piece from `start` ends, where the next begins): the text's end if within
    budget, else the last clause break in the window's second half, else its last whitespace,
    else the window's end."""
    stop = start + budget
    if stop >= len(text):
        return len(text), len(text)
    window = text[start:stop]
    half = len(window) // 2
    for breaks in (CLAUSE_BREAK, WORD_BREAK):
        last = None
        for last in breaks.finditer(window, half if breaks is CLAUSE_BREAK else 1):
            pass
        if last is not None and last.start() > 0:
            # a break that reaches the window's end may go on beyond it: the next piece starts after it
            after = WORD_BREAK.match(text, start + last.start())
            return start + last.start(), after.end() if after else start + last.end()
    return stop, stop
