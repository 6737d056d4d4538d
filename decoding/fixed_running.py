"""In-flight batching in the GPU form: greedy rows decoded together on one bucket of the
fixed-shape step (decoding/fixed_greedy.py), joining and leaving by slot.

A newcomer takes a free row: its source is encoded and its cross-attention keys, values and mask,
its first token, length, finished flag, score and length limit are written into that row of the
bucket's tensors, in place (decoding/device_rows.py), so every address the step was bound to, or
captured as a CUDA graph with, stays the same. A free row is a finished one: the step leaves it as
it is. Between joins the host only launches steps, and every few steps reads the finished flags;
a finished row's tokens are read back and its slot freed."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from decoding.device_rows import DeviceRows
from decoding.fixed_greedy import CHECK_FINISHED_EVERY, SOURCE_BUCKETS, Bucket, FixedShapeGreedy, bucket
from decoding.search import Hypothesis
from nmt_spec.graph_names import DECODER_INPUT_IDS, FINISHED, SCORES, SEQLENS_K


class FixedRunningBatch:
    """Up to `rows` greedy sentences at once, each held by an owner until it has finished."""

    def __init__(self, engine: FixedShapeGreedy, rows: int) -> None:
        self.engine = engine
        self.source_length = bucket(engine.longest_source, SOURCE_BUCKETS)
        self.shape: Bucket = engine.buffers(rows, self.source_length)
        self.row_ops = DeviceRows(engine.device, engine.device_id)
        self.parity = 0  # the state set the next step reads
        self.owners: list[Hashable | None] = [None] * rows
        self.reset()

    def reset(self) -> None:
        """Every row free (finished), after a failure too."""
        rows = self.shape.rows
        self.engine.start_state(self.shape, self.parity, np.zeros(rows, dtype=np.bool_), np.zeros(rows, dtype=np.int32))
        self.owners = [None] * rows

    @property
    def size(self) -> int:
        """Rows held."""
        return sum(owner is not None for owner in self.owners)

    @property
    def free(self) -> int:
        return self.shape.rows - self.size

    def takes(self, sources: Sequence[Sequence[int]]) -> bool:
        """Whether these sources fit now: enough free rows, none longer than the buffers."""
        return len(sources) <= self.free and max(len(source) for source in sources) <= self.source_length

    def join(self, sources: Sequence[Sequence[int]], max_lengths: np.ndarray, owners: Sequence[Hashable]) -> None:
        """Start these sentences (which `takes`) in free rows; each emits at most its max_lengths
        tokens, eos included, and is given back under its owner."""
        count = len(sources)
        slots = np.array([row for row, owner in enumerate(self.owners) if owner is None][:count])
        ids = np.full((count, self.source_length), self.engine.special.pad, dtype=np.int64)
        for row, source in enumerate(sources):
            ids[row, : len(source)] = source
        outputs = self.engine.encoder_tensors(count, self.source_length)
        self.engine.encode_into(outputs, ids)
        for name, target in self.shape.encoded.items():
            self.row_ops.overwrite(target, slots, outputs[name])
        state, write = self.shape.state[self.parity], self.row_ops.overwrite
        write(state[DECODER_INPUT_IDS], slots, np.full((count, 1), self.engine.special.bos, dtype=np.int64))
        write(state[SEQLENS_K], slots, np.zeros(count, dtype=np.int32))
        write(state[FINISHED], slots, np.zeros(count, dtype=np.bool_))
        write(state[SCORES], slots, np.zeros(count, dtype=np.float32))
        write(self.shape.max_lengths, slots, np.minimum(max_lengths, self.engine.capacity - 1).astype(np.int32))
        for slot, owner in zip(slots.tolist(), owners):
            self.owners[slot] = owner

    def leave(self, owners: set[Hashable]) -> None:
        """Free these owners' rows (a cancelled request): a newcomer may take them at once."""
        self.owners = [None if owner in owners else owner for owner in self.owners]

    def step(self) -> list[tuple[Hashable, Hypothesis]]:
        """A few steps, then the sentences that finished, with their owners; their rows are free."""
        for _ in range(CHECK_FINISHED_EVERY):
            self.engine.launch_step(self.shape, self.parity)
            self.parity = 1 - self.parity
        state = self.shape.state[self.parity]
        finished = state[FINISHED].numpy()
        done = [row for row, owner in enumerate(self.owners) if owner is not None and finished[row]]
        if not done:
            return []
        answers = list(zip([self.owners[row] for row in done], self.engine.hypotheses(state, done)))
        for row in done:
            self.owners[row] = None
        return answers
