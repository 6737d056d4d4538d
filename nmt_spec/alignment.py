"""Word alignment from subword attention: each target word to the source word it attends to
most. Words are what whitespace separates in the text; SentencePiece marks the first piece of
each with "▁", so a word's pieces are a piece with the mark and the unmarked ones after it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WORD_START = "\u2581"
EOS_PIECE = "</s>"


def word_of_each_piece(pieces: Sequence[str]) -> list[int]:
    """The word index of every piece; -1 for eos and other special pieces, which are no word."""
    words, current = [], -1
    for piece in pieces:
        if piece.startswith("<") and piece.endswith(">"):
            words.append(-1)
            continue
        if piece.startswith(WORD_START) or current < 0:
            current += 1
        words.append(current)
    return words


def word_alignment(source_pieces: Sequence[str], target_pieces: Sequence[str], attention: np.ndarray) -> list[tuple[int, int]]:
    """(target word, source word) pairs, one per target word: the attention (target pieces x
    source pieces) summed over each source word's pieces and averaged over each target word's,
    the most attended source word chosen."""
    source_words, target_words = np.array(word_of_each_piece(source_pieces)), np.array(word_of_each_piece(target_pieces))
    sources, targets = source_words.max(initial=-1) + 1, target_words.max(initial=-1) + 1
    if sources == 0 or targets == 0:
        return []
    columns = source_words >= 0
    per_source_word = np.zeros((attention.shape[0], sources))
    np.add.at(per_source_word.T, source_words[columns], attention[:, columns].T)
    pairs = []
    for word in range(targets):
        rows = per_source_word[target_words == word]
        pairs.append((word, int(rows.mean(axis=0).argmax())))
    return pairs
