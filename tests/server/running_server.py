"""The real server as a child process on loopback ports, and helpers to talk to it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.engines import free_port
from nmt_spec.manifest import latest_version

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def shipped(name: str) -> Path:
    """The version directory of a shipped model that the server serves (its latest)."""
    return latest_version(MODELS / name)


SERVICE = "nmt.v1.Translator"


def accepted_sentences(samples: dict[str, float], model: str) -> float:
    """Sentences the server has queued for `model` (0 before its first request)."""
    return samples.get(f'nmt_sentences_total{{model="{model}"}}', 0.0)


def health_status(target: str, service: str = SERVICE, timeout: float = 2.0) -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status


@dataclass
class RunningServer:
    process: subprocess.Popen
    target: str
    metrics_url: str
    log: Path
    http_url: str  # the HTTP/JSON API

    def scrape(self) -> dict[str, float]:
        """Every sample of /metrics: 'name{labels}' -> value."""
        text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples

    def wait_for_metrics(self, condition: Callable[[dict[str, float]], bool], what: str, timeout: float = 60.0) -> dict[str, float]:
        """Scrapes until `condition` holds: tests wait for what the server did, not for a time
        that a busy machine may overrun."""
        deadline = time.monotonic() + timeout
        while not condition(samples := self.scrape()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not seen after {timeout} s; last /metrics: {samples}")
            time.sleep(0.02)
        return samples

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()


def start_server(log_directory: Path, *flags: str, wait: bool = True) -> RunningServer:
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    log = log_directory / f"server-{port}.log"
    command = [
        sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port), "--http-port", str(http_port),
        "--model-repository", str(MODELS), *flags,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = RunningServer(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", log, f"http://127.0.0.1:{http_port}")
    if wait:
        wait_until_serving(server)
    return server


def wait_until_serving(server: RunningServer, timeout: float = 120.0) -> list[int]:
    """Polls the health service; returns the statuses seen, ending with SERVING."""
    return wait_for_health(server, health_pb2.HealthCheckResponse.SERVING, timeout)


def wait_for_health(server: RunningServer, wanted: int, timeout: float) -> list[int]:
    """Polls the health service until it reports `wanted`; returns the statuses seen."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.output()}")
        try:
            status = health_status(server.target, timeout=0.5)
        except grpc.RpcError:
            time.sleep(0.02)
            continue
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == wanted:
            return seen
        time.sleep(0.01)
    raise TimeoutError(f"server not {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)} after {timeout} s:\n{server.output()}")
