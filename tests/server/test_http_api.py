"""The HTTP/JSON API with a real HTTP client against the real server: the same answers as gRPC,
every error status with its JSON message, deadlines, limits and metrics shared with gRPC."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.protobuf import json_format

from nmt.v1 import translator_pb2 as pb
from server.client import TranslatorClient
from tests.server.conftest import TEST_SENTENCES
from tests.server.running_server import RunningServer, start_server


def call(server: RunningServer, path: str, body: bytes | dict | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """(HTTP status, the JSON body) of GET (no body) or POST."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(server.http_url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


REQUESTS = [
    pb.TranslateRequest(texts=["A man is riding a bike."]),
    pb.TranslateRequest(texts=TEST_SENTENCES[:3] + ["Two dogs play.  A cat sleeps.\nThe end."], model="rnn-en-de"),
    pb.TranslateRequest(texts=[TEST_SENTENCES[5]], options=pb.DecodingOptions(beam_size=4, num_hypotheses=3, return_scores=True, return_attention=True)),
    pb.TranslateRequest(texts=["A dog runs. A cat sleeps."], split_sentences=False, options=pb.DecodingOptions(beam_size=1, length_penalty=0.5)),
]


@pytest.mark.parametrize("request_message", REQUESTS, ids=["one sentence", "rnn, several texts, layout", "n-best, scores, attention", "unsplit, greedy"])
def test_translate_answers_what_grpc_answers(server: RunningServer, request_message: pb.TranslateRequest) -> None:
    status, body = call(server, "/v1/translate", json_format.MessageToJson(request_message).encode())
    assert status == 200, body
    over_http = json_format.ParseDict(body, pb.TranslateResponse())
    over_grpc = TranslatorClient(server.target).stub.Translate(request_message, timeout=60)
    assert [t.text for t in over_http.translations] == [t.text for t in over_grpc.translations]
    assert over_http == over_grpc


def test_field_names_are_accepted_as_written_in_the_proto_too(server: RunningServer) -> None:
    status, body = call(server, "/v1/translate", {"texts": ["A dog runs."], "split_sentences": False, "options": {"beam_size": 1, "num_hypotheses": 1}})
    assert status == 200 and body["translations"][0]["text"]


def test_models_lists_what_list_models_lists(server: RunningServer) -> None:
    status, body = call(server, "/v1/models")
    assert status == 200
    assert json_format.ParseDict(body, pb.ListModelsResponse()) == TranslatorClient(server.target).list_models()
    assert {model["name"] for model in body["models"]} == {"transformer-en-de", "rnn-en-de"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "message"),
    [
        (b"{not json", {}, 400, "INVALID_ARGUMENT", "not a TranslateRequest in protobuf's JSON mapping"),
        (b'{"texts": ["A dog."], "colour": "red"}', {}, 400, "INVALID_ARGUMENT", "colour"),
        (b'{"texts": "A dog."}', {}, 400, "INVALID_ARGUMENT", "texts"),
        (b'{"texts": []}', {}, 400, "INVALID_ARGUMENT", "texts is empty"),
        (b'{"texts": ["A dog."], "options": {"beamSize": 100}}', {}, 400, "INVALID_ARGUMENT", "beam_size must be between 1 and 8"),
        (b'{"texts": ["A dog."]}', {"grpc-timeout": "soon"}, 400, "INVALID_ARGUMENT", "grpc-timeout header"),
        (b'{"texts": ["A dog."], "model": "klingon"}', {}, 404, "NOT_FOUND", "'klingon' is not served"),
        (b'{"texts": ["A dog."], "modelVersion": "99"}', {}, 404, "NOT_FOUND", "version '99' is not loaded"),
        (json.dumps({"texts": ["\n".join(TEST_SENTENCES[:200])], "options": {"beamSize": 8}}).encode(), {"grpc-timeout": "20m"}, 504, "DEADLINE_EXCEEDED", "deadline"),
    ],
    ids=["malformed JSON", "unknown field", "wrong type", "no texts", "beam too large", "bad timeout", "unknown model", "unknown version", "deadline"],
)
def test_errors_come_as_http_statuses_with_the_grpc_code_and_a_message(server: RunningServer, body: bytes, headers: dict, status: int, code: str, message: str) -> None:
    got_status, got = call(server, "/v1/translate", body, headers)
    assert (got_status, got["code"]) == (status, code)
    assert message in got["message"], got["message"]


def test_a_body_over_the_receive_limit_is_refused_with_413(server: RunningServer) -> None:
    status, body = call(server, "/v1/translate", b" " * (4 * 1024 * 1024 + 1))
    assert (status, body["code"]) == (413, "RESOURCE_EXHAUSTED")
    assert "Maximum request body size" in body["message"]


def test_paths_and_methods_the_api_has_not_are_refused_in_json_saying_what_it_has(server: RunningServer) -> None:
    status, body = call(server, "/v2/translate", {"texts": ["A dog."]})
    assert (status, body["code"]) == (404, "NOT_FOUND")
    assert "POST /v1/translate" in body["message"]
    request = urllib.request.Request(server.http_url + "/v1/translate", method="GET")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    body = json.loads(refused.value.read())
    assert (refused.value.code, body["code"]) == (405, "UNIMPLEMENTED")
    assert "takes POST, not GET" in body["message"] and refused.value.headers["Allow"] == "POST"


def test_http_requests_are_counted_beside_grpc_ones(server: RunningServer) -> None:
    key = 'nmt_requests_total{code="OK",method="POST /v1/translate",model="transformer-en-de"}'
    before = server.scrape().get(key, 0.0)
    assert call(server, "/v1/translate", {"texts": ["A dog runs."]})[0] == 200
    assert server.scrape()[key] == before + 1


def test_a_full_queue_is_429_and_a_server_shutting_down_503(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--max-queue-size", "8", "--models", "transformer-en-de", "--drain-seconds", "30")
    try:
        document = {"texts": ["\n".join(TEST_SENTENCES[:8])], "options": {"beamSize": 8}}
        with ThreadPoolExecutor(12) as pool:
            statuses = [status for status, body in pool.map(lambda _: call(running, "/v1/translate", document), range(12))]
        assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}, statuses
        running.process.send_signal(signal.SIGTERM)
        # the server keeps refusing, not stopping, while requests keep coming (its quiet period)
        while (answer := call(running, "/v1/translate", {"texts": ["A dog."]}))[0] == 200:
            pass
        assert answer[0] == 503 and answer[1]["code"] == "UNAVAILABLE" and "shutting down" in answer[1]["message"]
    finally:
        assert running.stop() == 0


def test_grpc_and_http_translate_the_same_request_at_once(server: RunningServer) -> None:
    """Both front ends feed one batcher: concurrent calls over both are all answered."""
    texts = TEST_SENTENCES[20:36]
    with ThreadPoolExecutor(8) as pool:
        over_http = pool.map(lambda text: call(server, "/v1/translate", {"texts": [text]})[1]["translations"][0]["text"], texts)
        over_grpc = pool.map(lambda text: TranslatorClient(server.target).translate([text]).translations[0].text, texts)
        assert list(over_http) == list(over_grpc)

