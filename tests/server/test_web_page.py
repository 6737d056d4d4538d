"""The page at / in a real browser: headless Chromium (Debian's chromium, installed by .ci/run)
opens /?text=...&model=... against the real server, with every host but loopback unresolvable,
and after the page's own script has run its DOM holds the translation and the drawn attention.
A screenshot is written (docs/web-page.png when NMT_WRITE_SCREENSHOT=1, shown in the README)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from nmt.v1 import translator_pb2 as pb
from server.client import TranslatorClient
from tests.server.conftest import greedy
from tests.server.running_server import ROOT, RunningServer

SENTENCE = "A little girl is climbing the stairs."
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no headless Chromium ({', '.join(BROWSERS)}): .ci/run installs Debian's chromium package (apt-get install chromium)")


def run_browser(url: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """Chromium, headless, told to resolve nothing but loopback (a fetch from elsewhere would
    fail), with time for the page's fetches and script."""
    command = [
        browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=30000", *flags, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def page_url(server: RunningServer, model: str) -> str:
    return f"{server.http_url}/?" + urllib.parse.urlencode({"text": SENTENCE, "model": model})


@pytest.mark.parametrize("window", ["1280,900", "390,844"], ids=["desktop", "phone"])
def test_the_page_translates_its_link_and_draws_the_attention(server: RunningServer, direct: dict, tmp_path: Path, window: str) -> None:
    model = "rnn-en-de"
    result = run_browser(page_url(server, model), tmp_path, f"--window-size={window}", "--dump-dom")
    dom = result.stdout
    assert result.returncode == 0 and "<html" in dom, result.stderr[-2000:]
    expected = greedy(direct[model], [SENTENCE])[0]
    assert 'class="hypothesis best"' in dom and expected in dom, dom[-3000:]
    heatmap = re.search(r"<svg[^>]*aria-label=\"attention heatmap\".*?</svg>", dom, re.S)
    assert heatmap is not None, "no attention drawn"
    over_grpc = TranslatorClient(server.target).translate([SENTENCE], model=model, options=pb.DecodingOptions(return_attention=True))
    (attention,) = over_grpc.translations[0].attention
    assert heatmap.group(0).count('class="cell"') == len(attention.source_tokens) * len(attention.target_tokens)
    assert 'class="aligned"' in heatmap.group(0)


def test_the_page_fetches_nothing_from_elsewhere(server: RunningServer) -> None:
    """No URL in the page but its own API's (the SVG namespace is a name, not a fetch)."""
    html = (ROOT / "server" / "web" / "index.html").read_text()
    urls = set(re.findall(r"https?://[^\s\"'`)]+", html)) - {"http://www.w3.org/2000/svg"}
    assert not urls
    assert re.findall(r"(?:src|href)=", html) == []


def test_a_screenshot_of_the_page_is_written(server: RunningServer, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    result = run_browser(page_url(server, "rnn-en-de"), tmp_path, "--window-size=1000,900", f"--screenshot={shot}")
    assert result.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", result.stderr[-2000:]
    if os.environ.get("NMT_WRITE_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "docs" / "web-page.png")
