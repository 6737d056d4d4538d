"""Cutting over-long sentences in linear time: on adversarial text (no spaces, no punctuation, one
huge word, mixed scripts, emoji, invisible characters) the characters tokenized grow linearly
with the input, every piece fits, and the pieces with their gaps are the text again."""

from __future__ import annotations

import random

import pytest

from nmt_spec import Tokenizer
from nmt_spec.model_spec import SpecialIds
from nmt_spec.text import remove_invisible
from server.segmentation import split_long
from tests.server.running_server import shipped

LIMIT = 128
# The cutter's worst case, argued in split_long: a window is at most twice the last piece, and a
# window over the limit is retried at most 0.9 of itself (a geometric sum of 10 windows).
CHARACTERS_TOKENIZED_PER_CHARACTER = 4


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer(shipped("transformer-en-de") / "tokenizer.model", SpecialIds())


def adversarial(kind: str, size: int) -> str:
    rng = random.Random(size)
    if kind == "no spaces":
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size))
    if kind == "one letter":
        return "a" * size
    if kind == "words without punctuation":
        return " ".join("".join(rng.choice("aeioustrnl") for _ in range(rng.randint(1, 9))) for _ in range(size // 6))[:size]
    if kind == "one huge word among short ones":
        return "a dog " + "x" * (size - 12) + " a cat"
    if kind == "mixed scripts":
        alphabet = "abcxyzабвгдежαβγδεあいうえお漢字文章한국어עבריתالعربية"
        return "".join(rng.choice(alphabet) for _ in range(size))
    if kind == "emoji":
        return "".join(rng.choice("😀🎉🐶🚲❤️👍🏽") for _ in range(size))[:size]
    if kind == "invisible runs":
        return "".join("a" + "\u200b" * rng.randint(0, 400) for _ in range(size // 100))[:size]
    if kind == "changing density":  # long easy words, then one-character tokens, again and again
        chunks = []
        while sum(map(len, chunks)) < size:
            chunks += ["the " * rng.randint(50, 600), "".join(rng.choice("😀漢字ж") for _ in range(rng.randint(20, 300)))]
        return "".join(chunks)[:size]
    if kind == "clauses":
        return ", ".join(" ".join(["a man is riding a bike"] * rng.randint(1, 40)) for _ in range(size // 60))[:size]
    raise ValueError(kind)


KINDS = ["no spaces", "one letter", "words without punctuation", "one huge word among short ones", "mixed scripts", "emoji", "invisible runs", "changing density", "clauses"]


@pytest.mark.parametrize("kind", KINDS)
def test_characters_tokenized_grow_linearly_and_every_piece_fits(tokenizer: Tokenizer, kind: str) -> None:
    for size in (4_000, 32_000, 131_072):
        text = adversarial(kind, size).strip()
        tokenized = [0, 0]  # characters, calls

        def counting_encode(piece: str) -> list[int]:
            tokenized[0] += len(piece)
            tokenized[1] += 1
            return tokenizer.encode(piece)

        cut = split_long(text, len(tokenizer.encode(text)), counting_encode, LIMIT)
        assert tokenized[0] <= CHARACTERS_TOKENIZED_PER_CHARACTER * len(text), f"{kind}, {len(text)} characters: {tokenized[0]} tokenized in {tokenized[1]} calls"
        assert all(len(ids) <= LIMIT for ids in cut.ids)
        assert cut.ids == [tokenizer.encode(piece) for piece in cut.layout.sentences]
        # the text again, but for pieces of invisible characters only (no layout: dropped)
        assert remove_invisible(cut.layout.join(cut.layout.sentences)) == remove_invisible(text)
        # pieces are not needlessly small: on average at least a quarter of the limit
        assert sum(map(len, cut.ids)) >= len(cut.ids) * LIMIT / 4 or len(cut.ids) == 1


def test_a_run_on_sentence_is_cut_at_clause_breaks(tokenizer: Tokenizer) -> None:
    clauses = [f"a man number {n} is riding a red bike down the long road" for n in range(40)]
    text = ", ".join(clauses) + "."
    cut = split_long(text, len(tokenizer.encode(text)), tokenizer.encode, LIMIT)
    assert len(cut.layout.sentences) >= 3
    assert all(gap == " " for gap in cut.layout.gaps[1:-1])
    assert all(piece.endswith(",") for piece in cut.layout.sentences[:-1]), "cut after a comma, not inside a clause"


def test_a_word_longer_than_the_limit_is_cut_between_characters_and_the_words_around_it_kept_whole(tokenizer: Tokenizer) -> None:
    text = "two dogs " + "z" * 3000 + " play in the snow"
    cut = split_long(text, len(tokenizer.encode(text)), tokenizer.encode, LIMIT)
    assert cut.layout.join(cut.layout.sentences) == text
    assert "play in the snow" in cut.layout.sentences[-1]
    assert all(len(ids) <= LIMIT for ids in cut.ids)
