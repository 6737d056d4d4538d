"""No Docker engine here, so the image's recipe runs outside a container: the build stage's files
become a wheel, deploy/install-server.sh installs it with the serving extra into a fresh venv, and
the runtime stage's entrypoint with its environment serves the shipped models."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.dockerfile import ROOT, parse
from tests.server.running_server import free_port

ARGUMENTS, (BUILD, RUNTIME) = parse()


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("image")
    context = work / "build"
    context.mkdir()
    for arguments in BUILD.all("COPY"):  # exactly what the build stage copies, as Docker copies it
        *sources, destination = arguments.split()
        for source in sources:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, context / destination, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
            else:
                (context / destination).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / source, context / destination / Path(source).name)
    (build_run,) = BUILD.all("RUN")[1:]  # protoc, then the wheel
    # the build stage's python has grpcio-tools, as the dev environment running the tests does
    build_environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(build_run.replace("/wheels", str(work / "wheels")), shell=True, cwd=context, check=True, env=build_environment)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    extra = next(a.split("=", 1)[1] for a in RUNTIME.all("ARG") if a.startswith("SERVE_EXTRA="))
    environment = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    environment.pop("VIRTUAL_ENV", None)
    subprocess.run([str(ROOT / "deploy" / "install-server.sh"), str(work / "wheels"), extra], env=environment, check=True)
    return venv


def test_the_image_environment_has_no_torch_and_no_training_code(image_venv: Path) -> None:
    python = str(image_venv / "bin" / "python")
    for module in ("torch", "training", "export"):
        probe = subprocess.run([python, "-c", f"import {module}"], cwd="/", capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is importable in the serving environment"
    subprocess.run([python, "-c", "import server.app, nmt.v1.translator_pb2, onnxruntime"], cwd="/", check=True)


def test_the_image_entrypoint_serves_the_shipped_models(image_venv: Path, tmp_path: Path) -> None:
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    environment = {**os.environ, **RUNTIME.env()}
    environment.update(
        PATH=f"{image_venv / 'bin'}:{os.environ['PATH']}",
        NMT_MODEL_REPOSITORY=str(ROOT / "models"),  # the image copies models/ to /opt/nmt/models
        NMT_PORT=str(port),
        NMT_METRICS_PORT=str(metrics_port),
        NMT_HTTP_PORT=str(http_port),
        NMT_HOST="127.0.0.1",
    )
    environment.pop("PYTHONPATH", None)
    server = subprocess.Popen(RUNTIME.exec_form("ENTRYPOINT"), cwd=tmp_path, env=environment, stdout=(tmp_path / "log").open("w"), stderr=subprocess.STDOUT)
    try:
        health = [part.replace(f"localhost:{RUNTIME.env()['NMT_PORT']}", f"localhost:{port}") for part in RUNTIME.exec_form("HEALTHCHECK")]
        deadline = time.monotonic() + 120
        while subprocess.run(health, cwd=tmp_path, env=environment, capture_output=True).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.5)
        translated = subprocess.run(["nmt-translate", "--target", f"localhost:{port}", "A man is riding a bike."], cwd=tmp_path, env=environment, capture_output=True, text=True, check=True)
        assert translated.stdout.strip() == "Ein Mann fährt auf einem Fahrrad."
    finally:
        server.terminate()
        assert server.wait(60) == 0
