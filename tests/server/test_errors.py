"""Bad input gets the right status and a message that says what to fix; load beyond the queue
is refused, deadlines and cancellations drop the work; nothing else is disturbed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc
import pytest

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from tests.server.conftest import TEST_SENTENCES, greedy
from tests.server.running_server import RunningServer, accepted_sentences, start_server

LONG_TEXT = " ".join(TEST_SENTENCES[:20])  # far over 128 tokens, under 128 x 16 characters
HUGE_DOCUMENT = "\n".join(TEST_SENTENCES)  # about 15,000 tokens
Options = pb.DecodingOptions

BAD_REQUESTS = [
    ("no texts", pb.TranslateRequest(texts=[]), grpc.StatusCode.INVALID_ARGUMENT, "texts is empty"),
    ("empty text", pb.TranslateRequest(texts=["A dog.", ""]), grpc.StatusCode.INVALID_ARGUMENT, r"texts\[1\] is empty"),
    ("whitespace text", pb.TranslateRequest(texts=[" \t\n"]), grpc.StatusCode.INVALID_ARGUMENT, r"texts\[0\] is empty or holds only whitespace"),
    ("invisible characters only", pb.TranslateRequest(texts=["\u200b\ufeff \u200d"]), grpc.StatusCode.INVALID_ARGUMENT, r"texts\[0\] is empty or holds only whitespace or invisible"),
    ("text too long, unsplit", pb.TranslateRequest(texts=["A dog.", LONG_TEXT], split_sentences=False), grpc.StatusCode.INVALID_ARGUMENT, r"texts\[1\] is \d+ tokens long.*at most 128.*split_sentences"),
    ("document over the request limit", pb.TranslateRequest(texts=[HUGE_DOCUMENT]), grpc.StatusCode.INVALID_ARGUMENT, r"holds \d+ source tokens after splitting.*limit is 8192"),
    ("min length over max", pb.TranslateRequest(texts=["A dog."], options=Options(max_decoding_length=5, min_decoding_length=6)), grpc.StatusCode.INVALID_ARGUMENT, r"min_decoding_length must be at most max_decoding_length \(5\)"),
    ("repetition penalty 0", pb.TranslateRequest(texts=["A dog."], options=Options(repetition_penalty=0)), grpc.StatusCode.INVALID_ARGUMENT, "repetition_penalty must be a finite number > 0"),
    ("infinite repetition penalty", pb.TranslateRequest(texts=["A dog."], options=Options(repetition_penalty=float("inf"))), grpc.StatusCode.INVALID_ARGUMENT, "repetition_penalty"),
    ("n-gram size over max", pb.TranslateRequest(texts=["A dog."], options=Options(max_decoding_length=4, no_repeat_ngram_size=5)), grpc.StatusCode.INVALID_ARGUMENT, r"no_repeat_ngram_size must be at most max_decoding_length \(4"),
    ("too many texts", pb.TranslateRequest(texts=["A dog."] * 129), grpc.StatusCode.INVALID_ARGUMENT, "129 texts.*limit is 128"),
    ("beam 0", pb.TranslateRequest(texts=["A dog."], options=Options(beam_size=0)), grpc.StatusCode.INVALID_ARGUMENT, "beam_size must be between 1 and 8"),
    ("beam over the limit", pb.TranslateRequest(texts=["A dog."], options=Options(beam_size=9)), grpc.StatusCode.INVALID_ARGUMENT, "beam_size.*got 9"),
    ("negative length penalty", pb.TranslateRequest(texts=["A dog."], options=Options(length_penalty=-0.5)), grpc.StatusCode.INVALID_ARGUMENT, "length_penalty must be"),
    ("nan length penalty", pb.TranslateRequest(texts=["A dog."], options=Options(length_penalty=float("nan"))), grpc.StatusCode.INVALID_ARGUMENT, "length_penalty"),
    ("more hypotheses than beams", pb.TranslateRequest(texts=["A dog."], options=Options(beam_size=2, num_hypotheses=3)), grpc.StatusCode.INVALID_ARGUMENT, "num_hypotheses.*beam_size \\(2\\)"),
    ("max length 0", pb.TranslateRequest(texts=["A dog."], options=Options(max_decoding_length=0)), grpc.StatusCode.INVALID_ARGUMENT, "max_decoding_length"),
    ("max length over the model's", pb.TranslateRequest(texts=["A dog."], options=Options(max_decoding_length=1000)), grpc.StatusCode.INVALID_ARGUMENT, "max_decoding_length.*128"),
    ("unknown model", pb.TranslateRequest(model="klingon", texts=["A dog."]), grpc.StatusCode.NOT_FOUND, "'klingon' is not served.*transformer-en-de"),
    ("unknown version", pb.TranslateRequest(model="rnn-en-de", model_version="7", texts=["A dog."]), grpc.StatusCode.NOT_FOUND, "version '7' is not loaded"),
]


@pytest.mark.parametrize(("case", "request_message", "code", "message"), BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_gets_its_status_code_and_a_message_that_says_what_to_fix(server: RunningServer, case: str, request_message, code, message: str) -> None:
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            translator_pb2_grpc.TranslatorStub(channel).Translate(request_message, timeout=30)
    assert raised.value.code() == code
    assert re.search(message, raised.value.details()), raised.value.details()


def test_bad_requests_do_not_disturb_good_ones_sent_at_the_same_time(server: RunningServer, direct: dict) -> None:
    good = [("transformer-en-de", [text], None) for text in TEST_SENTENCES[200:216]]
    bad = [("transformer-en-de", [""], None), ("nope", ["A dog."], None), ("rnn-en-de", ["A dog."], Options(beam_size=99))]

    async def run() -> list:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = translator_pb2_grpc.TranslatorStub(channel)
            calls = [stub.Translate(pb.TranslateRequest(model=m, texts=t, options=o), timeout=60) for m, t, o in good + bad]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(run())
    assert [r.translations[0].text for r in results[: len(good)]] == greedy(direct["transformer-en-de"], [t[0] for _, t, _ in good])
    assert [r.code() for r in results[len(good) :]] == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT]


def test_a_full_queue_refuses_with_resource_exhausted_and_loses_no_accepted_request(tmp_path: Path, direct: dict) -> None:
    running = start_server(tmp_path, "--max-queue-size", "4", "--max-batch-size", "2", "--models", "transformer-en-de")
    texts = TEST_SENTENCES[300:340]
    try:

        async def run() -> list:
            async with grpc.aio.insecure_channel(running.target) as channel:
                stub = translator_pb2_grpc.TranslatorStub(channel)
                return await asyncio.gather(*[stub.Translate(pb.TranslateRequest(texts=[t]), timeout=120) for t in texts], return_exceptions=True)

        results = asyncio.run(run())
        samples = running.scrape()
    finally:
        assert running.stop() == 0
    refused = [r for r in results if isinstance(r, grpc.RpcError)]
    assert refused and all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue" in r.details() for r in refused)
    answered = {text: r.translations[0].text for text, r in zip(texts, results) if not isinstance(r, grpc.RpcError)}
    assert answered and list(answered.values()) == greedy(direct["transformer-en-de"], list(answered))
    assert samples['nmt_requests_total{code="RESOURCE_EXHAUSTED",method="Translate",model="transformer-en-de"}'] == len(refused)


def test_expired_deadlines_and_cancelled_calls_are_dropped_from_queue_and_batch(server: RunningServer, direct: dict) -> None:
    # Many seconds of work: 512 sentences at the largest beam (about 14 s on 2 cores; 128 sentences
    # once finished inside the deadline on a faster machine). The deadline is long enough for the
    # request to reach the handler and the queue on a busy machine (a deadline that passes before
    # it does is answered by gRPC alone, and the server never sees the request), and far shorter
    # than the work.
    paragraphs = [" ".join(TEST_SENTENCES[400 + 4 * i : 404 + 4 * i]) for i in range(128)]
    heavy = pb.TranslateRequest(texts=paragraphs, options=Options(beam_size=8))
    with grpc.insecure_channel(server.target) as channel:
        stub = translator_pb2_grpc.TranslatorStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Translate(heavy, timeout=1.0)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        accepted = accepted_sentences(server.scrape(), "transformer-en-de")
        cancelled = stub.Translate.future(heavy, timeout=60)
        server.wait_for_metrics(lambda samples: accepted_sentences(samples, "transformer-en-de") >= accepted + len(heavy.texts), "the request queued")
        assert cancelled.cancel()
        # the sentences that shared the batch are answered as usual
        texts = TEST_SENTENCES[470:476]
        assert [t.text for t in stub.Translate(pb.TranslateRequest(texts=texts), timeout=60).translations] == greedy(direct["transformer-en-de"], texts)
    samples = server.wait_for_metrics(
        lambda samples: samples['nmt_queue_depth{model="transformer-en-de"}'] == 0 and samples['nmt_inflight_sentences{model="transformer-en-de"}'] == 0,
        "queue/in-flight gauges back to 0",
        timeout=10,
    )
    assert samples['nmt_requests_total{code="DEADLINE_EXCEEDED",method="Translate",model="transformer-en-de"}'] >= 1
    assert samples['nmt_requests_total{code="CANCELLED",method="Translate",model="transformer-en-de"}'] >= 1
