"""What the tokenizer sees of a text: the same normalization for training and serving, so that a
server translates text in the form the model learnt."""

from __future__ import annotations

import re
import unicodedata

# Control characters other than whitespace (C0, DEL, C1) and invisible format characters: zero-width
# space, joiners, word joiner, soft hyphen, byte-order mark, bidirectional marks. A copy-paste
# brings them in; the training text has none, so each would become an unknown token.
_INVISIBLE = re.compile("[\u0000-\u0008\u000e-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC (full-width forms, ligatures, non-breaking spaces), invisible characters removed,
    every run of whitespace (tabs, line breaks included) one space, no space at either end."""
    text = remove_invisible(unicodedata.normalize("NFKC", text))
    return _WHITESPACE.sub(" ", text).strip()


def remove_invisible(text: str) -> str:
    return _INVISIBLE.sub("", text)
