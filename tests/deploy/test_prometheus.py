"""A real Prometheus (Debian's package, installed by .ci/run) scrapes a running translation
server; its HTTP API shows the translations; promtool accepts the exposition; the Grafana
dashboard asks only for metrics the server exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from server.client import TranslatorClient
from tests.deploy.dockerfile import ROOT
from tests.server.running_server import RunningServer, free_port

PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None, reason="Debian's prometheus package is not installed (.ci/run installs it: apt-get install prometheus)"
)


@pytest.fixture(scope="module")
def prometheus(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("prometheus")
    metrics = urllib.parse.urlparse(server.metrics_url)
    (directory / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: nmt-serving\n    static_configs:\n"
        f"      - targets: ['{metrics.netloc}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(directory / "log").open("w"),
        stderr=subprocess.STDOUT,
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(30)


def query(prometheus: str, expression: str) -> list[dict]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    except OSError:
        return []
    return body["data"]["result"] if body.get("status") == "success" else []


@needs_prometheus
def test_prometheus_scrapes_the_servers_request_counter(server: RunningServer, prometheus: str) -> None:
    client = TranslatorClient(server.target)
    expression = 'sum(nmt_requests_total{job="nmt-serving",method="Translate",code="OK",model="rnn-en-de"})'
    deadline = time.monotonic() + 60
    while not query(prometheus, 'up{job="nmt-serving"} == 1') and time.monotonic() < deadline:
        time.sleep(0.5)  # the first scrape
    before = float(query(prometheus, expression)[0]["value"][1]) if query(prometheus, expression) else 0.0
    for text in ("A dog runs.", "Two men talk.", "A girl sings."):
        client.translate([text], model="rnn-en-de")
    while time.monotonic() < deadline:
        result = query(prometheus, expression)
        if result and float(result[0]["value"][1]) >= before + 3:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"Prometheus never saw the 3 translations: {query(prometheus, expression)}")
    assert query(prometheus, 'up{job="nmt-serving"}')[0]["value"][1] == "1"


@needs_prometheus
def test_promtool_accepts_the_metrics_exposition(server: RunningServer) -> None:
    TranslatorClient(server.target).translate(["A cat sleeps."])
    exposition = urllib.request.urlopen(server.metrics_url, timeout=5).read()
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition, capture_output=True)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_the_dashboard_asks_only_for_exported_metrics(server: RunningServer) -> None:
    TranslatorClient(server.target).translate(["A cat sleeps."])
    exported = {key.split("{")[0] for key in server.scrape()}
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    asked = {name for expression in expressions for name in re.findall(r"\bnmt_[a-z_]+", expression)}
    assert asked, "no nmt_ metric in the dashboard"
    # nmt_gpu_memory_used_bytes exists only on a GPU
    assert asked - {"nmt_gpu_memory_used_bytes"} <= exported, asked - exported
