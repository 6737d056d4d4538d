"""The fixed-shape decoder step (the GPU form) on the CPU: its graph, and greedy search on it
against today's step loop on the same random compute-free Transformer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bench.host_time import compute_free_model, random_sources
from decoding import fixed_greedy
from decoding.batching import SearchOptions, fixed_greedy_batches, pad_ids, search_batches
from decoding.constraints import LengthBound
from decoding.fixed_greedy import FixedShapeGreedy
from decoding.fixed_running import FixedRunningBatch
from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import RuntimeConfig, create_session
from decoding.search import GreedySearch, run_to_completion
from export.graphs import build_fixed_step
from nmt_spec import ModelSpec
from nmt_spec.graph_names import SEQLENS_K, TOKEN_HISTORY
from nmt_spec.weights import fill, weight_specs

CPU = RuntimeConfig(device="cpu", intra_op_threads=1)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelSpec, dict[str, Path]]:
    return compute_free_model(tmp_path_factory.mktemp("compute-free"))


def engine(spec: ModelSpec, paths: dict[str, Path]) -> FixedShapeGreedy:
    return FixedShapeGreedy.for_model(create_session(str(paths["encoder"]), CPU), create_session(str(paths["fixed"]), CPU), spec)


def step_loop(spec: ModelSpec, paths: dict[str, Path]) -> OnnxSeq2Seq:
    return OnnxSeq2Seq(create_session(str(paths["encoder"]), CPU), create_session(str(paths["decoder"]), CPU), pad_id=spec.special_ids.pad)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_step_graph_writes_caches_with_group_query_attention_and_has_no_control_flow(model: tuple, precision: str) -> None:
    spec, _ = model
    weights = fill(spec, {w.name: np.zeros(w.shape, np.float32) for w in weight_specs(spec) if not w.tied_to}, "zeros")
    graph = build_fixed_step(spec, weights, precision)
    operators = {node.op_type for node in graph.graph.node}
    assert {"GroupQueryAttention", "MultiHeadAttention", "TopK", "ScatterElements"} <= operators
    assert not operators & {"DecoderMaskedMultiHeadAttention", "If", "Loop", "Scan"}
    caches = [i for i in graph.graph.input if i.name.startswith("past_key_values.") and ".decoder." in i.name]
    element = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    assert caches and all(i.type.tensor_type.elem_type == element for i in caches)
    casts = [node for node in graph.graph.node if node.op_type == "Cast" and any(a.name == "to" and a.i in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) for a in node.attribute)]
    # fp16 throughout: only the best log-probability of each row is cast, to be added up in fp32
    assert len(casts) == (1 if precision == "fp16" else 0)


def test_greedy_on_the_fixed_form_gives_the_step_loops_tokens_and_scores(model: tuple) -> None:
    spec, paths = model
    sources = random_sources(spec, 40)
    options = SearchOptions(max_decoding_length=spec.max_target_length, length_bound=LengthBound(1.0, 3))
    expected = search_batches(sources, step_loop(spec, paths).start, spec.special_ids, options, max_batch_tokens=10**9, max_batch_size=16)
    found = fixed_greedy_batches(sources, engine(spec, paths), options, max_batch_tokens=10**9, max_batch_size=16)
    assert [h[0].tokens for h in found] == [h[0].tokens for h in expected]
    np.testing.assert_allclose([h[0].score for h in found], [h[0].score for h in expected], rtol=1e-4, atol=1e-4)
    # bounded by their sources, rows end at different steps (a trained model's eos: tests/export)
    lengths = [len(h[0].tokens) for h in found]
    assert min(lengths) < max(lengths)


def test_each_row_stops_at_its_own_maximum_length(model: tuple) -> None:
    spec, paths = model
    sources = random_sources(spec, 12, seed=3)
    max_lengths = np.array([1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 128, 128])
    found = engine(spec, paths).translate(sources, max_lengths)
    search = GreedySearch(len(sources), spec.special_ids, max_lengths)
    decoder = step_loop(spec, paths)
    expected = run_to_completion(lambda batch: decoder.start(pad_ids(batch, spec.special_ids.pad)), search, sources)
    assert [h.tokens for h in found] == [h[0].tokens for h in expected]
    assert all(len(h.tokens) <= limit for h, limit in zip(found, max_lengths))


def test_a_bucket_is_allocated_once_and_reused_at_the_same_addresses(model: tuple) -> None:
    spec, paths = model
    greedy = engine(spec, paths)
    sources = random_sources(spec, 7, seed=5)
    limits = np.full(len(sources), 20)
    first = greedy.translate(sources, limits)
    (bucket,) = greedy.buckets.values()
    addresses = [value.data_ptr() for state in bucket.state for value in state.values()]
    # fewer rows in the same bucket, then the first batch again: same buffers, same answers
    assert [h.tokens for h in greedy.translate(sources[:5], limits[:5])] == [h.tokens for h in first[:5]]
    assert [h.tokens for h in greedy.translate(sources, limits)] == [h.tokens for h in first]
    assert len(greedy.buckets) == 1
    assert [value.data_ptr() for state in bucket.state for value in state.values()] == addresses
    assert bucket.state[0][TOKEN_HISTORY].shape() == [8, spec.max_target_length + 1] and bucket.state[0][SEQLENS_K].shape() == [8]


def test_more_rows_than_the_largest_bucket_are_decoded_in_parts(model: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, paths = model
    sources = random_sources(spec, 11, seed=7)
    limits = np.full(len(sources), 16)
    whole = engine(spec, paths).translate(sources, limits)
    monkeypatch.setattr(fixed_greedy, "ROW_BUCKETS", (1, 2, 4))
    parts = engine(spec, paths)
    assert [h.tokens for h in parts.translate(sources, limits)] == [h.tokens for h in whole]
    assert {rows for rows, _ in parts.buckets} <= {1, 2, 4}


def test_rows_joining_and_leaving_by_slot_get_what_they_get_decoded_alone(model: tuple) -> None:
    """In-flight batching in the fixed form: 14 sentences through 4 rows, each joining a row as
    one frees up, one cancelled mid-way; every answer is the one decoded alone, and the step's
    tensors never move (a captured CUDA graph reads them where they were)."""
    spec, paths = model
    sources = random_sources(spec, 14, seed=11)
    limits = np.array([3, 9, 5, 14, 7, 4, 11, 6, 8, 2, 10, 5, 13, 6])
    alone = engine(spec, paths).translate(sources, limits)
    running = FixedRunningBatch(engine(spec, paths), rows=4)
    addresses = [value.data_ptr() for state in running.shape.state for value in state.values()] + [v.data_ptr() for v in running.shape.encoded.values()]
    waiting, answers, steps = list(range(len(sources))), {}, 0
    while waiting or running.size:
        taken = []
        while waiting and running.takes([sources[i] for i in [*taken, waiting[0]]]):
            taken.append(waiting.pop(0))
        if taken:
            running.join([sources[i] for i in taken], limits[taken], taken)
        answers.update(running.step())
        steps += 1
        if steps == 1:
            running.leave({3})  # cancelled: its row goes to the next sentence
    assert sorted(answers) == [i for i in range(len(sources)) if i != 3]
    assert all(answers[i].tokens == alone[i].tokens for i in answers)
    np.testing.assert_allclose([answers[i].score for i in sorted(answers)], [alone[i].score for i in sorted(answers)], rtol=1e-4, atol=1e-4)
    assert [value.data_ptr() for state in running.shape.state for value in state.values()] + [v.data_ptr() for v in running.shape.encoded.values()] == addresses


def test_a_source_longer_than_the_running_batchs_buffers_is_not_taken(model: tuple) -> None:
    spec, paths = model
    running = FixedRunningBatch(engine(spec, paths), rows=2)
    assert running.takes([[5] * running.source_length]) and not running.takes([[5] * (running.source_length + 1)])
    assert not running.takes([[5], [5], [5]])  # three sentences, two rows
