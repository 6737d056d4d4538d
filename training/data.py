"""Parallel corpus reading, encoding and length-bucketed batching by token count."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from decoding.batching import token_batches
from nmt_spec import Tokenizer, corpus
from nmt_spec.corpus import read_lines
from training.config import DataConfig


def read_parallel(config: DataConfig, split: str, limit: int | None = None) -> tuple[list[str], list[str]]:
    return corpus.read_parallel(config.directory, split, config.source_language, config.target_language, limit)


def read_training_pairs(config: DataConfig) -> tuple[list[str], list[str]]:
    """The training split's pairs, then each extra target file's lines paired with the same sources."""
    sources, targets = read_parallel(config, config.train_split, config.limit_train_pairs)
    all_sources, all_targets = list(sources), list(targets)
    for path in config.extra_train_targets:
        extra = read_lines(path, config.limit_train_pairs)
        if len(extra) != len(sources):
            raise ValueError(f"{path} has {len(extra)} lines, the training split has {len(sources)} sources: it must translate each of them")
        all_sources += sources
        all_targets += extra
    return all_sources, all_targets


@dataclass
class EncodedCorpus:
    sources: list[list[int]]  # each ends with eos
    targets: list[list[int]]

    def __len__(self) -> int:
        return len(self.sources)


def encode_corpus(
    tokenizer: Tokenizer, sources: list[str], targets: list[str], max_length: int | None = None
) -> EncodedCorpus:
    encoded_sources = tokenizer.encode_batch(sources)
    encoded_targets = tokenizer.encode_batch(targets)
    pairs = [
        (s, t)
        for s, t in zip(encoded_sources, encoded_targets)
        if max_length is None or (len(s) <= max_length and len(t) + 1 <= max_length)
    ]
    return EncodedCorpus([s for s, _ in pairs], [t for _, t in pairs])


def pad(sequences: list[list[int]], pad_id: int) -> Tensor:
    longest = max(len(s) for s in sequences)
    batch = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return batch


@dataclass
class Batch:
    src: Tensor  # (B, S)
    tgt_in: Tensor  # (B, T): bos + target
    tgt_out: Tensor  # (B, T): target + eos, pad where tgt_in is pad
    pad_id: int = 0

    @property
    def target_tokens(self) -> int:
        return int(self.tgt_out.ne(self.pad_id).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device), self.pad_id)


def make_batch(corpus: EncodedCorpus, indices: list[int], pad_id: int, bos_id: int) -> Batch:
    targets = [corpus.targets[i] for i in indices]
    return Batch(
        src=pad([corpus.sources[i] for i in indices], pad_id),
        tgt_in=pad([[bos_id] + t[:-1] for t in targets], pad_id),
        tgt_out=pad(targets, pad_id),
        pad_id=pad_id,
    )


def epoch_batches(corpus: EncodedCorpus, max_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    lengths = [(len(s), len(t)) for s, t in zip(corpus.sources, corpus.targets)]
    return token_batches(lengths, max_tokens, seed=seed * 100_003 + epoch)
