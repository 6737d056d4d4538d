from __future__ import annotations

from pathlib import Path

import pytest

from decoding.runtime import RuntimeConfig
from decoding.translator import Translator
from nmt_spec.manifest import Manifest
from server.models import choose_variant
from tests.server.running_server import shipped

DEFAULT_MODELS = ["transformer-en-de", "rnn-en-de"]
TEST_SENTENCES = (Path(__file__).resolve().parents[2] / "data" / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()


def served_variant(name: str) -> str:
    """The variant the server picks for a shipped model on a CPU."""
    return choose_variant(Manifest.load(shipped(name), verify_files=False), "auto", on_cuda=False)


@pytest.fixture(scope="session")
def direct() -> dict[str, Translator]:
    """The decoding module on the variant the server picks on a CPU, for expected answers."""
    return {name: Translator.from_repository(shipped(name), served_variant(name), RuntimeConfig(device="cpu")) for name in DEFAULT_MODELS}


def greedy(translator: Translator, texts: list[str]) -> list[str]:
    """What the server answers one sentence each: the model's default decoding."""
    return translator.translate(texts)
