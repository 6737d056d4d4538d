"""Translations through the real server equal the decoding module's, alone, batched, concurrent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from decoding.device_rows import DeviceRows
from decoding.runtime import RuntimeConfig
from decoding.translator import Translator
from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from server.client import TranslatorClient
from server.models import fixed_step_works
from tests.server.conftest import DEFAULT_MODELS, TEST_SENTENCES, greedy, served_variant
from tests.server.running_server import RunningServer, shipped, start_server


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_server_translations_equal_the_decoding_module(server: RunningServer, direct: dict, model: str) -> None:
    texts = TEST_SENTENCES[:24]
    client = TranslatorClient(server.target)
    response = client.translate(texts, model=model)
    assert response.model == model and response.model_version == shipped(model).name
    assert [t.text for t in response.translations] == greedy(direct[model], texts)
    sources = direct[model].encode(texts)
    assert [t.input_tokens for t in response.translations] == [len(s) for s in sources]
    assert all(t.output_tokens > 0 for t in response.translations)


def test_empty_model_name_means_the_default_model(server: RunningServer, direct: dict) -> None:
    response = TranslatorClient(server.target).translate(["A man is riding a bike."])
    assert response.model == "transformer-en-de"
    assert response.translations[0].text == greedy(direct["transformer-en-de"], ["A man is riding a bike."])[0]


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_beam_search_returns_the_n_best_of_the_decoding_module(server: RunningServer, direct: dict, model: str) -> None:
    texts = TEST_SENTENCES[30:34]
    options = pb.DecodingOptions(beam_size=4, num_hypotheses=3, length_penalty=0.6, return_scores=True)
    response = TranslatorClient(server.target).translate(texts, model=model, options=options)
    expected = direct[model].translate_ids(direct[model].encode(texts), direct[model].default_options(beam_size=4, num_hypotheses=3, length_penalty=0.6))
    for translation, nbest in zip(response.translations, expected):
        assert [h.text for h in translation.hypotheses] == [h.text for h in nbest]
        assert translation.text == nbest[0].text
        assert translation.score == pytest.approx(nbest[0].score, abs=1e-3)
        assert [h.score for h in translation.hypotheses] == pytest.approx([h.score for h in nbest], abs=1e-3)


def test_a_stream_answers_every_request_in_order(server: RunningServer, direct: dict) -> None:
    chunks = [TEST_SENTENCES[i : i + 3] for i in range(40, 55, 3)]
    responses = list(TranslatorClient(server.target).translate_stream(chunks))
    assert [[t.text for t in r.translations] for r in responses] == [greedy(direct["transformer-en-de"], chunk) for chunk in chunks]


async def translate_concurrently(target: str, requests: list[tuple[str, list[str], pb.DecodingOptions | None]]) -> list[pb.TranslateResponse]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)
        calls = [stub.Translate(pb.TranslateRequest(model=model, texts=texts, options=options), timeout=120) for model, texts, options in requests]
        return await asyncio.gather(*calls)


@pytest.mark.parametrize(
    "policy, workers, variant, fixed_step",
    [
        ("inflight", 1, "fp32", "off"),
        ("dynamic", 1, "fp32", "off"),
        ("inflight", 2, "fp32", "off"),
        ("dynamic", 2, "fp32", "off"),
        ("inflight", 2, "int8", "off"),
        ("dynamic", 1, "int8", "off"),
        ("dynamic", 2, "fp32", "on"),
        ("inflight", 2, "fp32", "on"),
    ],
)
def test_concurrent_requests_each_get_the_answer_they_get_alone(tmp_path: Path, direct: dict, policy: str, workers: int, variant: str, fixed_step: str) -> None:
    """64 clients at once, of both models, greedy and beam, one or several sentences: batching
    (of either policy, by one worker or by two sharing the queue and the sessions) changes no
    answer, in fp32 and in int8 (per-row activation scales: no scale is shared between rows),
    nor does decoding greedy sentences on the Transformer's fixed-shape step (the GPU form, each
    worker with buffers of its own: whole batches, or rows joining and leaving by slot)."""
    texts = TEST_SENTENCES[100:164]
    requests = []
    for index, text in enumerate(texts):
        model = DEFAULT_MODELS[index % 2]
        batch = [text] if index % 3 else texts[index : index + 3]
        options = pb.DecodingOptions(beam_size=2) if index % 5 == 0 else None
        requests.append((model, batch, options))
    # greedy unless a request asks for a beam, as the expected answers below are computed
    flags = ["--default-beam-size", "1", "--batching", policy, "--max-batch-size", "16", "--decode-workers", str(workers), "--intra-op-threads", str(3 - workers)]
    running = start_server(tmp_path, *flags, "--variant", variant, "--fixed-step", fixed_step)
    try:
        responses = asyncio.run(translate_concurrently(running.target, requests))
        scraped = running.scrape()
        fixed = {phase: scraped.get(f'nmt_batch_compute_seconds_count{{model="transformer-en-de",phase="{phase}"}}', 0) for phase in ("decode_batch", "fixed_step")}
        # whole batches under dynamic, slots joined and left under inflight
        assert (fixed["decode_batch"] > 0) == (fixed_step == "on" and policy == "dynamic"), fixed
        assert (fixed["fixed_step"] > 0) == (fixed_step == "on" and policy == "inflight"), fixed
    finally:
        assert running.stop() == 0
    alone = {m: direct[m] if variant == served_variant(m) else Translator.from_repository(shipped(m), variant, RuntimeConfig(device="cpu")) for m in DEFAULT_MODELS}
    for (model, batch, options), response in zip(requests, responses):
        search = alone[model].default_options(beam_size=options.beam_size if options else 1)
        expected = [nbest[0].text for nbest in alone[model].translate_ids(alone[model].encode(batch), search)]
        assert [t.text for t in response.translations] == expected, (policy, variant, model, batch)


def test_a_request_cancelled_in_fixed_slots_frees_them_and_the_others_answer_as_alone(tmp_path: Path, direct: dict) -> None:
    """In-flight on the fixed-shape step: a greedy document cancelled while its sentences hold
    slots leaves them; requests decoded beside it and after it get their answers decoded alone,
    and the in-flight gauge returns to 0."""
    translator = direct["transformer-en-de"]

    def plain_greedy(texts: list[str]) -> list[str]:
        return translator.translate(texts, translator.default_options(beam_size=1))

    running = start_server(tmp_path, "--default-beam-size", "1", "--batching", "inflight", "--fixed-step", "on", "--models", "transformer-en-de", "--max-batch-size", "32")
    try:
        with grpc.insecure_channel(running.target) as channel:
            stub = translator_pb2_grpc.TranslatorStub(channel)
            paragraphs = [" ".join(TEST_SENTENCES[200 + 4 * i : 204 + 4 * i]) for i in range(64)]
            document = stub.Translate.future(pb.TranslateRequest(texts=paragraphs), timeout=60)
            running.wait_for_metrics(lambda samples: samples.get('nmt_inflight_sentences{model="transformer-en-de"}', 0) > 0, "the document in slots")
            beside = TEST_SENTENCES[470:476]
            answer = stub.Translate.future(pb.TranslateRequest(texts=beside), timeout=60)
            assert document.cancel()
            assert [t.text for t in answer.result().translations] == plain_greedy(beside)
            after = TEST_SENTENCES[480:490]
            assert [t.text for t in stub.Translate(pb.TranslateRequest(texts=after), timeout=60).translations] == plain_greedy(after)
        samples = running.wait_for_metrics(lambda samples: samples['nmt_inflight_sentences{model="transformer-en-de"}'] == 0, "in-flight gauge back to 0", timeout=30)
        assert samples['nmt_batch_compute_seconds_count{model="transformer-en-de",phase="fixed_step"}'] > 0
    finally:
        assert running.stop() == 0


def test_the_fixed_step_check_passes_a_working_form_and_fails_one_whose_slots_are_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """What --fixed-step auto runs before serving on the fixed form (on CUDA): rows joining its
    slots must decode as a batch does; if the in-place writes did nothing, the check says so."""
    translator = Translator.from_repository(shipped("transformer-en-de"), "fp32", RuntimeConfig(device="cpu"), fixed_step=True)
    assert fixed_step_works(translator, "transformer-en-de", inflight=True)
    monkeypatch.setattr(DeviceRows, "overwrite", lambda self, target, rows, incoming: None)
    assert fixed_step_works(translator, "transformer-en-de", inflight=False)  # whole batches write no rows
    assert not fixed_step_works(translator, "transformer-en-de", inflight=True)
