"""Requests that tried to stall the service, through the real server at its default flags: an
outsized text is refused before any work, a heavy document takes turns with light requests, a
stream that sends faster than the server decodes is slowed instead of refused, and idle
connections to the metrics port hold no threads. Latencies are measured by the soak
(`python -m bench.soak --hostile`, docs/RELIABILITY.md), not asserted here."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from server.config import ServerConfig
from tests.server.conftest import TEST_SENTENCES, greedy
from tests.server.running_server import RunningServer, accepted_sentences

CONFIG = ServerConfig()
REQUEST_CHARACTERS = CONFIG.max_request_tokens * CONFIG.max_characters_per_token
LIGHT = TEST_SENTENCES[:20]


def light_requests_meanwhile(target: str, direct: dict, until: threading.Event) -> list[tuple[str, str]]:
    """One-sentence requests from another client, one after another until `until` is set:
    (answer, expected) pairs."""
    expected = dict(zip(LIGHT, greedy(direct["transformer-en-de"], LIGHT)))
    answers = []
    with grpc.insecure_channel(target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)
        while not until.is_set() or not answers:
            sentence = LIGHT[len(answers) % len(LIGHT)]
            answers.append((stub.Translate(pb.TranslateRequest(texts=[sentence]), timeout=60).translations[0].text, expected[sentence]))
    return answers


@pytest.mark.parametrize(
    "hostile",
    [pytest.param("x" * 1_000_000, id="a megabyte without spaces"), pytest.param("word " * 200_000, id="a megabyte of words")],
)
def test_an_outsized_text_is_refused_naming_the_character_limit_while_others_are_answered(server: RunningServer, direct: dict, hostile: str) -> None:
    done = threading.Event()
    with ThreadPoolExecutor(1) as pool, grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
        light = pool.submit(light_requests_meanwhile, server.target, {"transformer-en-de": direct["transformer-en-de"]}, done)
        stub = translator_pb2_grpc.TranslatorStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Translate(pb.TranslateRequest(texts=[hostile]), timeout=60)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"the limit is {REQUEST_CHARACTERS}" in refused.value.details() and "--max-characters-per-token" in refused.value.details()
        done.set()
        answers = light.result()
    assert answers and all(answer == expected for answer, expected in answers)


def test_a_text_just_under_the_character_limit_without_spaces_is_cut_linearly_and_refused_on_tokens(server: RunningServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Translate(pb.TranslateRequest(texts=["ab" * (REQUEST_CHARACTERS // 2)]), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the limit is {CONFIG.max_request_tokens}" in refused.value.details() and "source tokens" in refused.value.details()


def test_an_unsplit_text_over_the_models_input_in_characters_is_refused_before_tokenization(server: RunningServer) -> None:
    limit = 128 * CONFIG.max_characters_per_token  # the shipped Transformer's input, in characters
    with grpc.insecure_channel(server.target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Translate(pb.TranslateRequest(texts=["A dog.", "a" * (limit + 1)], split_sentences=False), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"texts[1] holds {limit + 1} characters" in refused.value.details() and f"at most {limit}" in refused.value.details()


def test_light_requests_take_turns_with_a_heavy_document_and_finish_before_it(server: RunningServer, direct: dict) -> None:
    """A 300-sentence document at beam 8, 8-best, with attention is queued as many work items;
    one-sentence requests sent after it get their turns between them instead of after all.
    (Before turns, each waited for the whole document: 3.9 s, against 0.02 s alone.)"""
    document = "\n".join(TEST_SENTENCES[100:400])  # a line break always ends a sentence
    heavy_options = pb.DecodingOptions(beam_size=8, num_hypotheses=8, return_attention=True)
    before = accepted_sentences(server.scrape(), "transformer-en-de")
    finished_light: list[bool] = []
    with ThreadPoolExecutor(1) as pool, grpc.insecure_channel(server.target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)
        heavy = pool.submit(stub.Translate, pb.TranslateRequest(texts=[document], options=heavy_options), timeout=300)
        server.wait_for_metrics(lambda samples: accepted_sentences(samples, "transformer-en-de") >= before + 300, "the document queued")
        expected = greedy(direct["transformer-en-de"], LIGHT[:3])
        for sentence, wanted in zip(LIGHT[:3], expected):
            assert stub.Translate(pb.TranslateRequest(texts=[sentence]), timeout=60).translations[0].text == wanted
            finished_light.append(not heavy.done())
        (translation,) = heavy.result().translations
    assert all(finished_light), "a light request waited for the whole document"
    assert translation.sentences >= 300 and len(translation.hypotheses) == 8 and len(translation.attention) == translation.sentences


def test_a_stream_pushing_5000_requests_gets_5000_translations_in_order_none_refused(server: RunningServer, direct: dict) -> None:
    translator = direct["transformer-en-de"]
    sentences = [TEST_SENTENCES[i % 50] for i in range(5000)]
    expected = dict(zip(TEST_SENTENCES[:50], translator.translate(TEST_SENTENCES[:50], translator.default_options(beam_size=1))))
    greedy_search = pb.DecodingOptions(beam_size=1)
    with grpc.insecure_channel(server.target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)
        responses = list(stub.TranslateStream((pb.TranslateRequest(texts=[s], options=greedy_search) for s in sentences), timeout=600))
    errors = [response.error for response in responses if response.HasField("error")]
    assert not errors, f"{len(errors)} refused, the first: {errors[0]}"
    assert [response.translations[0].text for response in responses] == [expected[s] for s in sentences]


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no thread count for process {pid}")


def test_500_idle_connections_to_the_metrics_port_hold_no_threads_and_scrapes_and_translations_go_on(server: RunningServer, direct: dict) -> None:
    host, port = server.metrics_url.split("//")[1].split("/")[0].split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(500)]
    try:
        idle[0].sendall(b"GET /metrics HTTP/1.1\r\n")  # and one that never finishes its request
        samples = server.scrape()
        assert "nmt_models_loaded" in samples
        assert threads_of(server.process.pid) < 100
        with grpc.insecure_channel(server.target) as channel:
            stub = translator_pb2_grpc.TranslatorStub(channel)
            assert stub.Translate(pb.TranslateRequest(texts=[LIGHT[0]]), timeout=60).translations[0].text == greedy(direct["transformer-en-de"], LIGHT[:1])[0]
    finally:
        for connection in idle:
            connection.close()
