"""How a decoder step's inputs relate to its outputs and to the encoder's outputs, and how the
rows of two decoder batches are put together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


# Symbolic axes of the decoder's inputs that differ between two batches: source lengths are
# padded at the end (masked by encoder_attention_mask), self-attention caches at the start
# (masked by decoder_attention_mask), so every row writes its next key/value into the last slot.
PAD_AT_END = "encoder_sequence_length"
PAD_AT_START = "past_decoder_sequence_length"


def present_name(past: str) -> str:
    """The output that feeds a past_* input at the next step."""
    if past.startswith("past_key_values."):
        return past.replace("past_key_values.", "present.", 1)
    return past.replace("past_", "present_", 1)


def initial_cache_shape(declared: list[int | str], batch: int) -> list[int]:
    """An empty cache: batch rows, and no decoded position in the symbolic length axis."""
    return [batch if axis == 0 else (size if isinstance(size, int) else 0) for axis, size in enumerate(declared)]


@dataclass(frozen=True)
class Padding:
    axis: int
    at_start: bool


def padding_of(declared: list[int | str]) -> Padding | None:
    for axis, size in enumerate(declared):
        if size in (PAD_AT_END, PAD_AT_START):
            return Padding(axis, size != PAD_AT_END)
    return None


def pad_to(array: np.ndarray, padding: Padding, length: int) -> np.ndarray:
    missing = length - array.shape[padding.axis]
    if missing <= 0:
        return array
    shape = list(array.shape)
    shape[padding.axis] = length
    padded = np.zeros(shape, dtype=array.dtype)  # np.pad is several times slower on small arrays
    index = [slice(None)] * array.ndim
    index[padding.axis] = slice(missing, None) if padding.at_start else slice(0, array.shape[padding.axis])
    padded[tuple(index)] = array
    return padded


def padded_alike(first: np.ndarray, second: np.ndarray, padding: Padding | None) -> tuple[np.ndarray, np.ndarray]:
    """Both zero-padded to the longer of their lengths along the padded axis."""
    if padding is None:
        return first, second
    length = max(first.shape[padding.axis], second.shape[padding.axis])
    return pad_to(first, padding, length), pad_to(second, padding, length)


def concat_rows(first: np.ndarray, second: np.ndarray, padding: Padding | None) -> np.ndarray:
    """The rows of both, zero-padded to a common length along the padded axis."""
    return stack_rows([first, second], padding)


def stack_rows(arrays: list[np.ndarray], padding: Padding | None) -> np.ndarray:
    """The rows of all, zero-padded to a common length along the padded axis."""
    if padding is not None:
        length = max(array.shape[padding.axis] for array in arrays)
        arrays = [pad_to(array, padding, length) for array in arrays]
    return np.concatenate(arrays)


def length_groups(lengths: np.ndarray, call_cost_tokens: int, most: int = 8) -> list[np.ndarray]:
    """Row indices split into groups of similar length, to encode each group padded only to its
    own longest: of the splits of the length-sorted rows into 1 to `most` equal parts, the one
    with the fewest padded tokens plus call_cost_tokens per call."""
    order = np.argsort(lengths, kind="stable")
    best, best_cost = [order], len(order) * int(lengths.max()) + call_cost_tokens
    for parts in range(2, min(most, len(order)) + 1):
        groups = np.array_split(order, parts)
        cost = sum(len(group) * int(lengths[group[-1]]) for group in groups) + parts * call_cost_tokens
        if cost < best_cost:
            best, best_cost = groups, cost
    return best


def place_rows(target: np.ndarray, rows: np.ndarray, incoming: np.ndarray, padding: Padding | None) -> np.ndarray:
    """target with these rows overwritten by incoming, both padded to a common length first
    (the result is target itself when no padding was needed)."""
    target, incoming = padded_alike(target, incoming, padding)
    target[rows] = incoming
    return target


def slice_axis(array: np.ndarray, axis: int, start: int, end: int | None) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, end)
    return array[tuple(index)]


class RowOps(Protocol):
    """Row operations on a running batch's tensors, wherever they live."""

    def shape(self, value: Any) -> list[int]: ...
    def select(self, value: Any, rows: np.ndarray) -> Any: ...
    def pad_to(self, value: Any, padding: Padding | None, length: int) -> Any: ...
    def concat(self, first: Any, second: Any, padding: Padding | None) -> Any: ...
    def place(self, target: Any, rows: np.ndarray, incoming: Any, padding: Padding | None) -> Any: ...
    def slice(self, value: Any, axis: int, start: int, end: int | None) -> Any: ...


class HostRows:
    """The row operations of a running batch on numpy arrays (the host decoder's); DeviceRows
    (decoding/device_rows.py) does the same on ONNX Runtime values where they live."""

    def shape(self, value: np.ndarray) -> list[int]:
        return list(value.shape)

    def select(self, value: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return value[rows]

    def pad_to(self, value: np.ndarray, padding: Padding | None, length: int) -> np.ndarray:
        return value if padding is None else pad_to(value, padding, length)

    def concat(self, first: np.ndarray, second: np.ndarray, padding: Padding | None) -> np.ndarray:
        return concat_rows(first, second, padding)

    def place(self, target: np.ndarray, rows: np.ndarray, incoming: np.ndarray, padding: Padding | None) -> np.ndarray:
        return place_rows(target, rows, incoming, padding)

    def slice(self, value: np.ndarray, axis: int, start: int, end: int | None) -> np.ndarray:
        return slice_axis(value, axis, start, end)


MASK_PADDING = Padding(axis=1, at_start=True)


class RowPositions:
    """Per row: the target position it decodes next, which self-attention cache slots are its
    own (a row that joined late has empty slots first), and which encoded sentence it decodes
    (the rows of one sentence's beams share its encoder outputs)."""

    def __init__(self, rows: int) -> None:
        self.positions = np.zeros(rows, dtype=np.int64)
        self.mask = np.zeros((rows, 0), dtype=np.int32)
        self.sentences = np.arange(rows)  # distinct encoder output rows have distinct numbers

    def sentences_after(self, rows: np.ndarray) -> bool:
        """Whether selecting these rows would leave every row decoding the sentence it decodes
        now (beams reordered within their sentences): then its encoder outputs need no copy."""
        return len(rows) == len(self.sentences) and bool(np.array_equal(self.sentences[rows], self.sentences))

    def next_mask(self) -> np.ndarray:
        return np.concatenate([self.mask, np.ones((len(self.positions), 1), dtype=np.int32)], axis=1)

    def advance(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.positions = self.positions + 1

    def select(self, rows: np.ndarray) -> None:
        self.positions, self.mask, self.sentences = self.positions[rows], self.mask[rows], self.sentences[rows]

    def extend(self, other: RowPositions) -> None:
        self.positions = np.concatenate([self.positions, other.positions])
        self.mask = concat_rows(self.mask, other.mask, MASK_PADDING)
        self.sentences = np.concatenate([self.sentences, other.sentences + self._next_sentence()])

    def place(self, rows: np.ndarray, other: RowPositions) -> None:
        self.positions[rows] = other.positions
        self.mask = place_rows(self.mask, rows, other.mask, MASK_PADDING)
        self.sentences[rows] = other.sentences + self._next_sentence()

    def _next_sentence(self) -> int:
        return int(self.sentences.max()) + 1 if len(self.sentences) else 0

    def unused_leading_slots(self) -> int:
        """Cache slots at the start that no remaining row attends to (their rows have left)."""
        used = self.mask.any(axis=0)
        return int(used.argmax()) if used.any() else self.mask.shape[1]

    def drop_leading(self, count: int) -> None:
        self.mask = self.mask[:, count:]
