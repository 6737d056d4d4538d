"""The sinusoidal position table (Vaswani et al., 2017), one implementation for the PyTorch model
and its graphs. Computed in float64 and rounded once to float32, so every machine gets the same
table (torch's float32 sin and exp differ between builds in the last digits: 7.6e-6 between the
machine that exported models/ and another)."""

from __future__ import annotations

import math

import numpy as np


def sinusoidal_table(max_positions: int, d_model: int, split: bool = False) -> np.ndarray:
    """(max_positions, d_model) float32: sin and cos of each frequency, interleaved, or (split,
    Marian's and fairseq's layout) all sines, then all cosines."""
    position = np.arange(max_positions, dtype=np.float64)[:, None]
    frequency = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    angles = position * frequency
    table = np.zeros((max_positions, d_model), np.float64)
    sines, cosines = (slice(0, (d_model + 1) // 2), slice((d_model + 1) // 2, None)) if split else (slice(0, None, 2), slice(1, None, 2))
    table[:, sines] = np.sin(angles)
    table[:, cosines] = np.cos(angles)[:, : d_model // 2]
    return table.astype(np.float32)
