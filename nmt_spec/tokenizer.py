"""Joint source/target SentencePiece tokenizer with the ids the models expect."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm

from nmt_spec.model_spec import ModelSpec, SpecialIds
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


class VocabularyTokenizer:
    """A SentencePiece model per side and one vocabulary (piece -> id) over both, as Marian
    models have them: source text -> source pieces -> ids (unknown pieces: unk), ids -> pieces
    -> target text. The same interface as Tokenizer."""

    def __init__(self, source_model: str | Path, target_model: str | Path, vocabulary_file: str | Path, special_ids: SpecialIds) -> None:
        self._source = spm.SentencePieceProcessor(model_file=str(source_model))
        self._target = spm.SentencePieceProcessor(model_file=str(target_model))
        self.vocabulary: dict[str, int] = json.loads(Path(vocabulary_file).read_text(encoding="utf-8"))
        self.piece_of = {index: piece for piece, index in self.vocabulary.items()}
        self.special_ids = special_ids
        # left out of decoded text, as transformers' decode(skip_special_tokens=True) leaves them
        self._special = {special_ids.pad, special_ids.bos, special_ids.eos, special_ids.unk}

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        unk = self.special_ids.unk
        return [self.vocabulary.get(piece, unk) for piece in self._source.encode(normalize_text(text), out_type=str)] + [self.special_ids.eos]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        pieces = []
        for token in ids:
            if token == self.special_ids.eos:
                break
            if token not in self._special:
                pieces.append(self.piece_of.get(int(token), ""))
        # Pieces that the target model does not know keep their word marks: spaces, as Marian's
        # own tokenizer makes them.
        return self._target.decode_pieces(pieces).replace("\u2581", " ").strip()

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def id_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.piece_of.get(int(token), "<unk>") for token in ids]

    def pieces(self, text: str) -> list[str]:
        return self._source.encode(normalize_text(text), out_type=str)


def load_tokenizer(directory: Path, spec: ModelSpec) -> Tokenizer | VocabularyTokenizer:
    """The tokenizer a spec describes, its files in `directory`."""
    if spec.vocabulary_file:
        return VocabularyTokenizer(directory / spec.tokenizer_file, directory / spec.target_tokenizer_file, directory / spec.vocabulary_file, spec.special_ids)
    return Tokenizer(directory / spec.tokenizer_file, spec.special_ids)


def tokenizer_files(spec: ModelSpec) -> list[str]:
    return [name for name in (spec.tokenizer_file, spec.target_tokenizer_file, spec.vocabulary_file) if name]
