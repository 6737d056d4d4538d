"""The model spec and tokenizer: the torch-free contract between training, export and serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nmt_spec import (
    ModelSpec,
    RNNConfig,
    SpecialIds,
    Tokenizer,
    TransformerConfig,
    train_tokenizer,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec", [ModelSpec("transformer", TransformerConfig(d_model=128)), ModelSpec("rnn", RNNConfig(cell="lstm"))])
def test_spec_survives_a_json_round_trip(spec: ModelSpec, tmp_path: Path) -> None:
    spec.save(tmp_path / "model_spec.json")
    assert ModelSpec.load(tmp_path / "model_spec.json") == spec


def test_spec_rejects_unknown_fields_and_architectures() -> None:
    values = ModelSpec("transformer", TransformerConfig()).to_dict()
    values["config"]["d_modle"] = 3
    with pytest.raises(ValueError, match="d_modle"):
        ModelSpec.from_dict(values)
    with pytest.raises(ValueError, match="architecture"):
        ModelSpec.from_dict({**ModelSpec("rnn", RNNConfig()).to_dict(), "architecture": "cnn"})
    with pytest.raises(TypeError):
        ModelSpec("rnn", TransformerConfig())


def test_shared_package_imports_without_torch() -> None:
    """Serving loads specs and tokenizers in an image that has no torch."""
    code = "import sys, nmt_spec; assert 'torch' not in sys.modules, 'nmt_spec imported torch'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    lines = (ROOT / "data/multi30k/val.en").read_text(encoding="utf-8").splitlines()
    lines += (ROOT / "data/multi30k/val.de").read_text(encoding="utf-8").splitlines()
    return train_tokenizer(lines, tmp_path_factory.mktemp("tok") / "tokenizer.model", vocab_size=500)


def test_tokenizer_round_trips_text_and_appends_eos(tokenizer: Tokenizer) -> None:
    text = "Ein kleines Mädchen klettert in ein Spielhaus aus Holz."
    ids = tokenizer.encode(text)
    assert ids[-1] == SpecialIds().eos
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode_batch([text, "A dog."]) == [ids, tokenizer.encode("A dog.")]


def test_decoding_stops_at_eos_and_drops_bos_and_padding(tokenizer: Tokenizer) -> None:
    special = SpecialIds()
    ids = tokenizer.encode("A dog runs.")
    noisy = [special.bos, *ids, 17, 18, special.pad]
    assert tokenizer.decode_batch([noisy]) == ["A dog runs."]


def test_tokenizer_refuses_a_model_with_other_special_ids(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="special ids"):
        Tokenizer(tokenizer.model_path, SpecialIds(pad=3, unk=0, bos=1, eos=2))


def test_spec_file_is_plain_json(tmp_path: Path) -> None:
    ModelSpec("transformer", TransformerConfig()).save(tmp_path / "spec.json")
    values = json.loads((tmp_path / "spec.json").read_text())
    assert values["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
