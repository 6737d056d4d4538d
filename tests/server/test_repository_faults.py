"""A broken model repository stops the server at start with an error naming the file and the
problem; with --skip-broken-models the others serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from nmt_spec.manifest import Manifest, sha256_of
from server.client import TranslatorClient
from tests.server.conftest import served_variant
from tests.server.running_server import ROOT, shipped, start_server

Fault = Callable[[Path], None]


def linked_repository(root: Path, names: tuple[str, ...] = ("transformer-en-de", "rnn-en-de")) -> Path:
    """A repository whose files are links to the shipped ones (a fault replaces a link by a file)."""
    for name in names:
        version = root / name / "1"
        version.mkdir(parents=True)
        for source in shipped(name).iterdir():
            (version / source.name).symlink_to(source)
    return root


def rewrite(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def edit_manifest(version: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((version / "manifest.json").read_text())
    change(manifest)
    rewrite(version / "manifest.json", json.dumps(manifest).encode())


def missing_file(version: Path) -> None:
    (version / "decoder_with_past_model.onnx").unlink()


def changed_bytes(version: Path) -> None:
    rewrite(version / "encoder_model.onnx", (version / "encoder_model.onnx").read_bytes()[:-1] + b"\0")


def corrupt_onnx_with_matching_sha256(version: Path) -> None:
    """The encoder of the variant the server picks (the others it never opens)."""
    encoder = Manifest.load(version, verify_files=False).variants[served_variant(version.parent.name)].encoder.file
    rewrite(version / encoder, b"this is not an ONNX graph")
    edit_manifest(version, lambda m: m["files"].update({encoder: sha256_of(version / encoder)}))


def unknown_manifest_field(version: Path) -> None:
    edit_manifest(version, lambda m: m.update(served_by="someone else"))


def wrong_shape_in_manifest(version: Path) -> None:
    def change(manifest: dict) -> None:
        manifest["variants"][served_variant(version.parent.name)]["decoder"]["inputs"][0]["shape"] = ["batch_size", 7]

    edit_manifest(version, change)


FAULTS: list[tuple[Fault, str]] = [
    (missing_file, r"decoder_with_past_model\.onnx: listed in the manifest but missing"),
    (changed_bytes, r"encoder_model\.onnx: sha256 \w+ does not match"),
    (corrupt_onnx_with_matching_sha256, r"encoder_model(\.int8)?\.onnx: ONNX Runtime cannot load it"),
    (unknown_manifest_field, r"manifest\.json: unknown field\(s\) \['served_by'\]"),
    (wrong_shape_in_manifest, r"decoder_with_past_model(\.int8)?\.onnx: the graph's inputs differ from the manifest's"),
]


@pytest.mark.parametrize(("fault", "message"), FAULTS, ids=[fault.__name__ for fault, _ in FAULTS])
def test_a_broken_model_stops_the_server_with_the_file_and_the_problem(tmp_path: Path, fault: Fault, message: str) -> None:
    repository = linked_repository(tmp_path / "models")
    fault(repository / "rnn-en-de" / "1")
    result = subprocess.run(
        [sys.executable, "-m", "server", "--model-repository", str(repository), "--port", "0", "--metrics-port", "0", "--http-port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert re.search(message, result.stderr), result.stderr[-2000:]


def test_with_skip_broken_models_the_others_serve(tmp_path: Path) -> None:
    repository = linked_repository(tmp_path / "models")
    changed_bytes(repository / "rnn-en-de" / "1")
    running = start_server(tmp_path, "--model-repository", str(repository), "--skip-broken-models", "1")
    try:
        client = TranslatorClient(running.target)
        assert [m.name for m in client.list_models().models] == ["transformer-en-de"]
        assert client.translate(["A dog runs."]).translations[0].text
        with pytest.raises(grpc.RpcError) as missing:
            client.translate(["A dog runs."], model="rnn-en-de")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        assert running.stop() == 0
    assert "model rnn-en-de is left out" in running.output() and "sha256" in running.output()


def test_a_runtime_failure_fails_its_batch_with_internal_and_the_server_keeps_serving(tmp_path: Path) -> None:
    """A manifest that allows longer sources than the graph's position table (256 rows): ONNX
    Runtime fails on such a batch, for real."""
    repository = linked_repository(tmp_path / "models", ("transformer-en-de",))
    version = repository / "transformer-en-de" / "1"
    edit_manifest(version, lambda m: m["spec"].update(max_source_length=400))
    running = start_server(tmp_path, "--model-repository", str(repository))
    try:
        client = TranslatorClient(running.target)
        with pytest.raises(grpc.RpcError) as failed:
            client.translate([" ".join(["dog"] * 300)])
        assert failed.value.code() == grpc.StatusCode.INTERNAL
        assert "failed to encode this request's batch" in failed.value.details() and "256 by" in failed.value.details()
        assert client.translate(["A dog runs."]).translations[0].text == "Ein Hund rennt."
        assert client.serving()
        assert running.scrape()['nmt_decode_failures_total{model="transformer-en-de"}'] == 1
    finally:
        assert running.stop() == 0


def batch_dependent_int8(version: Path) -> None:
    edit_manifest(version, lambda m: m["variants"]["int8"].update(batch_invariant=False))


def test_auto_serves_the_variant_the_export_measured_fastest_on_a_cpu_and_a_flag_overrides_it(tmp_path: Path) -> None:
    """The manifest's cpu_default_variant is what --variant auto serves on a CPU, whichever it
    names; --variant fp32 serves fp32 all the same, and auto never takes a batch-dependent int8."""
    flags = ["--default-model", "rnn-en-de"]
    cases = [("int8", False, [], "int8"), ("fp32", False, [], "fp32"), ("int8", False, ["--variant", "fp32"], "fp32"), ("int8", True, [], "fp32")]
    for number, (default, batch_dependent, extra, served) in enumerate(cases):
        version = linked_repository(tmp_path / f"models-{number}", ("rnn-en-de",)) / "rnn-en-de" / "1"
        edit_manifest(version, lambda m: m.update(cpu_default_variant=default))
        if batch_dependent:
            batch_dependent_int8(version)
        running = start_server(tmp_path, "--model-repository", str(version.parent.parent), *flags, *extra)
        try:
            (model,) = TranslatorClient(running.target).list_models().models
            assert model.variant == served, (default, batch_dependent, extra)
            assert model.batch_invariant
        finally:
            assert running.stop() == 0


def test_a_batch_dependent_variant_is_served_only_when_the_operator_asks(tmp_path: Path) -> None:
    """An int8 whose activation scales are per batch (older exports): --variant int8 refuses
    it, auto passes over it to fp32, and --allow-batch-dependent-variants 1 serves it, saying so."""
    repository = linked_repository(tmp_path / "models", ("rnn-en-de",))
    batch_dependent_int8(repository / "rnn-en-de" / "1")
    flags = ["--model-repository", str(repository), "--default-model", "rnn-en-de"]
    refused = subprocess.run([sys.executable, "-m", "server", *flags, "--variant", "int8", "--port", "0", "--metrics-port", "0", "--http-port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "int8 variant is not batch-invariant" in refused.stderr and "--allow-batch-dependent-variants 1" in refused.stderr
    for extra, variant, invariant in (([], "fp32", True), (["--variant", "int8", "--allow-batch-dependent-variants", "1"], "int8", False)):
        running = start_server(tmp_path, *flags, *extra)
        try:
            (model,) = TranslatorClient(running.target).list_models().models
            assert (model.variant, model.batch_invariant) == (variant, invariant)
        finally:
            assert running.stop() == 0
