"""Greedy decoding on the fixed-shape decoder step (export/transformer_fixed_step.py): the GPU
form, which runs the same way on a CPU.

For each bucket of (rows, source length) the engine allocates its tensors once, where the session
computes, and binds them once: the encoder writes its keys, values and mask straight into the
step's cross-attention buffers; the step reads each row's state (token, length, finished flag,
score, token history) from one set of buffers and writes it to the other, and the next step reads
it back with the bindings swapped. Between steps the host does nothing but launch the next one
and, every few steps, read the finished flags; the tokens come back once, at the end. On CUDA
each (bucket, parity) binding is a captured CUDA graph (`enable_cuda_graph`, `gpu_graph_id`),
replayed without ONNX Runtime's per-node launch work."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from decoding.graph_io import present_name
from decoding.runtime import CUDA
from decoding.search import Hypothesis
from nmt_spec import ModelSpec, SpecialIds
from nmt_spec.graph_names import (
    DECODER_INPUT_IDS,
    ENCODER_INPUT_IDS,
    ENCODER_MASK,
    FINISHED,
    FIXED_STEP_STATE,
    MAX_LENGTHS,
    SCORES,
    SEQLENS_K,
    TOKEN_HISTORY,
    TOTAL_SEQUENCE_LENGTH,
    next_state,
)

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SOURCE_BUCKETS = (16, 32, 64, 128, 256, 512)
# Steps launched between two reads of the finished flags: each read waits for the device, and a
# batch that finished early decodes at most this many steps for nothing.
CHECK_FINISHED_EVERY = 4
# gpu_graph_id of each binding: unique in the process, so engines sharing a session (one per
# decode worker) never replay each other's captures (ids -1 and 0 are ONNX Runtime's own).
GRAPH_IDS = itertools.count(1)
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def bucket(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds size (the largest when none does: the caller splits)."""
    return next((b for b in buckets if b >= size), buckets[-1])


@dataclass
class Bucket:
    """The tensors of one (rows, source length) shape and the two bindings of the step over them."""

    rows: int
    source_length: int
    state: list[dict[str, ort.OrtValue]]  # two sets: binding p reads state[p] and writes state[1 - p]
    max_lengths: ort.OrtValue
    encoded: dict[str, ort.OrtValue]  # encoder outputs the step reads (cross keys/values, mask)
    scratch: dict[str, ort.OrtValue]  # encoder outputs the step does not read
    step_bindings: list[ort.IOBinding] = field(default_factory=list)
    run_options: list[ort.RunOptions] = field(default_factory=list)


class FixedShapeGreedy:
    """Greedy search of batches of sources on an encoder and a fixed-shape step session."""

    def __init__(
        self,
        encoder: ort.InferenceSession,
        step: ort.InferenceSession,
        special: SpecialIds,
        capacity: int,
        longest_source: int,
        cuda_graphs: bool = False,
        launch: threading.Lock | None = None,
    ) -> None:
        """capacity: self-attention cache slots per row; a row emits at most capacity - 1 tokens
        (a finished row keeps writing to the slot after its last).
        cuda_graphs: the step session was made with enable_cuda_graph (ONNX Runtime then
        captures each binding on its first run, under its own gpu_graph_id).
        launch: held while a step is launched, shared by the engines of one step session.
        longest_source: the model's longest source in tokens (a running batch's buffers hold it)."""
        self.encoder = encoder
        self.step = step
        self.special = special
        self.capacity = capacity
        self.cuda_graphs = cuda_graphs
        self.launch = launch or threading.Lock()
        self.longest_source = longest_source
        self.busy = threading.Lock()
        on_cuda = step.get_providers()[0] == CUDA
        self.device = "cuda" if on_cuda else "cpu"
        self.device_id = int(step.get_provider_options()[CUDA]["device_id"]) if on_cuda else 0
        self.inputs = {i.name: i for i in step.get_inputs()}
        self.encoder_outputs = {o.name: o for o in encoder.get_outputs()}
        self.caches = [name for name in self.inputs if present_name(name) in {o.name for o in step.get_outputs()}]
        self.buckets: dict[tuple[int, int], Bucket] = {}
        # A CPU value at a fixed address: GroupQueryAttention reads it on the host.
        self.total_length = ort.OrtValue.ortvalue_from_numpy(np.array(capacity, dtype=np.int32))

    @classmethod
    def for_model(cls, encoder: ort.InferenceSession, step: ort.InferenceSession, spec: ModelSpec, cuda_graphs: bool = False) -> FixedShapeGreedy:
        """The engine of a model's graphs: a row's cache holds its longest output and the slot after."""
        return cls(encoder, step, spec.special_ids, spec.max_target_length + 1, spec.max_source_length, cuda_graphs)

    def twin(self) -> FixedShapeGreedy:
        """Another engine on the same sessions, with buffers of its own (one per decode worker)."""
        return FixedShapeGreedy(self.encoder, self.step, self.special, self.capacity, self.longest_source, self.cuda_graphs, self.launch)

    @property
    def most_rows(self) -> int:
        return ROW_BUCKETS[-1]

    def tensor(self, name: str, shape: list[int], type_name: str) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_shape_and_type(shape, NUMPY_TYPES[type_name], self.device, self.device_id)

    def buffers(self, rows: int, source_length: int) -> Bucket:
        """The bucket of this shape, its tensors allocated and bound on first use."""
        key = (rows, source_length)
        if key in self.buckets:
            return self.buckets[key]
        history_shape = [rows, self.capacity]
        shapes = {DECODER_INPUT_IDS: [rows, 1], SEQLENS_K: [rows], FINISHED: [rows], SCORES: [rows], TOKEN_HISTORY: history_shape}
        state = [{name: self.tensor(name, shapes[name], self.inputs[name].type) for name in FIXED_STEP_STATE} for _ in range(2)]
        encoded, scratch = {}, {}
        for name, value in self.encoder_tensors(rows, source_length).items():
            (encoded if name in self.inputs else scratch)[name] = value
        created = Bucket(rows, source_length, state, self.tensor(MAX_LENGTHS, [rows], self.inputs[MAX_LENGTHS].type), encoded, scratch)
        caches = {}
        for name in self.caches:
            heads, head_dim = self.inputs[name].shape[1], self.inputs[name].shape[3]
            caches[name] = self.tensor(name, [rows, heads, self.capacity, head_dim], self.inputs[name].type)
        for parity in (0, 1):
            binding = self.step.io_binding()
            for name in FIXED_STEP_STATE:
                binding.bind_ortvalue_input(name, state[parity][name])
                binding.bind_ortvalue_output(next_state(name), state[1 - parity][name])
            binding.bind_ortvalue_input(MAX_LENGTHS, created.max_lengths)
            binding.bind_ortvalue_input(TOTAL_SEQUENCE_LENGTH, self.total_length)
            for name, value in encoded.items():
                binding.bind_ortvalue_input(name, value)
            for name, value in caches.items():  # written in place: present is past's memory
                binding.bind_ortvalue_input(name, value)
                binding.bind_ortvalue_output(present_name(name), value)
            options = ort.RunOptions()
            if self.cuda_graphs:
                options.add_run_config_entry("gpu_graph_id", str(next(GRAPH_IDS)))
            created.step_bindings.append(binding)
            created.run_options.append(options)
        self.buckets[key] = created
        return created

    def encoder_tensors(self, rows: int, source_length: int) -> dict[str, ort.OrtValue]:
        """Tensors for each encoder output of a (rows, source length) batch, where the step computes."""
        return {
            name: self.tensor(name, [rows if axis == 0 else (source_length if isinstance(size, str) else size) for axis, size in enumerate(info.shape)], info.type)
            for name, info in self.encoder_outputs.items()
        }  # fmt: skip

    def start_state(self, shape: Bucket, parity: int, used: np.ndarray, limits: np.ndarray) -> None:
        """Every row of the state that binding `parity` reads at its first step: used rows at bos,
        unused ones finished (the step leaves them as they are), each row's output limit."""
        state = shape.state[parity]
        state[DECODER_INPUT_IDS].update_inplace(np.where(used, self.special.bos, self.special.pad).astype(np.int64).reshape(-1, 1))
        state[SEQLENS_K].update_inplace(np.zeros(shape.rows, dtype=np.int32))
        state[FINISHED].update_inplace(~used)
        state[SCORES].update_inplace(np.zeros(shape.rows, dtype=np.float32))
        shape.max_lengths.update_inplace(limits)

    def translate(self, sources: list[list[int]], max_lengths: np.ndarray) -> list[Hypothesis]:
        """The greedy hypothesis of each source (token ids ending in eos), in order; each emits
        at most its max_lengths tokens, eos included."""
        results: list[Hypothesis] = []
        with self.busy:  # the buffers are this engine's: one batch at a time (twin() for more)
            for start in range(0, len(sources), self.most_rows):
                part = slice(start, start + self.most_rows)
                results += self._translate(sources[part], np.asarray(max_lengths[part]))
        return results

    def _translate(self, sources: list[list[int]], max_lengths: np.ndarray) -> list[Hypothesis]:
        count = len(sources)
        longest = max(len(source) for source in sources)
        shape = self.buffers(bucket(count, ROW_BUCKETS), bucket(longest, SOURCE_BUCKETS))
        if longest > shape.source_length:
            raise ValueError(f"a source of {longest} tokens is longer than the longest bucket ({shape.source_length})")
        ids = np.full((shape.rows, shape.source_length), self.special.pad, dtype=np.int64)
        ids[count:, 0] = self.special.eos  # rows nobody uses: one token, so no row is all padding
        for row, source in enumerate(sources):
            ids[row, : len(source)] = source
        self.encode_into(shape.encoded | shape.scratch, ids)
        used = np.arange(shape.rows) < count
        limits = np.zeros(shape.rows, dtype=np.int32)
        limits[:count] = np.minimum(max_lengths, self.capacity - 1)
        self.start_state(shape, 0, used, limits)
        steps = int(limits.max())
        for step in range(steps):
            written = self.launch_step(shape, step % 2)
            if ((step + 1) % CHECK_FINISHED_EVERY == 0 or step + 1 == steps) and written[FINISHED].numpy().all():
                break
        return self.hypotheses(written, range(count))

    def launch_step(self, shape: Bucket, parity: int) -> dict[str, ort.OrtValue]:
        """One step on binding `parity`; the state it wrote."""
        with self.launch:  # one capture or replay at a time on a session
            self.step.run_with_iobinding(shape.step_bindings[parity], shape.run_options[parity])
        return shape.state[1 - parity]

    def encode_into(self, outputs: dict[str, ort.OrtValue], ids: np.ndarray) -> None:
        """The encoder's outputs for a padded (rows, source length) batch, written into these tensors."""
        binding = self.encoder.io_binding()
        binding.bind_cpu_input(ENCODER_INPUT_IDS, ids)
        for name, value in outputs.items():
            binding.bind_ortvalue_output(name, value)
        self.encoder.run_with_iobinding(binding)

    def hypotheses(self, state: dict[str, ort.OrtValue], rows: Sequence[int]) -> list[Hypothesis]:
        """The greedy hypotheses of these rows of a written state (read back from the device)."""
        picked = list(rows)
        lengths = state[SEQLENS_K].numpy()[picked]
        history = state[TOKEN_HISTORY].numpy()[picked]
        scores = state[SCORES].numpy()[picked].astype(np.float64)
        results = []
        for row, length in enumerate(lengths.tolist()):
            tokens = history[row, :length].tolist()
            if tokens and tokens[-1] == self.special.eos:
                tokens.pop()
            results.append(Hypothesis(tokens, float(scores[row]), float(scores[row])))
        return results
