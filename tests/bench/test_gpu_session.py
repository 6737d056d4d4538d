"""bench/gpu_session.sh, the parts that run without a GPU: received pieces of ONNX Runtime's CUDA
build are kept outside the work tree, and a run with a piece still missing stops before
installing anything and names the piece to send."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_session.sh"


def test_pieces_are_kept_outside_the_work_tree_and_a_run_names_those_still_missing(tmp_path: Path) -> None:
    """Each call carries one piece and the next call removes it from the work tree: receive keeps
    it in the store, and run joins the store's."""
    tree, store = tmp_path / "tree", tmp_path / "store"
    meta, pieces = tree / ".gpu" / "meta", tree / ".gpu" / "pieces"
    meta.mkdir(parents=True)
    pieces.mkdir()
    (meta / "pieces").write_text("00\n01\n02\n")
    environment = {"PATH": "/usr/bin:/bin", "NMT_GPU_PIECES": str(store)}
    (pieces / "01").write_bytes(b"part of a wheel")
    receive = subprocess.run(["bash", str(SCRIPT), "receive"], cwd=tree, capture_output=True, text=True, timeout=120, env=environment)
    assert "pieces still missing: 00 02" in receive.stdout
    (pieces / "01").unlink()  # the next call carries another piece, and this one is gone from the tree
    (pieces / "02").write_bytes(b"another part")
    receive = subprocess.run(["bash", str(SCRIPT), "receive"], cwd=tree, capture_output=True, text=True, timeout=120, env=environment)
    assert "pieces still missing: 00" in receive.stdout and (store / "01").read_bytes() == b"part of a wheel"
    run = subprocess.run(["bash", str(SCRIPT), "run"], cwd=tree, capture_output=True, text=True, timeout=60, env=environment)
    assert run.returncode == 1 and "pieces missing, send them first" in run.stderr
    assert run.stderr.split(":")[-1].split() == ["00"]


def test_without_a_step_it_prints_its_usage() -> None:
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "prepare" in usage.stdout and "receive" in usage.stdout and "run" in usage.stdout
