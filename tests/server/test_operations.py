"""What operators and Prometheus rely on: health, reflection, metrics, shutdown, the client CLI,
configuration by environment, and the generated code."""

from __future__ import annotations

import asyncio
import filecmp
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from nmt_spec.manifest import Manifest
from server.client import TranslatorClient
from server.config import parse_config
from tests.server.conftest import TEST_SENTENCES, greedy, served_variant
from tests.server.running_server import (
    ROOT,
    SERVICE,
    RunningServer,
    accepted_sentences,
    health_status,
    shipped,
    start_server,
    wait_for_health,
    wait_until_serving,
)

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_is_not_serving_until_the_models_are_loaded(tmp_path: Path) -> None:
    running = start_server(tmp_path, wait=False)
    try:
        seen = wait_until_serving(running)
        assert seen[-1] == SERVING and set(seen[:-1]) <= {NOT_SERVING}
        assert health_status(running.target, service="") == SERVING
        assert running.scrape()["nmt_models_loaded"] == 1
    finally:
        assert running.stop() == 0


def test_reflection_lists_the_services(server: RunningServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert {SERVICE, "grpc.health.v1.Health"} <= set(services)


def test_list_models_describes_the_default_models(server: RunningServer) -> None:
    models = {m.name: m for m in TranslatorClient(server.target).list_models().models}
    assert set(models) == {"transformer-en-de", "rnn-en-de"}
    transformer = models["transformer-en-de"]
    assert transformer.is_default and not models["rnn-en-de"].is_default
    assert transformer.versions == [shipped("transformer-en-de").name] and transformer.architecture == "transformer" and transformer.variant == served_variant("transformer-en-de")
    assert (transformer.source_language, transformer.target_language, transformer.max_input_tokens) == ("en", "de", 128)
    assert set(transformer.available_variants) == {"fp32", "int8"}
    # on a CPU each serves what its export measured faster (the manifest's cpu_default_variant)
    assert all(m.batch_invariant and m.variant == Manifest.load(shipped(name), verify_files=False).cpu_default_variant for name, m in models.items())


def test_metrics_move_as_requests_are_served(server: RunningServer) -> None:
    model = 'model="rnn-en-de"'
    before = server.scrape()
    response = TranslatorClient(server.target).translate(TEST_SENTENCES[500:510], model="rnn-en-de", options=pb.DecodingOptions(beam_size=1))  # greedy: a token per row and step
    after = server.scrape()

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved(f'nmt_requests_total{{code="OK",method="Translate",{model}}}') == 1
    assert moved(f'nmt_request_duration_seconds_count{{method="Translate",{model}}}') == 1
    assert moved(f"nmt_sentences_total{{{model}}}") == 10
    assert moved(f"nmt_input_tokens_total{{{model}}}") == sum(t.input_tokens for t in response.translations)
    # every sentence generates its tokens and an eos
    assert moved(f"nmt_generated_tokens_total{{{model}}}") == sum(t.output_tokens + 1 for t in response.translations)
    assert moved(f"nmt_queue_wait_seconds_count{{{model}}}") == 1
    assert moved(f'nmt_batch_compute_seconds_count{{{model},phase="encode"}}') >= 1
    assert moved(f'nmt_batch_size_sentences_sum{{{model},phase="encode"}}') == 10
    assert after[f"nmt_queue_depth{{{model}}}"] == 0
    assert after[f'nmt_model_info{{architecture="rnn",device="CPUExecutionProvider",model="rnn-en-de",variant="{served_variant("rnn-en-de")}",version="{shipped("rnn-en-de").name}"}}'] == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_answers_accepted_requests_refuses_new_ones_and_exits_0(tmp_path: Path, direct: dict, signum: int) -> None:
    running = start_server(tmp_path, "--drain-seconds", "60", "--models", "transformer-en-de")
    texts = TEST_SENTENCES[600:664]
    answers: dict[str, object] = {}

    def translate_slowly() -> None:
        try:
            answers["accepted"] = TranslatorClient(running.target, timeout=120).translate(texts, options=pb.DecodingOptions(beam_size=8))
        except grpc.RpcError as error:
            answers["accepted"] = error

    caller = threading.Thread(target=translate_slowly)
    caller.start()
    running.wait_for_metrics(lambda samples: accepted_sentences(samples, "transformer-en-de") >= len(texts), "the request accepted")
    running.process.send_signal(signum)
    wait_for_health(running, NOT_SERVING, timeout=30)
    assert health_status(running.target) == NOT_SERVING
    with pytest.raises(grpc.RpcError) as refused:
        TranslatorClient(running.target).translate(["A dog runs."])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in refused.value.details()
    caller.join(120)
    assert running.process.wait(60) == 0
    accepted = answers["accepted"]
    assert isinstance(accepted, pb.TranslateResponse), accepted
    assert len(accepted.translations) == len(texts) and all(t.text for t in accepted.translations)


def test_client_cli_translates_arguments_and_stdin(server: RunningServer, direct: dict) -> None:
    command = [sys.executable, "-m", "server.client", "--target", server.target]
    from_arguments = subprocess.run([*command, "A man is riding a bike."], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert from_arguments.stdout.splitlines() == greedy(direct["transformer-en-de"], ["A man is riding a bike."])
    lines = TEST_SENTENCES[700:740]
    from_stdin = subprocess.run(command, input="\n".join(lines) + "\n", cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert from_stdin.stdout.splitlines() == greedy(direct["transformer-en-de"], lines)
    failing = subprocess.run([*command, "--model", "nope", "A dog."], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert failing.returncode == 1 and "NOT_FOUND" in failing.stderr


def test_every_flag_can_be_set_by_environment_and_flags_win() -> None:
    config = parse_config([], environ={"NMT_MAX_BATCH_SIZE": "7", "NMT_BATCHING": "dynamic", "NMT_DRAIN_SECONDS": "2.5"})
    assert (config.max_batch_size, config.batching, config.drain_seconds) == (7, "dynamic", 2.5)
    assert parse_config(["--max-batch-size", "9"], environ={"NMT_MAX_BATCH_SIZE": "7"}).max_batch_size == 9


@pytest.mark.parametrize("flag", ["--decode-workers", "--max-batch-size"])
def test_a_count_below_one_is_refused_naming_the_flag(flag: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config([flag, "0"], environ={})
    assert exit_info.value.code == 2
    assert f"{flag} (env NMT_{flag[2:].upper().replace('-', '_')}) must be at least 1, got 0" in capsys.readouterr().err


def test_generated_grpc_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "nmt/v1/translator.proto"],
        check=True,
    )
    for name in ("translator_pb2.py", "translator_pb2.pyi", "translator_pb2_grpc.py"):
        assert filecmp.cmp(tmp_path / "nmt" / "v1" / name, ROOT / "nmt" / "v1" / name, shallow=False), f"nmt/v1/{name} is stale: run make proto"


def test_server_imports_neither_torch_nor_training() -> None:
    code = "import sys, server.app, server.client; bad = {'torch', 'training', 'matplotlib'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_under_load_answers_or_cleanly_refuses_every_call(tmp_path: Path, direct: dict, signum: int) -> None:
    """48 clients sending without pause when the signal comes: every call ends, with its right
    translation or UNAVAILABLE, none hangs past the drain, and the process exits 0."""
    running = start_server(tmp_path, "--drain-seconds", "20", "--models", "transformer-en-de")
    texts = TEST_SENTENCES[800:848]
    expected = dict(zip(texts, greedy(direct["transformer-en-de"], texts)))
    outcomes: list[str] = []

    async def client(text: str) -> None:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = translator_pb2_grpc.TranslatorStub(channel)
            while True:
                try:
                    response = await stub.Translate(pb.TranslateRequest(texts=[text]), timeout=40)
                except grpc.aio.AioRpcError as error:
                    outcomes.append(error.code().name)
                    return
                outcomes.append("OK" if response.translations[0].text == expected[text] else "WRONG")

    async def run() -> None:
        clients = asyncio.gather(*[client(text) for text in texts])
        await asyncio.sleep(1.5)
        running.process.send_signal(signum)
        await asyncio.wait_for(clients, 35)  # the drain (20 s) and then some: nothing may hang

    asyncio.run(run())
    assert running.process.wait(10) == 0
    assert set(outcomes) <= {"OK", "UNAVAILABLE"} and outcomes.count("OK") >= len(texts), outcomes
    assert outcomes.count("UNAVAILABLE") == len(texts)  # each client stopped at its refusal
