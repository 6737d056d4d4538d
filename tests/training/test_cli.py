"""The training CLI, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.tiny_runs import PARALLEL_PAIRS

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_help_lists_every_command_and_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "evaluate", "translate", "average", "runs-report"):
        assert command in result.stdout
    train_help = run_cli("train", "--help").stdout
    for option in ("--config", "--out", "--resume", "--set"):
        assert option in train_help


def test_train_then_evaluate_and_translate_from_the_command_line(tiny_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "tiny-run"
    trained = run_cli(
        "train", "--config", "configs/tiny.yaml", "--out", str(run),
        "--set", f"data.directory={tiny_corpus}", "--set", "tokenizer.vocab_size=80",
        "--set", "data.limit_train_pairs=null", "--set", "epochs=1", "--set", "progress=false",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    evaluated = run_cli("evaluate", "--checkpoint", str(run / "best.pt"), "--data-dir", str(tiny_corpus), "--split", "val", "--beam-size", "2")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert '"bleu"' in evaluated.stdout and '"chrf"' in evaluated.stdout
    ensembled = run_cli("evaluate", "--checkpoint", str(run / "best.pt"), str(run / "epoch1.pt"), "--data-dir", str(tiny_corpus), "--split", "val", "--hypotheses", str(tmp_path / "ensemble.de"))
    assert ensembled.returncode == 0, ensembled.stderr[-2000:]
    assert "translating: 100%" in ensembled.stderr and f"{len(PARALLEL_PAIRS)}/{len(PARALLEL_PAIRS)}" in ensembled.stderr  # progress
    assert len((tmp_path / "ensemble.de").read_text(encoding="utf-8").splitlines()) == len(PARALLEL_PAIRS)
    other = tmp_path / "other-vocabulary"
    other.mkdir()
    (other / "best.pt").write_bytes((run / "best.pt").read_bytes())
    (other / "tokenizer.model").write_bytes(b"another vocabulary")
    mixed = run_cli("evaluate", "--checkpoint", str(run / "best.pt"), str(other / "best.pt"), "--data-dir", str(tiny_corpus), "--split", "val")
    assert mixed.returncode != 0 and "an ensemble needs one tokenizer" in mixed.stderr
    translated = subprocess.run(
        [sys.executable, "-m", "training", "translate", "--checkpoint", str(run / "best.pt")],
        cwd=ROOT, input="A man is riding a bike.\nTwo dogs play in the snow.\n", capture_output=True, text=True, timeout=600,
    )
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert len(translated.stdout.splitlines()) == 2
    reported = run_cli("runs-report", str(run), "--plot", str(tmp_path / "runs.png"))
    assert reported.returncode == 0, reported.stderr[-2000:]
    (row,) = [line for line in reported.stdout.splitlines() if line.startswith(f"| {run.name} |")]
    assert "| transformer |" in row and "| 1 |" in row  # one epoch
    assert (tmp_path / "runs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_config_option_fails_with_its_name() -> None:
    result = run_cli("train", "--out", "/tmp/never", "--set", "optim.warmup=3")
    assert result.returncode != 0
    assert "warmup" in result.stderr


def test_a_sweep_trains_each_run_of_its_plan_and_resumes_instead_of_starting_again(tiny_corpus: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("base: configs/tiny.yaml\ncommon: {epochs: 1}\nruns:\n  narrow: {model.d_ff: 64}\n  wide: {model.d_ff: 256}\n")
    common = ["--set", f"data.directory={tiny_corpus}", "--set", "tokenizer.vocab_size=80", "--set", "data.limit_train_pairs=null", "--set", "progress=false"]
    first = run_cli("sweep", "--plan", str(plan), "--out", str(tmp_path / "sweep"), *common)
    assert first.returncode == 0, first.stderr[-2000:]
    assert [line.split(" | ")[0] for line in first.stdout.splitlines() if line.startswith(("| narrow", "| wide"))] == ["| narrow", "| wide"]
    assert (tmp_path / "sweep" / "validation-bleu.png").exists()
    log = (tmp_path / "sweep" / "wide" / "train_log.jsonl").read_text()
    again = run_cli("sweep", "--plan", str(plan), "--out", str(tmp_path / "sweep"), *common)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "sweep" / "wide" / "train_log.jsonl").read_text() == log, "a finished run trained again"


def test_the_shipped_sweep_plans_name_real_options() -> None:
    from training.config import load_config
    from training.sweep import read_plan

    for path in sorted((ROOT / "configs").glob("sweep-*.yaml")):
        base, runs = read_plan(path)
        for run in runs:
            load_config(ROOT / base, run.overrides)
