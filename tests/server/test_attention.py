"""return_attention through the real server: the attention of each hypothesis equals PyTorch's
for the same tokens, is a distribution over the source per target token, aligns the words a
reader would align, follows the beams, and costs nothing to requests that do not ask."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from nmt_spec import Tokenizer
from server.client import TranslatorClient
from tests.server.conftest import DEFAULT_MODELS, TEST_SENTENCES, greedy
from tests.server.running_server import ROOT, RunningServer, shipped, start_server
from training.checkpoint import load_model
from training.search import TorchIncrementalDecoder

# (source, target word stem -> the source word it translates), as a reader would align them
CAPTIONS = [
    ("A dog runs on the beach.", {"Hund": "dog", "Strand": "beach"}),
    ("A man is riding a bike.", {"Mann": "man", "Fahrrad": "bike"}),
    ("A woman in a red dress sings.", {"Frau": "woman", "Kleid": "dress", "rot": "red"}),
    ("Two children play in the snow.", {"Zwei": "Two", "Kinder": "children", "Schnee": "snow"}),
    ("A black dog is swimming in the water.", {"schwarz": "black", "Hund": "dog", "Wasser": "water"}),
]


def attention(options: pb.DecodingOptions | None = None, **fields) -> pb.DecodingOptions:
    merged = pb.DecodingOptions(return_attention=True, **fields)
    if options is not None:
        merged.MergeFrom(options)
    return merged


@pytest.fixture(scope="module")
def fp32_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Serving fp32, as PyTorch computes: the CPU's default int8 attends a little differently."""
    running = start_server(tmp_path_factory.mktemp("fp32-server"), "--variant", "fp32")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pytorch() -> dict:
    torch.set_num_threads(1)
    return {name: load_model(ROOT / "checkpoints" / name / "model.pt")[1].eval() for name in DEFAULT_MODELS}


def teacher_forced_attention(model, source: list[int], tokens: list[int], bos: int, layer: int) -> np.ndarray:
    """PyTorch's attention at each step of feeding the hypothesis's own tokens."""
    decoder = TorchIncrementalDecoder(model, torch.tensor([source]), attention_layer=layer)
    decoder.output_attentions = True
    rows = []
    for previous in [bos, *tokens[:-1]]:
        decoder.step(np.array([previous]))
        rows.append(decoder.attention[0])
    return np.array(rows)


def weights(sentence: pb.SentenceAttention) -> np.ndarray:
    return np.array([list(row.weights) for row in sentence.weights])


@pytest.mark.parametrize("model", DEFAULT_MODELS)
@pytest.mark.parametrize("beam_size", [1, 4])
def test_the_attention_of_each_hypothesis_equals_pytorchs_for_its_tokens(fp32_server: RunningServer, pytorch: dict, model: str, beam_size: int) -> None:
    client = TranslatorClient(fp32_server.target)
    (info,) = [m for m in client.list_models().models if m.name == model]
    assert info.has_attention and info.attention_layer >= 1
    tokenizer = Tokenizer(shipped(model) / "tokenizer.model")
    texts = TEST_SENTENCES[500:506]
    options = attention(beam_size=beam_size, num_hypotheses=min(beam_size, 3))
    for text, translation in zip(texts, client.translate(texts, model=model, options=options).translations):
        hypotheses = [(translation.attention, translation.output_tokens)] + [(h.attention, h.output_tokens) for h in translation.hypotheses]
        for (sentence,), output_tokens in hypotheses:
            source = tokenizer.encode(text)
            assert list(sentence.source_tokens) == tokenizer.id_pieces(source)
            got = weights(sentence)
            assert got.shape == (output_tokens, len(source)), "a row per output token, a column per input token (eos included)"
            np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
            tokens = [tokenizer._processor.piece_to_id(piece) for piece in sentence.target_tokens]
            expected = teacher_forced_attention(pytorch[model], source, tokens, tokenizer.special_ids.bos, info.attention_layer - 1)
            np.testing.assert_allclose(got, expected, atol=1e-4)


# The Transformer's layer was chosen at export for this; the shipped RNN's single attention
# lags a word behind on some captions ('Fahrrad.' on 'a' in "A man is riding a bike.").
@pytest.mark.parametrize("model", ["transformer-en-de"])
def test_words_align_where_a_reader_would_align_them(server: RunningServer, model: str) -> None:
    client = TranslatorClient(server.target)
    texts = [source for source, _ in CAPTIONS]
    for (source, expected), translation in zip(CAPTIONS, client.translate(texts, model=model, options=attention()).translations):
        (sentence,) = translation.attention
        target_words, source_words = translation.text.split(), source.split()
        aligned = {target_words[a.target_word]: source_words[a.source_word].strip(".") for a in sentence.alignment}
        assert len(sentence.alignment) == len(target_words)
        for stem, source_word in expected.items():
            word = next((w for w in target_words if w.startswith(stem)), None)
            assert word is not None, (translation.text, stem)
            assert aligned[word] == source_word, (model, translation.text, word, aligned)


def test_requests_without_the_option_get_the_same_answers_beside_requests_with_it(server: RunningServer, direct: dict) -> None:
    texts = TEST_SENTENCES[520:552]

    async def run() -> list[pb.TranslateResponse]:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = translator_pb2_grpc.TranslatorStub(channel)
            calls = [stub.Translate(pb.TranslateRequest(texts=[text], options=attention() if i % 2 else None), timeout=60) for i, text in enumerate(texts)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(run())
    assert [r.translations[0].text for r in responses] == greedy(direct["transformer-en-de"], texts)
    assert all(bool(r.translations[0].attention) == bool(i % 2) for i, r in enumerate(responses))


def test_each_sentence_of_a_paragraph_has_its_own_attention(server: RunningServer) -> None:
    (translation,) = TranslatorClient(server.target).translate(["A dog runs. Two cats sleep on a sofa."], options=attention()).translations
    assert translation.sentences == 2 and len(translation.attention) == 2
    assert [t.source_tokens[-1] for t in translation.attention] == ["</s>", "</s>"]
    assert sum(len(t.target_tokens) for t in translation.attention) == translation.output_tokens


def test_the_client_draws_the_attention_and_pytorch_gives_the_same(fp32_server: RunningServer, tmp_path) -> None:
    import subprocess
    import sys

    png = tmp_path / "attention.png"
    text = "A dog runs on the beach."
    drawn = subprocess.run([sys.executable, "-m", "server.client", "--target", fp32_server.target, "--attention-png", str(png), text], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    (translation,) = TranslatorClient(fp32_server.target).translate([text], options=attention()).translations
    layer = next(m.attention_layer for m in TranslatorClient(fp32_server.target).list_models().models if m.name == "transformer-en-de")
    command = [sys.executable, "-m", "training", "translate", "--checkpoint", "checkpoints/transformer-en-de/model.pt", "--attention", "--attention-layer", str(layer), text]
    printed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert printed[0] == translation.text
    reference = json.loads(printed[1])
    assert reference["target_tokens"] == list(translation.attention[0].target_tokens)
    np.testing.assert_allclose(weights(translation.attention[0]), reference["weights"], atol=1e-4)
    assert [tuple(pair) for pair in reference["alignment"]] == [(a.target_word, a.source_word) for a in translation.attention[0].alignment]
