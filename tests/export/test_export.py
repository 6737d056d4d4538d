"""Export of real (tiny, trained) checkpoints: graph structure, parity with PyTorch, the model
repository and decoding from it without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
import pytest
import torch

from decoding.batching import SearchOptions, make_search, pad_ids
from decoding.fixed_running import FixedRunningBatch
from decoding.graph_io import length_groups
from decoding.onnx_decoder import OnnxSeq2Seq
from decoding.runtime import CUDA, RuntimeConfig, cuda_device_present
from decoding.search import GreedySearch, RunningBatch
from decoding.translator import Translator
from export.cpu_choice import MARGIN, CpuSpeed, cpu_default_variant
from export.decoding_choice import DecodingTrial, best_trial
from export.exporter import ExportConfig, export_model
from export.shared_weights import SHARED_WEIGHTS_FILE
from nmt_spec import Tokenizer
from nmt_spec.graph_names import DECODER_INPUT_IDS, LOG_PROBS
from nmt_spec.manifest import Manifest, ManifestError, Variant
from tests.tiny_runs import PARALLEL_PAIRS, tiny_config, write_tiny_corpus
from training.checkpoint import load_model
from training.evaluate import translate
from training.train import train

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURES = ["transformer", "rnn"]
SOURCES = [en for en, _ in PARALLEL_PAIRS] + ["A dog is running on the beach.", "Two men are playing football."]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """architecture -> (checkpoint, repository version directory)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    corpus = write_tiny_corpus(root / "corpus")
    result = {}
    for architecture in ARCHITECTURES:
        run = root / f"run-{architecture}"
        train(tiny_config(corpus, architecture, max_steps=300), run)
        config = ExportConfig(
            checkpoint=run / "last.pt",
            name=f"{architecture}-tiny",
            version="3",
            output_root=root / "models",
            variants=("fp32", "int8", "fp16"),
            data_directory=str(corpus),
            parity_sentences=6,
            bleu_split="val",
        )
        export_model(config, progress=lambda message: None)
        result[architecture] = (run / "last.pt", root / "models" / f"{architecture}-tiny" / "3")
    return result


def op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


def test_transformer_graphs_keep_fused_attention_and_layer_norm(exported: dict) -> None:
    _, version = exported["transformer"]
    for graph in ("encoder_model.onnx", "decoder_with_past_model.onnx"):
        ops = op_types(version / graph)
        assert "MultiHeadAttention" in ops, f"{graph} has no fused attention node"
        assert "LayerNormalization" in ops, f"{graph} has no LayerNormalization node"
        assert not {"Softmax", "ReduceMean", "Pow"} & ops, f"{graph} decomposes attention or layer norm"
    domains = {n.domain for n in onnx.load(version / "decoder_with_past_model.onnx").graph.node if n.op_type == "MultiHeadAttention"}
    assert domains == {"com.microsoft"}


def test_rnn_graphs_use_onnx_recurrent_ops(exported: dict) -> None:
    _, version = exported["rnn"]
    assert "GRU" in op_types(version / "encoder_model.onnx")
    assert "GRU" in op_types(version / "decoder_with_past_model.onnx")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_graphs_pass_the_onnx_checker(exported: dict, architecture: str) -> None:
    _, version = exported[architecture]
    for path in version.glob("*.onnx"):
        onnx.checker.check_model(str(path), full_check=False)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_fp32_graphs_match_pytorch(exported: dict, architecture: str) -> None:
    _, version = exported[architecture]
    parity = Manifest.load(version).variants["fp32"].parity
    assert parity["max_abs_logit_diff"] <= 1e-4
    assert parity["greedy_identical"] == parity["greedy_compared"] == 6


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_translator_from_the_repository_equals_pytorch_greedy(exported: dict, architecture: str) -> None:
    checkpoint, version = exported[architecture]
    spec, model, _ = load_model(checkpoint)
    tokenizer = Tokenizer(checkpoint.parent / spec.tokenizer_file)
    expected = translate(model, tokenizer, spec, SOURCES)
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    assert translator.translate(SOURCES) == expected
    assert expected[:6] == [de for _, de in PARALLEL_PAIRS]  # the model did learn its pairs


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_beam_search_on_onnx_returns_sorted_n_best_and_matches_pytorch(exported: dict, architecture: str) -> None:
    checkpoint, version = exported[architecture]
    spec, model, _ = load_model(checkpoint)
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    options = SearchOptions(beam_size=4, num_hypotheses=3, length_penalty=1.0, max_decoding_length=spec.max_target_length)
    nbest = translator.translate_ids(translator.encode(SOURCES), options)
    for hypotheses in nbest:
        assert len(hypotheses) == 3
        scores = [h.normalized_score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
    expected = translate(model, translator.tokenizer, spec, SOURCES, beam_size=4)
    assert [h[0].text for h in nbest] == expected


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_int8_variant_is_smaller_and_answers_each_sentence_as_alone_in_any_batch(exported: dict, architecture: str) -> None:
    _, version = exported[architecture]
    manifest = Manifest.load(version)
    int8 = manifest.variants["int8"]
    assert int8.batch_invariant and manifest.variants["fp32"].batch_invariant
    # with their weights wherever stored (fp32 keeps those it shares with other graphs in one file)
    assert onnx.load(version / int8.decoder.file).ByteSize() < onnx.load(version / manifest.variants["fp32"].decoder.file).ByteSize()
    assert "MatMulInteger" in op_types(version / int8.decoder.file) and "DynamicQuantizeLinear" not in op_types(version / int8.decoder.file)
    assert "bleu" in int8.evaluation
    translator = Translator.from_repository(version, "int8", RuntimeConfig(device="cpu", intra_op_threads=1))
    for beam_size in (1, 3):
        options = translator.default_options(beam_size=beam_size, num_hypotheses=beam_size)
        sources = translator.encode(SOURCES)
        alone = [translator.translate_ids([source], options)[0] for source in sources]
        order = np.random.default_rng(beam_size).permutation(len(sources))
        batched = translator.translate_ids([sources[i] for i in order], options)
        for index, nbest in zip(order, batched):
            assert [h.tokens for h in nbest] == [h.tokens for h in alone[index]], SOURCES[index]
            np.testing.assert_allclose([h.score for h in nbest], [h.score for h in alone[index]], atol=1e-4)


def test_manifest_describes_the_model_and_every_file(exported: dict) -> None:
    _, version = exported["transformer"]
    manifest = Manifest.load(version)
    assert manifest.name == "transformer-tiny" and manifest.version == "3" and manifest.opset >= 17
    assert manifest.spec.architecture == "transformer"
    assert set(manifest.files) == {p.name for p in version.iterdir() if p.name not in ("manifest.json", "parity_report.json")}
    decoder_inputs = {t.name for t in manifest.variants["fp32"].decoder.inputs}
    assert {"input_ids", "position_ids", "decoder_attention_mask", "encoder_attention_mask", "past_key_values.0.decoder.key", "past_key_values.0.encoder.value"} <= decoder_inputs
    report = json.loads((version / "parity_report.json").read_text())
    assert report["fp32"]["parity"]["max_abs_logit_diff"] <= 1e-4
    # the attention layer was chosen on validation, among the decoder's layers, and recorded
    layers = manifest.spec.config.n_decoder_layers
    assert 1 <= manifest.decoding.attention_layer <= layers and report["attention_alignment"]["chosen"] == manifest.decoding.attention_layer
    assert {f"layer {i}" for i in range(1, layers + 1)} <= set(report["attention_alignment"])
    assert "output_attentions" in decoder_inputs and "cross_attentions" in {t.name for t in manifest.variants["fp32"].decoder.outputs}


def test_a_corrupted_or_missing_file_is_named_in_the_error(exported: dict, tmp_path: Path) -> None:
    _, version = exported["rnn"]
    corrupted, missing = tmp_path / "corrupted", tmp_path / "missing"
    shutil.copytree(version, corrupted)
    shutil.copytree(version, missing)
    with open(corrupted / "decoder_with_past_model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="decoder_with_past_model.onnx.*sha256"):
        Manifest.load(corrupted)
    (missing / "tokenizer.model").unlink()
    with pytest.raises(ManifestError, match="tokenizer.model.*missing"):
        Manifest.load(missing)


def test_export_refuses_to_overwrite_a_version(exported: dict) -> None:
    checkpoint, version = exported["rnn"]
    config = ExportConfig(checkpoint=checkpoint, name=version.parent.name, version=version.name, output_root=version.parent.parent)
    with pytest.raises(FileExistsError, match="--version"):
        export_model(config, progress=lambda message: None)


def test_decoding_needs_no_torch() -> None:
    code = "import sys, decoding.translator, nmt_spec.manifest; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


NEEDS_CUDA = pytest.mark.skipif(not cuda_device_present(), reason="no CUDA device on this machine")
# Where a running batch's tensors live between steps: host numpy arrays, ORT values bound to CPU
# memory (the CUDA decoder's code, run where every machine can test it), or GPU memory.
WHERE = ["host", "bound-cpu", pytest.param("cuda", marks=NEEDS_CUDA)]


def decoding_model(version: Path, where: str, variant: str = "fp32") -> OnnxSeq2Seq:
    device = "cuda" if where == "cuda" else "cpu"
    model = Translator.from_repository(version, variant, RuntimeConfig(device=device, intra_op_threads=1)).model
    assert model.decoder.get_providers()[0] == (CUDA if where == "cuda" else "CPUExecutionProvider")
    return OnnxSeq2Seq(model.encoder, model.decoder, bind_to_device=where != "host")


@NEEDS_CUDA
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("variant", ["fp32", "fp16"])
def test_graphs_on_cuda_translate_as_on_the_cpu(exported: dict, architecture: str, variant: str) -> None:
    """On CUDA, fp32 and fp16 give the CPU's translations of these short sentences, and its
    log-probabilities within TF32 and half-precision rounding."""
    _, version = exported[architecture]
    on_cpu = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    on_cuda = Translator.from_repository(version, variant, RuntimeConfig(device="cuda"))
    assert on_cuda.model.decoder.get_providers()[0] == CUDA and on_cuda.model.device_rows is not None
    assert on_cuda.translate(SOURCES) == on_cpu.translate(SOURCES)
    source = pad_ids(on_cpu.encode(SOURCES), on_cpu.spec.special_ids.pad)
    first = np.full(len(SOURCES), on_cpu.spec.special_ids.bos)
    expected = on_cpu.model.start(source).step(first)
    got = on_cuda.model.start(source).step(first)
    # fp32 differs too: ONNX Runtime's CUDA provider multiplies fp32 matrices in TF32 by default
    # (measured on an H200: up to 8e-3 on these log-probabilities)
    np.testing.assert_allclose(got, expected, atol=2e-2 if variant == "fp32" else 5e-2)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_batch_of_mixed_lengths_is_encoded_in_groups_with_the_same_outputs(exported: dict, architecture: str) -> None:
    _, version = exported[architecture]
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    special = translator.spec.special_ids
    short, long = translator.encode(["A dog."]), translator.encode(["Two men in red shirts are playing football on a green field."])
    sources = pad_ids((short + long) * 8, special.pad)  # lengths alternate: 8 short rows, 8 long ones
    lengths = (sources != special.pad).sum(axis=1)
    groups = length_groups(lengths, call_cost_tokens=4)
    assert len(groups) == 2 and all(len(set(lengths[group])) == 1 for group in groups)
    grouped = translator.model.encode(sources)
    padded = OnnxSeq2Seq(translator.model.encoder, translator.model.decoder).encode(sources)
    assert grouped.keys() == padded.keys()
    for name, value in padded.items():
        padding = translator.model.encoder_padding[name]
        for row, length in enumerate(lengths):  # padded positions are masked: only real ones count
            real = (row,) if padding is None else (row, *[slice(None)] * (padding.axis - 1), slice(0, length))
            np.testing.assert_allclose(grouped[name][real], value[real], atol=1e-5, err_msg=name)


def test_length_groups_split_only_when_padding_costs_more_than_a_call() -> None:
    assert [group.tolist() for group in length_groups(np.array([3, 30, 4, 31]), call_cost_tokens=4)] == [[0, 2], [1, 3]]
    assert len(length_groups(np.array([3, 30, 4, 31]), call_cost_tokens=100)) == 1
    assert len(length_groups(np.array([7, 7, 7, 7]), call_cost_tokens=1)) == 1


def test_empty_cache_has_no_past_positions(exported: dict) -> None:
    _, version = exported["transformer"]
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    decoder = translator.model.start(np.array([[5, 6, 3]], dtype=np.int64))
    assert decoder.state["past_key_values.0.decoder.key"].shape[2] == 0
    decoder.step(np.array([2]))
    assert decoder.state["past_key_values.0.decoder.key"].shape[2] == 1


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("where", WHERE)
def test_sentences_joining_a_running_batch_get_the_answers_they_get_alone(exported: dict, architecture: str, beam_size: int, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-flight batching: newcomers are encoded and join between two steps, at position 0
    while the others are further on; a search dropped midway takes only its own rows along.
    Answers alone come from the host decoder on the CPU, the running batch's from `where`,
    where no cache or encoder output ever comes back to the host: only the steps' selected
    tokens, (rows, k), or distributions, (rows, V)."""
    _, version = exported[architecture]
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    special = translator.spec.special_ids
    sources = translator.encode(SOURCES)
    options = SearchOptions(beam_size=beam_size, num_hypotheses=beam_size, max_decoding_length=24)
    alone = [translator.translate_ids([source], options)[0] for source in sources]

    model = decoding_model(version, where)
    fetched: list[int] = []  # the rank of every bound value copied to the host
    to_host = ort.OrtValue.numpy
    monkeypatch.setattr(ort.OrtValue, "numpy", lambda value: fetched.append(len(value.shape())) or to_host(value))
    batch = RunningBatch(lambda batch_sources: model.start(pad_ids(batch_sources, special.pad)))
    searches, pending, cancelled, step = {}, list(range(len(sources))), None, 0
    while pending or batch.searches:
        if pending and step % 2 == 0:
            joining, pending = pending[:2], pending[2:]
            new = [make_search(options, [sources[i]], special) for i in joining]
            batch.admit(new, [sources[i] for i in joining])
            searches.update(zip(joining, new))
            if cancelled is None and step == 2:
                cancelled = joining[0]
                batch.remove(searches.pop(cancelled))
        if batch.searches:
            batch.step()
        step += 1
    assert cancelled is not None and len(searches) == len(sources) - 1
    assert where == "host" or (fetched and max(fetched) == 2)
    for index, search in searches.items():
        got = search.results()[0]
        assert [h.tokens for h in got] == [h.tokens for h in alone[index]], SOURCES[index]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in alone[index]], atol=1e-4 if where != "cuda" else 1e-2)


def test_cache_slots_of_rows_that_left_are_dropped(exported: dict) -> None:
    _, version = exported["transformer"]
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    first = translator.model.start(np.array([[5, 6, 3]], dtype=np.int64))
    for token in (2, 7, 8):
        first.step(np.array([token]))
    first.extend(translator.model.start(np.array([[9, 3]], dtype=np.int64)))
    assert first.rows.mask.tolist() == [[1, 1, 1], [0, 0, 0]] and first.rows.positions.tolist() == [3, 0]
    first.step(np.array([4, 2]))
    assert first.state["past_key_values.0.decoder.key"].shape[2] == 4
    first.select(np.array([1]))
    first.step(np.array([6]))
    # the newcomer's two tokens remain; the three slots that only the first row used are gone
    assert first.rows.mask.tolist() == [[1, 1]] and first.state["past_key_values.0.decoder.key"].shape[2] == 2


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("where", WHERE)
def test_a_shared_greedy_search_answers_each_sentence_as_alone_when_some_are_cancelled(exported: dict, architecture: str, where: str) -> None:
    """The server merges greedy requests into one search; cancelling some sentences midway
    takes their rows out and leaves the others' answers as they are alone."""
    _, version = exported[architecture]
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    special = translator.spec.special_ids
    sources = translator.encode(SOURCES)
    options = SearchOptions(max_decoding_length=24)
    alone = [translator.translate_ids([source], options)[0][0].tokens for source in sources]
    shared = GreedySearch(len(sources), special, options.max_decoding_length)
    model = decoding_model(version, where)
    batch = RunningBatch(lambda batch_sources: model.start(pad_ids(batch_sources, special.pad)))
    batch.admit([shared], sources)
    batch.step()
    shared.cancel(1, 3)
    while batch.searches:
        batch.step()
    kept = [i for i in range(len(sources)) if i not in (1, 2)]
    assert [shared.results(i, i + 1)[0][0].tokens for i in kept] == [alone[i] for i in kept]
    assert shared.finished.all() and all(len(shared.tokens[i]) <= 1 for i in (1, 2))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_every_cpu_variant_gives_each_hypothesis_its_attention_when_asked(exported: dict, architecture: str, variant: str) -> None:
    _, version = exported[architecture]
    translator = Translator.from_repository(version, variant, RuntimeConfig(device="cpu", intra_op_threads=1))
    sources = translator.encode(SOURCES)
    for beam_size in (1, 3):
        options = translator.default_options(beam_size=beam_size, num_hypotheses=beam_size, with_attention=True)
        plain = translator.translate_ids(sources, translator.default_options(beam_size=beam_size, num_hypotheses=beam_size))
        for source, nbest, without in zip(sources, translator.translate_ids(sources, options), plain):
            assert [h.tokens for h in nbest] == [h.tokens for h in without], "asking for the attention changed an answer"
            for hypothesis in nbest:
                weights = hypothesis.attention[:, : len(source)]
                assert weights.shape == (len(hypothesis.tokens), len(source))
                np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_manifest_carries_the_decoding_that_scored_best_on_validation(exported: dict, architecture: str) -> None:
    _, version = exported[architecture]
    manifest = Manifest.load(version)
    choice = json.loads((version / "parity_report.json").read_text())["decoding_choice"]
    assert choice["split"] == "val"
    tried = {(t["beam_size"], t["length_penalty"]) for t in choice["trials"]}
    assert tried == {(1, 1.0)} | {(beam, penalty) for beam in (4, 5) for penalty in (0.6, 1.0, 1.4)}
    best = max(t["bleu"] for t in choice["trials"])
    chosen = next(t for t in choice["trials"] if (t["beam_size"], t["length_penalty"]) == (manifest.decoding.beam_size, manifest.decoding.length_penalty))
    assert chosen["bleu"] == best


def test_ties_in_bleu_go_to_the_smaller_beam_and_the_penalty_nearest_one() -> None:
    trials = [DecodingTrial(5, 1.4, 30.0), DecodingTrial(4, 0.6, 30.0), DecodingTrial(4, 1.0, 30.0), DecodingTrial(1, 1.0, 29.9)]
    assert best_trial(trials) == DecodingTrial(4, 1.0, 30.0)
    assert best_trial([*trials, DecodingTrial(5, 0.6, 30.1)]) == DecodingTrial(5, 0.6, 30.1)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_manifest_names_the_faster_of_fp32_and_int8_on_a_cpu_as_measured(exported: dict, architecture: str) -> None:
    _, version = exported[architecture]
    manifest = Manifest.load(version)
    speeds = {name: manifest.variants[name].cpu_speed for name in ("fp32", "int8")}
    assert all(speed["sentences"] == len(PARALLEL_PAIRS) and speed["seconds"] > 0 for speed in speeds.values()), speeds
    faster = speeds["int8"]["seconds"] * MARGIN <= speeds["fp32"]["seconds"]
    assert manifest.cpu_default_variant == ("int8" if faster else "fp32")
    assert json.loads((version / "parity_report.json").read_text())["cpu_default_variant"]["chosen"] == manifest.cpu_default_variant


def test_int8_is_the_cpu_default_only_when_batch_invariant_and_faster_by_the_margin() -> None:
    variants = {"fp32": Variant(None, None, "any"), "int8": Variant(None, None, "cpu")}
    fp32 = CpuSpeed(100, 1.0)
    assert cpu_default_variant({"fp32": fp32, "int8": CpuSpeed(100, 0.9)}, variants) == "int8"
    assert cpu_default_variant({"fp32": fp32, "int8": CpuSpeed(100, 0.99)}, variants) == "fp32"  # within the noise
    assert cpu_default_variant({"fp32": fp32, "int8": CpuSpeed(100, 1.2)}, variants) == "fp32"
    assert cpu_default_variant({"fp32": fp32}, variants) == "fp32"
    variants["int8"].batch_invariant = False
    assert cpu_default_variant({"fp32": fp32, "int8": CpuSpeed(100, 0.5)}, variants) == "fp32"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_both_fp32_graphs_read_the_tied_embedding_from_one_file(exported: dict, architecture: str) -> None:
    _, version = exported[architecture]
    manifest = Manifest.load(version)
    assert SHARED_WEIGHTS_FILE in manifest.files
    fp32 = manifest.variants["fp32"]
    for graph in (fp32.encoder, fp32.decoder):
        model = onnx.load(version / graph.file, load_external_data=False)
        external = {t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
        assert "output_proj.weight" in external, graph.file
    table = numpy_helper.to_array(next(t for t in onnx.load(version / fp32.decoder.file).graph.initializer if t.name == "output_proj.weight"))
    spec, model, _ = load_model(exported[architecture][0])
    np.testing.assert_array_equal(table, model.output_proj.weight.detach().numpy().T)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_tokens_selected_in_the_graph_give_the_answers_of_the_whole_distribution(exported: dict, architecture: str) -> None:
    """Greedy and beam read only each row's best tokens from the graph (TopK); with the graph's
    selection switched off they pick from the (rows, V) log-probabilities on the host."""
    _, version = exported[architecture]
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    assert translator.model.selects_tokens and "TopK" in op_types(version / "decoder_with_past_model.onnx")
    sources = translator.encode(SOURCES)
    for beam_size in (1, 3):
        options = translator.default_options(beam_size=beam_size, num_hypotheses=beam_size)
        translator.model.selects_tokens = True
        selected = translator.translate_ids(sources, options)
        translator.model.selects_tokens = False
        on_host = translator.translate_ids(sources, options)
        for ours, theirs in zip(selected, on_host):
            assert [h.tokens for h in ours] == [h.tokens for h in theirs]
            np.testing.assert_allclose([h.score for h in ours], [h.score for h in theirs], atol=1e-5)
    decoder = translator.model.start(pad_ids(sources[:4], translator.spec.special_ids.pad))
    decoder.top_k = 5
    assert decoder.step(np.full(4, translator.spec.special_ids.bos)) is None
    ids, scores = decoder.top
    assert ids.shape == scores.shape == (4, 5) and np.all(np.diff(scores, axis=1) <= 0)
    full = translator.model.start(pad_ids(sources[:4], translator.spec.special_ids.pad)).step(np.full(4, translator.spec.special_ids.bos))
    assert full.shape == (4, translator.spec.config.vocab_size)
    np.testing.assert_array_equal(np.take_along_axis(full, ids, axis=1), scores)
    np.testing.assert_allclose(np.sort(full, axis=1)[:, ::-1][:, :5], scores, atol=1e-6)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_step_that_selects_tokens_copies_no_distribution_out(exported: dict, architecture: str) -> None:
    """log_probs leaves the graph only when output_log_probs asks for it: a (0, V) tensor otherwise."""
    _, version = exported[architecture]
    translator = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    model = translator.model
    decoder = model.start(pad_ids(translator.encode(SOURCES[:3]), translator.spec.special_ids.pad))
    tokens = np.full((3, 1), translator.spec.special_ids.bos, dtype=np.int64)
    for top_k, rows in ((2, 0), (0, 3)):
        feeds = {DECODER_INPUT_IDS: tokens, **model.step_feeds(decoder.rows, decoder.rows.next_mask(), False, top_k), **decoder.constants, **decoder.state}
        (log_probs,) = model.decoder.run([LOG_PROBS], feeds)
        assert log_probs.shape == (rows, translator.spec.config.vocab_size)


def test_the_transformer_ships_its_fixed_shape_step_in_fp32_and_fp16_held_to_the_cpus_fp32(exported: dict) -> None:
    transformer = Manifest.load(exported["transformer"][1])
    assert transformer.variants["fp32"].fixed_step is not None and transformer.variants["fp16"].fixed_step is not None
    assert transformer.variants["int8"].fixed_step is None
    assert all(variant.fixed_step is None for variant in Manifest.load(exported["rnn"][1]).variants.values())
    (agreement,) = [a for a in transformer.variants["fp32"].parity["greedy_vs_cpu_fp32"] if a["device"] == "cpu"]
    assert agreement["graph"] == "fixed step" and agreement["identical"] == agreement["compared"] > 0


def test_greedy_on_the_fixed_shape_step_translates_as_the_step_loop(exported: dict) -> None:
    version = exported["transformer"][1]
    runtime = RuntimeConfig(device="cpu", intra_op_threads=1)
    step_loop = Translator.from_repository(version, "fp32", runtime)
    fixed = Translator.from_repository(version, "fp32", runtime, fixed_step=True)
    options = step_loop.default_options(beam_size=1)
    sources = step_loop.encode(SOURCES)
    expected = step_loop.translate_ids(sources, options)
    found = fixed.translate_ids(sources, options)
    assert [h[0].tokens for h in found] == [h[0].tokens for h in expected]
    np.testing.assert_allclose([h[0].score for h in found], [h[0].score for h in expected], atol=1e-4)
    # some end with eos, before their maximum length
    assert any(len(h[0].tokens) + 1 < limit for h, limit in zip(found, options.max_lengths(sources)))
    # beam search and attention need the step loop; the fixed form is used for plain greedy only
    assert fixed.translate(SOURCES, options=fixed.default_options(beam_size=3)) == step_loop.translate(SOURCES, options=step_loop.default_options(beam_size=3))
    with pytest.raises(ManifestError, match="no fixed-shape decoder step"):
        Translator.from_repository(exported["rnn"][1], "fp32", runtime, fixed_step=True)


def test_graphs_that_decode_unlike_the_cpus_fp32_are_refused(exported: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from export import pipeline

    version = exported["transformer"][1]
    manifest = Manifest.load(version)
    sources = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1)).encode(SOURCES)
    variants = {"fp32": manifest.variants["fp32"]}
    monkeypatch.setattr(pipeline, "AGREEMENT_FLOORS", {"fp32": 1.01})  # more than all of them
    with pytest.raises(pipeline.AgreementRefused, match=r"fp32 fixed step on cpu: \d+ of \d+ greedy outputs"):
        pipeline.agree_with_cpu_fp32(version, variants, manifest.spec, sources, RuntimeConfig(device="cpu", intra_op_threads=1), lambda message: None)


@NEEDS_CUDA
def test_the_fixed_shape_step_replayed_as_cuda_graphs_translates_as_the_cpu(exported: dict) -> None:
    """fp16 on CUDA, each bucket's two bindings captured once and replayed: the CPU's fp32
    translations of these sentences (the export held it to 97% of its parity set)."""
    version = exported["transformer"][1]
    on_cpu = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    on_cuda = Translator.from_repository(version, "fp16", RuntimeConfig(device="cuda"), fixed_step=True)
    assert on_cuda.fixed_greedy is not None and on_cuda.fixed_greedy.cuda_graphs
    for _ in range(3):  # the first run of each binding is captured, the next ones replay it
        assert on_cuda.translate(SOURCES, options=on_cuda.default_options(beam_size=1)) == on_cpu.translate(SOURCES, options=on_cpu.default_options(beam_size=1))


@NEEDS_CUDA
def test_rows_joining_the_fixed_slots_on_cuda_translate_as_the_cpu(exported: dict) -> None:
    """In-flight on the fixed form, fp16 on CUDA with captured graphs: sentences joining a
    running batch one by one, written in place into its rows, get the CPU's fp32 translations."""
    version = exported["transformer"][1]
    on_cpu = Translator.from_repository(version, "fp32", RuntimeConfig(device="cpu", intra_op_threads=1))
    on_cuda = Translator.from_repository(version, "fp16", RuntimeConfig(device="cuda"), fixed_step=True)
    options = on_cuda.default_options(beam_size=1)
    sources = on_cuda.encode(SOURCES)
    slots, found = FixedRunningBatch(on_cuda.fixed_greedy.twin(), 4), {}
    waiting = list(range(len(sources)))
    while waiting or slots.size:
        if waiting and slots.takes([sources[waiting[0]]]):
            index = waiting.pop(0)
            slots.join([sources[index]], options.max_lengths([sources[index]]), [index])
        found.update(slots.step())
    texts = on_cuda.tokenizer.decode_batch([found[index].tokens for index in range(len(sources))])
    assert texts == [nbest[0].text for nbest in on_cpu.translate_ids(on_cpu.encode(SOURCES), on_cpu.default_options(beam_size=1))]
