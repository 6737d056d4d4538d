"""A MarianMT model in the Hugging Face layout, made in the test (no download), imported with
`python -m export --from-transformers`: its graphs follow transformers step by step, its greedy
and beam outputs are generate()'s, CTranslate2's own converter is compared, the server serves it
beside the shipped models, and what cannot be served is refused naming the file or field."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from export.cpu_choice import MARGIN
from export.marian import ImportRefused, MarianImport, generate, import_marian
from nmt_spec.manifest import Manifest, sha256_of
from server.client import TranslatorClient
from tests.export.tiny_marian import build_tiny_marian, training_pairs
from tests.server.running_server import MODELS, ROOT, shipped, start_server

NAME = "opus-mt-en-de"
UNSEEN = ["A man is riding a bike.", "Two dogs play in the snow.", "A woman sings."]


@pytest.fixture(scope="module")
def marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_marian(tmp_path_factory.mktemp("hub") / "tiny-marian")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [source for source, _ in training_pairs()] + UNSEEN


@pytest.fixture(scope="module")
def imported(marian: Path, texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    for name in ("transformer-en-de", "rnn-en-de"):  # served beside the shipped models
        (root / name).symlink_to(MODELS / name)
    parity = root.parent / "parity.txt"
    parity.write_text("\n".join(texts) + "\n")
    command = [sys.executable, "-m", "export", "--from-transformers", str(marian), "--name", NAME, "--version", "1", "--out", str(root), "--variants", "fp32", "int8", "--parity-file", str(parity)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / NAME / "1"


def test_the_tiny_model_looks_like_opus_mt(marian: Path) -> None:
    from transformers import MarianMTModel, MarianTokenizer

    model = MarianMTModel.from_pretrained(marian).eval()
    tokenizer = MarianTokenizer.from_pretrained(marian)
    pad = model.config.pad_token_id
    assert model.config.decoder_start_token_id == pad and bool((model.model.shared.weight[pad] == 0).all()), "the decoder starts from an all-zero pad embedding"
    for source, target in training_pairs()[:4]:
        output = model.generate(**tokenizer([source], return_tensors="pt"), num_beams=1)[0].tolist()
        assert output[-1] == model.config.eos_token_id and len(output) < 40, "trained enough to stop with eos"


def test_the_graphs_follow_transformers_step_by_step_and_decode_as_generate(imported: Path, texts: list[str]) -> None:
    report = json.loads((imported / "parity_report.json").read_text())
    assert report["sentences"] == len(texts)
    assert report["max_abs_log_prob_diff"] <= 1e-4
    assert report["beam 1: identical to generate()"] == report["beam 4: identical to generate()"] == f"{len(texts)}/{len(texts)}"


def test_the_tokenizer_contract_gives_marians_ids_and_text(marian: Path, imported: Path, texts: list[str]) -> None:
    from transformers import MarianTokenizer

    from decoding.runtime import RuntimeConfig
    from decoding.translator import Translator

    theirs = MarianTokenizer.from_pretrained(marian)
    ours = Translator.from_repository(imported, "fp32", RuntimeConfig(device="cpu")).tokenizer
    for text in texts + ["Unknown: ßðŋ ☃."]:
        ids = theirs(text)["input_ids"]
        assert ours.encode(text) == ids
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


def test_the_manifest_records_where_the_model_came_from(marian: Path, imported: Path) -> None:
    manifest = Manifest.load(imported)
    assert manifest.origin["format"] == "transformers MarianMTModel"
    assert manifest.origin["checkpoint_sha256"] == sha256_of(marian / "model.safetensors")
    assert (manifest.spec.source_language, manifest.spec.target_language) == ("en", "de")
    assert manifest.decoding.beam_size == 4 and manifest.spec.special_ids.pad in manifest.decoding.suppressed_ids
    assert set(manifest.variants) == {"fp32", "int8"}
    # the parity sentences also timed both variants: the CPU default is the faster by the margin
    speeds = {name: manifest.variants[name].cpu_speed for name in ("fp32", "int8")}
    assert all(speed["sentences"] > 0 and speed["seconds"] > 0 for speed in speeds.values()), speeds
    assert manifest.cpu_default_variant == ("int8" if speeds["int8"]["seconds"] * MARGIN <= speeds["fp32"]["seconds"] else "fp32")
    decoder = {t.name for t in manifest.variants["fp32"].decoder.inputs}
    assert {"past_key_values.0.decoder.key", "past_key_values.0.encoder.key", "output_attentions"} <= decoder


def test_served_beside_the_shipped_models_it_answers_as_generate(marian: Path, imported: Path, tmp_path: Path) -> None:
    from transformers import MarianMTModel, MarianTokenizer

    model = MarianMTModel.from_pretrained(marian).eval()
    tokenizer = MarianTokenizer.from_pretrained(marian)
    manifest = Manifest.load(imported)
    server = start_server(tmp_path, "--model-repository", str(imported.parent.parent), "--variant", "fp32")  # transformers computes in fp32
    try:
        client = TranslatorClient(server.target)
        models = {m.name: m for m in client.list_models().models}
        assert {"transformer-en-de", "rnn-en-de", NAME} <= set(models)
        assert (models[NAME].source_language, models[NAME].target_language, models[NAME].architecture) == ("en", "de", "transformer")
        assert models[NAME].default_beam_size == 4
        assert models["transformer-en-de"].default_beam_size == Manifest.load(shipped("transformer-en-de")).decoding.beam_size
        texts = [source for source, _ in training_pairs()[:4]] + UNSEEN
        response = client.translate(texts, model=NAME)  # no options: the model's own beam of 4
        for text, translation in zip(texts, response.translations):
            with torch.no_grad():
                expected = generate(model, tokenizer(text)["input_ids"], manifest.spec, manifest.decoding, manifest.decoding.beam_size)
            assert translation.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert client.translate(["A dog runs."], model="transformer-en-de").translations[0].text == "Ein Hund rennt."
    finally:
        assert server.stop() == 0


def test_ctranslate2s_converter_is_compared_and_its_differences_explained(marian: Path, imported: Path, texts: list[str], tmp_path: Path) -> None:
    listing = tmp_path / "texts.txt"
    listing.write_text("\n".join(texts) + "\n")
    out = tmp_path / "MARIAN-IMPORT.md"
    command = [sys.executable, "-m", "bench.marian_ctranslate2", "--transformers-dir", str(marian), "--imported", str(imported), "--texts", str(listing), "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| ([14]) \| (\d+) / (\d+) \| (\d+) / \d+ \| (\d+) / \d+ \| (\d+) / \d+ \| (\d+) / (\d+) \|$", out.read_text(), re.MULTILINE)
    assert [row[0] for row in rows] == ["1", "4"]
    for _, ours_equal, total, *_ in rows:
        assert ours_equal == total, "our import equals transformers' generate()"


def copy_of(marian: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "opus-mt-en-de"
    shutil.copytree(marian, copy)
    return copy


def refusal(directory: Path, tmp_path: Path) -> str:
    with pytest.raises(ImportRefused) as refused:
        import_marian(MarianImport(directory=directory, name=NAME, output_root=tmp_path / "out"), progress=lambda _: None)
    assert not (tmp_path / "out" / NAME / "1").exists()
    return str(refused.value)


def test_another_architecture_is_refused_naming_the_field(marian: Path, tmp_path: Path) -> None:
    directory = copy_of(marian, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "bart", "architectures": ["BartForConditionalGeneration"]}))
    message = refusal(directory, tmp_path)
    assert "config.json" in message and "model_type 'bart'" in message and "MarianMTModel" in message


def test_a_missing_tokenizer_file_is_refused_naming_it(marian: Path, tmp_path: Path) -> None:
    directory = copy_of(marian, tmp_path)
    (directory / "target.spm").unlink()
    assert "target.spm: missing" in refusal(directory, tmp_path)


def test_a_multilingual_model_needing_a_language_token_is_refused(marian: Path, tmp_path: Path) -> None:
    directory = copy_of(marian, tmp_path)
    vocabulary = json.loads((directory / "vocab.json").read_text())
    (directory / "vocab.json").write_text(json.dumps({**vocabulary, ">>deu<<": len(vocabulary), ">>fra<<": len(vocabulary) + 1}))
    message = refusal(directory, tmp_path)
    assert "vocab.json" in message and ">>deu<<" in message and "multilingual" in message


def test_an_unsupported_activation_is_refused_naming_the_field(marian: Path, tmp_path: Path) -> None:
    directory = copy_of(marian, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "activation_function": "gelu_new"}))
    assert "activation_function 'gelu_new'" in refusal(directory, tmp_path)


def test_the_cli_says_refused_and_exits_non_zero(marian: Path, tmp_path: Path) -> None:
    directory = copy_of(marian, tmp_path)
    (directory / "source.spm").unlink()
    result = subprocess.run([sys.executable, "-m", "export", "--from-transformers", str(directory), "--name", NAME, "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "refused:" in result.stderr and "source.spm" in result.stderr


def test_the_server_flag_overrides_the_manifests_decoding_and_a_requests_options_override_both(marian: Path, imported: Path, tmp_path: Path) -> None:
    from transformers import MarianMTModel, MarianTokenizer

    from nmt.v1 import translator_pb2 as pb

    model = MarianMTModel.from_pretrained(marian).eval()
    tokenizer = MarianTokenizer.from_pretrained(marian)
    manifest = Manifest.load(imported)
    texts = UNSEEN + [source for source, _ in training_pairs()[4:]]

    def expected(beam_size: int) -> list[str]:
        return [tokenizer.decode(generate(model, tokenizer(t)["input_ids"], manifest.spec, manifest.decoding, beam_size), skip_special_tokens=True) for t in texts]

    greedy, beam = expected(1), expected(4)
    assert greedy != beam, "greedy and beam 4 must differ on some sentence for this test to tell them apart"
    server = start_server(tmp_path, "--model-repository", str(imported.parent.parent), "--default-beam-size", "1", "--variant", "fp32")
    try:
        client = TranslatorClient(server.target)
        models = {m.name: m for m in client.list_models().models}
        assert models[NAME].default_beam_size == 1 and models["transformer-en-de"].default_beam_size == 1
        assert [t.text for t in client.translate(texts, model=NAME).translations] == greedy
        assert [t.text for t in client.translate(texts, model=NAME, options=pb.DecodingOptions(beam_size=4)).translations] == beam
    finally:
        assert server.stop() == 0
