"""bench/gpu_session.sh, the parts that run without a GPU: a run with a piece of ONNX Runtime's
CUDA build still missing stops before installing anything and names the piece to send."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_session.sh"


def test_a_run_names_the_pieces_still_missing_and_receive_counts_them(tmp_path: Path) -> None:
    meta, pieces = tmp_path / ".gpu" / "meta", tmp_path / ".gpu" / "pieces"
    meta.mkdir(parents=True)
    pieces.mkdir()
    (meta / "pieces").write_text("00\n01\n02\n")
    (pieces / "01").write_bytes(b"part of a wheel")
    run = subprocess.run(["bash", str(SCRIPT), "run"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "pieces missing, send them first" in run.stderr
    assert run.stderr.split(":")[-1].split() == ["00", "02"]
    receive = subprocess.run(["bash", str(SCRIPT), "receive"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert "pieces still missing: 00 02" in receive.stdout


def test_without_a_step_it_prints_its_usage() -> None:
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "prepare" in usage.stdout and "receive" in usage.stdout and "run" in usage.stdout
