"""What every incremental decoder does with the rows of its running batch, whichever memory its
tensors live in (the row operations say how): beams reordered and finished rows dropped,
newcomers appended or written into the slots of rows that left, cache slots that no row attends
to any more cut off."""

from __future__ import annotations

from typing import Any

import numpy as np

from decoding.graph_io import RowOps, RowPositions
from decoding.step_graphs import StepGraphs


class BatchRows:
    """The encoder outputs (constants) and decoder state of a batch's rows, and where each row is."""

    def __init__(self, model: StepGraphs, ops: RowOps, constants: dict[str, Any], state: dict[str, Any], rows: int) -> None:
        self.model = model
        self.ops = ops
        self.constants = constants
        self.state = state
        self.rows = RowPositions(rows)
        self.output_attentions = False  # set before a step that should also give `attention`
        self.attention: np.ndarray | None = None  # (rows, S) of the last step, when asked
        self.selects_tokens = model.selects_tokens
        self.top_k = 0  # set before a step that needs only each row's best top_k tokens
        self.top: tuple[np.ndarray, np.ndarray] | None = None  # their ids and log-probabilities

    def next_mask(self) -> np.ndarray:
        """This step's cache mask."""
        return self.rows.next_mask()

    def drop_unused_slots(self, at_least: int = 1) -> None:
        """Cut the cache slots that no row attends to any more, once there are at_least (>= 1) of them."""
        unused = self.rows.unused_leading_slots()
        if unused >= at_least:
            self.rows.drop_leading(unused)
            self.state = self.model.drop_leading_slots(self.state, self.ops, unused)

    def select(self, rows: np.ndarray) -> None:
        if not self.rows.sentences_after(rows):  # beams reordered within their sentences keep them
            self.constants = {name: self.ops.select(value, rows) for name, value in self.constants.items()}
        self.state = {name: self.ops.select(value, rows) for name, value in self.state.items()}
        self.rows.select(rows)

    def extend(self, other: BatchRows) -> None:
        padding, mine, theirs = self.model.padding, self.state, other.state
        self.constants = {name: self.ops.concat(value, other.constants[name], padding[name]) for name, value in self.constants.items()}
        self.state = {name: self.ops.concat(value, theirs[name], padding[name]) for name, value in mine.items()}
        self.rows.extend(other.rows)

    def place(self, rows: np.ndarray, other: BatchRows) -> None:
        """Overwrite these (dead) rows with the rows of another decoder of the same model."""
        padding, mine, theirs = self.model.padding, self.state, other.state
        self.constants = {name: self.ops.place(value, rows, other.constants[name], padding[name]) for name, value in self.constants.items()}
        self.state = {name: self.ops.place(value, rows, theirs[name], padding[name]) for name, value in mine.items()}
        self.rows.place(rows, other.rows)
