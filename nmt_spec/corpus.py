"""Parallel text as the corpus directory holds it: {split}.{language} files, one sentence a line,
read the same by training and by export."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIRECTORY = "data/multi30k"  # Multi30k en/de/fr/cs, shipped with the project


def read_lines(path: str | Path, limit: int | None = None) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle]
    return lines[:limit] if limit is not None else lines


def split_paths(directory: str | Path, split: str, source_language: str, target_language: str) -> tuple[Path, Path]:
    return Path(directory) / f"{split}.{source_language}", Path(directory) / f"{split}.{target_language}"


def read_parallel(directory: str | Path, split: str, source_language: str, target_language: str, limit: int | None = None) -> tuple[list[str], list[str]]:
    """(sources, targets) of a split, line by line; ValueError if the two files differ in lines."""
    source_path, target_path = split_paths(directory, split, source_language, target_language)
    sources, targets = read_lines(source_path, limit), read_lines(target_path, limit)
    if len(sources) != len(targets):
        raise ValueError(f"{source_path} has {len(sources)} lines but {target_path} has {len(targets)}")
    return sources, targets
