"""The soak command in its CI configuration (30 s): nothing wrong, nothing lost; and its memory
check, which reads a trend, not a peak."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.soak import RSS_BAR, SoakResult

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20


def test_thirty_seconds_of_soak_lose_nothing_and_answer_everything_right() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--clients", "32", "--duration", "30", "--sentences", "300"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    row = [line for line in result.stdout.splitlines() if line.startswith("|")][-1].split("|")
    sent, answered, wrong, lost = (int(cell) for cell in row[2:6])
    assert sent == answered > 100 and wrong == 0 and lost == 0, result.stdout


def test_the_memory_check_reads_a_rising_curve_as_growth_and_a_peak_as_none() -> None:
    """A peak at the end (a large answer in flight) is over the bar end against start, not in
    trend; a curve that keeps rising is over it in trend too."""
    peak = SoakResult(rss_samples=[m * MIB for m in (220, 229, 258, 221, 235, 248, 233, 260, 221)], rss_end=240 * MIB)
    peak.rss_after_warm_up = peak.rss_samples[0]
    assert peak.rss_growth > RSS_BAR and peak.rss_trend < RSS_BAR
    leak = SoakResult(rss_samples=[m * MIB for m in range(200, 245, 5)], rss_end=245 * MIB)
    leak.rss_after_warm_up = leak.rss_samples[0]
    assert leak.rss_trend > RSS_BAR
