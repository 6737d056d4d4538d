"""How a decoder step's cache inputs relate to its outputs and to the encoder's outputs."""

from __future__ import annotations


def present_name(past: str) -> str:
    """The output that feeds a past_* input at the next step."""
    if past.startswith("past_key_values."):
        return past.replace("past_key_values.", "present.", 1)
    return past.replace("past_", "present_", 1)


def initial_cache_shape(declared: list[int | str], batch: int) -> list[int]:
    """An empty cache: batch rows, and no decoded position in the symbolic length axis."""
    return [batch if axis == 0 else (size if isinstance(size, int) else 0) for axis, size in enumerate(declared)]
