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


def split_long(sentence: str, tokens: Callable[[str], int], limit: int) -> Segmented:
    """A sentence as pieces of at most `limit` tokens each (as `tokens` counts them)."""
    pieces, gaps = _fit(sentence, tokens, limit, (CLAUSE_BREAK, WORD_BREAK))
    return Segmented(pieces, ["", *gaps, ""])


def _fit(text: str, tokens: Callable[[str], int], limit: int, breaks: tuple[re.Pattern, ...]) -> tuple[list[str], list[str]]:
    """(pieces, the separators between them): consecutive parts between the first kind of break
    packed while they fit, a part too long on its own cut at the next kind of break."""
    if tokens(text) <= limit:
        return [text], []
    if not breaks:
        return _cut_characters(text, tokens, limit)
    parts = breaks[0].split(text)  # text, separator, text, ...
    pieces: list[str] = []
    gaps: list[str] = []
    current, separator = "", ""
    for index in range(0, len(parts), 2):
        part = parts[index]
        if current and tokens(current + separator + part) <= limit:
            current += separator + part
        else:
            if current:
                pieces.append(current)
                gaps.append(separator)
            if tokens(part) <= limit:
                current = part
            else:
                inner_pieces, inner_gaps = _fit(part, tokens, limit, breaks[1:])
                pieces += inner_pieces[:-1]
                gaps += inner_gaps
                current = inner_pieces[-1]
        separator = parts[index + 1] if index + 1 < len(parts) else ""
    pieces.append(current)
    return pieces, gaps


def _cut_characters(text: str, tokens: Callable[[str], int], limit: int) -> tuple[list[str], list[str]]:
    """The longest prefixes that fit, one after another (a word longer than the limit)."""
    pieces = []
    while text:
        low, high = 1, len(text)  # the longest fitting prefix, by bisection; one character always goes
        while low < high:
            middle = (low + high + 1) // 2
            if tokens(text[:middle]) <= limit:
                low = middle
            else:
                high = middle - 1
        pieces.append(text[:low])
        text = text[low:]
    return pieces, [""] * (len(pieces) - 1)
