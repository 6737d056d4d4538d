"""Generated requests, hostile or odd: arbitrary unicode (control characters, NUL, RTL marks,
emoji, combining marks), long strings, multi-sentence texts in every layout, many texts, every
decoding option at and beyond its limits, with and without sentence splitting, unknown fields. Each gets its documented status code or a translation, and the server
stays SERVING. NMT_FUZZ_EXAMPLES sets how many (CI: 150; the soak configuration: 10000)."""

from __future__ import annotations

import math
import os

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from nmt_spec import Tokenizer
from nmt_spec.manifest import Manifest
from nmt_spec.text import normalize_text
from server.client import TranslatorClient
from server.config import ServerConfig
from tests.server.running_server import RunningServer, shipped

EXAMPLES = int(os.environ.get("NMT_FUZZ_EXAMPLES", "150"))
CONFIG = ServerConfig()
TOKENIZER = Tokenizer(shipped("transformer-en-de") / "tokenizer.model")
MAX_TOKENS = 128
# what a request that sets no beam gets: each model's manifest (the server is started without --default-beam-size)
DEFAULT_BEAM = {name: Manifest.load(shipped(name), verify_files=False).decoding.beam_size for name in ("transformer-en-de", "rnn-en-de")}

# Everything but lone surrogates, which are not UTF-8 and which protobuf refuses to send.
any_character = st.characters(exclude_categories=["Cs"])
tricky = st.sampled_from(["\x00", "\u202e", "\u200f", "\U0001f600", "e\u0301", "\t", "\r\n", "\x7f", "\ufeff", "ß", "漢字"])
sentence = st.sampled_from(["A man is riding a bike.", "Two dogs play!", "Is it raining?", "A woman, smiling, waves", "Mr. Smith runs."])
text = st.one_of(
    st.text(any_character, max_size=40),
    st.lists(st.one_of(tricky, st.sampled_from(["A dog", " runs", "."])), max_size=12).map("".join),
    st.text(any_character, min_size=300, max_size=1500),
    st.lists(st.tuples(sentence, st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\u200b "])), min_size=2, max_size=8).map(lambda pairs: "".join(s + gap for s, gap in pairs)),
    st.sampled_from(["A man is riding a bike.", "   ", "", "\u200b\ufeff"]),
)
texts = st.one_of(st.lists(text, max_size=4), st.lists(st.just("A dog."), min_size=CONFIG.max_texts_per_request, max_size=CONFIG.max_texts_per_request + 3))
unset = st.none()
options = st.fixed_dictionaries(
    {},
    optional={
        "beam_size": st.integers(0, 12),
        "length_penalty": st.floats(allow_nan=True, allow_infinity=True, width=32),
        "max_decoding_length": st.integers(0, 300),
        "num_hypotheses": st.integers(0, 12),
        "return_scores": st.booleans(),
        "min_decoding_length": st.integers(0, 300),
        "repetition_penalty": st.floats(allow_nan=True, allow_infinity=True, width=32),
        "no_repeat_ngram_size": st.integers(0, 300),
    },
)
split = st.sampled_from([None, True, False])
models = st.sampled_from(["", "transformer-en-de", "rnn-en-de", "missing-model", "\x00"])


def expected_status(model: str, texts: list[str], option: dict, split: bool | None) -> grpc.StatusCode:
    """The documented order: the model, then the options, then the texts."""
    if model not in ("", "transformer-en-de", "rnn-en-de"):
        return grpc.StatusCode.NOT_FOUND
    beam = option.get("beam_size", DEFAULT_BEAM[model or "transformer-en-de"])
    penalty = option.get("length_penalty", 1.0)
    if not 1 <= beam <= CONFIG.max_beam_size or not (math.isfinite(penalty) and penalty >= 0):
        return grpc.StatusCode.INVALID_ARGUMENT
    max_length = option.get("max_decoding_length", MAX_TOKENS)
    if not 1 <= max_length <= MAX_TOKENS or not 1 <= option.get("num_hypotheses", 1) <= beam:
        return grpc.StatusCode.INVALID_ARGUMENT
    repetition = option.get("repetition_penalty", 1.0)
    if option.get("min_decoding_length", 0) > max_length or not (math.isfinite(repetition) and repetition > 0) or option.get("no_repeat_ngram_size", 0) > max_length:
        return grpc.StatusCode.INVALID_ARGUMENT
    if not texts or len(texts) > CONFIG.max_texts_per_request or any(not normalize_text(t) for t in texts):
        return grpc.StatusCode.INVALID_ARGUMENT
    if split is False:
        return grpc.StatusCode.INVALID_ARGUMENT if any(len(ids) > MAX_TOKENS for ids in TOKENIZER.encode_batch(texts)) else grpc.StatusCode.OK
    # Split, a text may only be refused for the request's size: its sentences over the limit.
    if sum(len(ids) for ids in TOKENIZER.encode_batch(texts)) > CONFIG.max_request_tokens // 2:
        return grpc.StatusCode.UNKNOWN  # near the limit: the exact count after splitting decides
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def stub(server: RunningServer):
    with grpc.insecure_channel(server.target) as channel:
        yield translator_pb2_grpc.TranslatorStub(channel)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(model=models, texts=texts, option=options, split=split)
def test_generated_requests_get_their_documented_status_or_a_translation(server: RunningServer, stub, model: str, texts: list[str], option: dict, split: bool | None) -> None:
    request = pb.TranslateRequest(model=model, texts=texts, options=pb.DecodingOptions(**option), split_sentences=split)
    expected = expected_status(model, texts, option, split)
    try:
        response = stub.Translate(request, timeout=120)
    except grpc.RpcError as error:
        if expected == grpc.StatusCode.UNKNOWN:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "source tokens after splitting" in error.details(), error.details()
        else:
            assert error.code() == expected, (error.code(), error.details())
        assert error.details(), "an error without a message"
    else:
        assert expected in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN)
        assert len(response.translations) == len(texts)
        minimum = option.get("min_decoding_length", 0)
        assert all(t.sentences >= 1 and t.output_tokens <= t.sentences * max(10, minimum) + 1.5 * t.input_tokens for t in response.translations)
        assert all(len(t.hypotheses) == (option.get("num_hypotheses", 1) if option.get("num_hypotheses", 1) > 1 else 0) for t in response.translations)


def test_unknown_fields_are_ignored(server: RunningServer) -> None:
    """A newer client's fields (here 15 and 99, varint and bytes) do not break an older server."""
    payload = pb.TranslateRequest(texts=["A dog runs."]).SerializeToString() + b"\x78\x01" + b"\x9a\x06\x03abc"
    with grpc.insecure_channel(server.target) as channel:
        translate = channel.unary_unary("/nmt.v1.Translator/Translate", request_serializer=None, response_deserializer=pb.TranslateResponse.FromString)
        response = translate(payload, timeout=30)
    assert response.translations[0].text == "Ein Hund rennt."


def test_a_message_over_the_receive_limit_is_refused_before_any_work(server: RunningServer) -> None:
    huge = pb.TranslateRequest(texts=["a" * (CONFIG.max_receive_message_bytes + 1)])
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as refused:
        translator_pb2_grpc.TranslatorStub(channel).Translate(huge, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert TranslatorClient(server.target).serving()


def test_the_server_is_still_serving_after_the_generated_requests(server: RunningServer) -> None:
    assert TranslatorClient(server.target).serving()
    assert TranslatorClient(server.target).translate(["A man is riding a bike."]).translations[0].text == "Ein Mann fährt auf einem Fahrrad."
