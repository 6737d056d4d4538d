"""The soak command in its CI configuration (30 s): nothing wrong, nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_thirty_seconds_of_soak_lose_nothing_and_answer_everything_right() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--clients", "32", "--duration", "30", "--sentences", "300"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    row = [line for line in result.stdout.splitlines() if line.startswith("|")][-1].split("|")
    sent, answered, wrong, lost = (int(cell) for cell in row[2:6])
    assert sent == answered > 100 and wrong == 0 and lost == 0, result.stdout
