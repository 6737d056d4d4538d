"""A new version directory appearing in the repository is loaded, warmed up and switched to while
clients keep sending: no call fails, every answer is right."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc

from nmt.v1 import translator_pb2 as pb
from nmt.v1 import translator_pb2_grpc
from nmt_spec.manifest import latest_version
from server.client import TranslatorClient
from tests.server.conftest import TEST_SENTENCES, greedy
from tests.server.running_server import MODELS, start_server


def link_version(source: Path, target: Path, version: str) -> None:
    target.mkdir(parents=True)
    for file in source.iterdir():
        if file.name != "manifest.json":
            (target / file.name).symlink_to(file)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest))


def test_a_new_version_takes_over_under_load_without_a_failed_call(tmp_path: Path, direct: dict) -> None:
    shipped = latest_version(MODELS / "rnn-en-de")
    repository = tmp_path / "models"
    link_version(shipped, repository / "rnn-en-de" / "1", "1")
    running = start_server(tmp_path, "--model-repository", str(repository), "--poll-seconds", "0.3")
    texts = TEST_SENTENCES[900:932]
    expected = dict(zip(texts, greedy(direct["rnn-en-de"], texts)))
    versions: list[str] = []
    sent_after_switch: list[str] = []  # a version 2 answer was seen before these were sent
    failures: list[str] = []
    switched = asyncio.Event()

    async def client(text: str) -> None:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = translator_pb2_grpc.TranslatorStub(channel)
            after_switch = 0
            while after_switch < 5:
                late = switched.is_set()
                try:
                    response = await stub.Translate(pb.TranslateRequest(texts=[text]), timeout=30)
                except grpc.aio.AioRpcError as error:
                    failures.append(f"{error.code().name}: {error.details()}")
                    continue
                versions.append(response.model_version)
                if late:
                    sent_after_switch.append(response.model_version)
                if response.translations[0].text != expected[text]:
                    failures.append(f"wrong: {text}")
                after_switch += switched.is_set()

    async def run() -> None:
        clients = asyncio.gather(*[client(text) for text in texts])
        await asyncio.sleep(1.0)
        link_version(shipped, repository / "rnn-en-de" / "2", "2")
        deadline = time.monotonic() + 60
        while "2" not in versions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        switched.set()
        await asyncio.wait_for(clients, 90)

    try:
        asyncio.run(run())
        listed = TranslatorClient(running.target).list_models().models
        info = running.scrape()
    finally:
        assert running.stop() == 0
    assert not failures, failures[:5]
    assert versions.count("1") > 0 and versions.count("2") >= 2 * len(texts)
    # Version 1 still answers what it had queued, but nothing sent after version 2 took over.
    assert len(sent_after_switch) >= 4 * len(texts) and set(sent_after_switch) == {"2"}
    assert [m.versions for m in listed] == [["2"]]
    assert not any('version="1"' in key for key in info if key.startswith("nmt_model_info"))
    assert "version 2 serves new requests" in running.output()
