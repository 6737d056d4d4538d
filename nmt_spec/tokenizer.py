"""Joint source/target SentencePiece tokenizer with the ids the models expect."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm

from nmt_spec.model_spec import SpecialIds
from nmt_spec.text import normalize_text

# SentencePiece's list API runs on a thread pool that costs about 100 us to start, ten
# sentences' worth: shorter lists go one sentence at a time (a server sees one or a few).
THREADED_BATCH = 64


def train_tokenizer(
    sentences: Iterable[str],
    model_path: str | Path,
    vocab_size: int = 8000,
    model_type: Literal["bpe", "unigram"] = "bpe",
    special_ids: SpecialIds = SpecialIds(),
    seed_sentencepiece_size: int = 1_000_000,
) -> Tokenizer:
    """Train a tokenizer on raw sentences and write it to ``model_path`` (a ``.model`` file)."""
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=(normalize_text(sentence) for sentence in sentences),
        model_writer=model_bytes,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        pad_id=special_ids.pad,
        unk_id=special_ids.unk,
        bos_id=special_ids.bos,
        eos_id=special_ids.eos,
        seed_sentencepiece_size=seed_sentencepiece_size,
        # Deterministic output: the same corpus always gives the same vocabulary.
        num_threads=1,
        minloglevel=2,
    )
    Path(model_path).write_bytes(model_bytes.getvalue())
    return Tokenizer(model_path, special_ids)


class Tokenizer:
    """Text <-> subword ids. Encoded sequences end with eos; bos is the decoder's first input.
    Texts are normalized first (`normalize_text`), in training and in serving alike."""

    def __init__(self, model_path: str | Path, special_ids: SpecialIds = SpecialIds()) -> None:
        self.model_path = Path(model_path)
        self._processor = spm.SentencePieceProcessor(model_file=str(model_path))
        self.special_ids = special_ids
        actual = SpecialIds(
            pad=self._processor.pad_id(),
            unk=self._processor.unk_id(),
            bos=self._processor.bos_id(),
            eos=self._processor.eos_id(),
        )
        if actual != special_ids:
            raise ValueError(
                f"tokenizer {model_path} has special ids {actual}, the model expects {special_ids}"
            )

    @property
    def vocab_size(self) -> int:
        return self._processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._processor.encode(normalize_text(text)) + [self.special_ids.eos]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        eos = self.special_ids.eos
        texts = [normalize_text(text) for text in texts]
        encoded = self._processor.encode(list(texts)) if len(texts) >= THREADED_BATCH else [self._processor.encode(text) for text in texts]
        return [ids + [eos] for ids in encoded]

    def decode(self, ids: Sequence[int]) -> str:
        return self._processor.decode(self._strip_specials(ids))

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        stripped = [self._strip_specials(ids) for ids in batch]
        return self._processor.decode(stripped) if len(stripped) >= THREADED_BATCH else [self._processor.decode(ids) for ids in stripped]

    def id_pieces(self, ids: Sequence[int]) -> list[str]:
        """The subword piece of each id (eos as </s>)."""
        return [self._processor.id_to_piece(int(token)) for token in ids]

    def pieces(self, text: str) -> list[str]:
        return self._processor.encode(normalize_text(text), out_type=str)

    def _strip_specials(self, ids: Sequence[int]) -> list[int]:
        special = self.special_ids
        kept: list[int] = []
        for token in ids:
            if token == special.eos:
                break
            if token not in (special.pad, special.bos):
                kept.append(int(token))
        return kept
