"""The training loop on real sentence pairs: learning, exact resume, configs, checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nmt_spec import ModelSpec, Tokenizer
from tests.tiny_runs import PARALLEL_PAIRS, TINY_MODELS, tiny_config
from training.checkpoint import average_checkpoints, load_model
from training.config import load_config
from training.data import read_parallel, read_training_pairs
from training.evaluate import translate
from training.train import train

ROOT = Path(__file__).resolve().parents[2]


def translate_run(run: Path, checkpoint: str, texts: list[str]) -> list[str]:
    spec, model, _ = load_model(run / checkpoint)
    return translate(model, Tokenizer(run / spec.tokenizer_file), spec, texts)


@pytest.mark.parametrize("architecture", sorted(TINY_MODELS))
def test_a_tiny_model_learns_to_reproduce_its_training_pairs_exactly(
    tiny_corpus: Path, tmp_path: Path, architecture: str
) -> None:
    run = tmp_path / "run"
    state = train(tiny_config(tiny_corpus, architecture, max_steps=300), run)
    assert state.step == 300
    sources = [en for en, _ in PARALLEL_PAIRS]
    assert translate_run(run, "last.pt", sources) == [de for _, de in PARALLEL_PAIRS]


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_corpus: Path, tmp_path: Path) -> None:
    # dropout on, so the random generator state has to be restored too
    uninterrupted = tmp_path / "uninterrupted"
    train(tiny_config(tiny_corpus, max_steps=9, epochs=5, model__dropout=0.1), uninterrupted)

    interrupted = tmp_path / "interrupted"
    train(tiny_config(tiny_corpus, max_steps=4, epochs=5, model__dropout=0.1), interrupted)
    began = (interrupted / "model_spec.json").stat().st_mtime_ns
    train(tiny_config(tiny_corpus, max_steps=9, epochs=5, model__dropout=0.1), interrupted, resume=True)
    assert (interrupted / "model_spec.json").stat().st_mtime_ns == began  # runs-report's wall time counts from the start

    def losses(run: Path) -> dict[int, float]:
        return {e["step"]: e["loss"] for e in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}

    assert losses(interrupted) == losses(uninterrupted)
    assert len(losses(interrupted)) == 9
    a = torch.load(uninterrupted / "last.pt", weights_only=False)["model"]
    b = torch.load(interrupted / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_run_writes_the_hand_off_files_and_a_plot(tiny_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_corpus, epochs=2, validate_bleu=True), run)
    spec = ModelSpec.load(run / "model_spec.json")
    assert spec.architecture == "transformer" and spec.config.d_model == 64
    assert (run / spec.tokenizer_file).exists()
    history = json.loads((run / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert all(entry["valid_bleu"] is not None for entry in history)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"best.pt", "epoch1.pt", "epoch2.pt", "last.pt"} <= {p.name for p in run.iterdir()}


def test_unknown_config_options_are_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(None, ["optim.learning_rat=0.1"])
    with pytest.raises(ValueError, match="architecture"):
        load_config(None, ["architecture=lstm"])


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("sweep-")), ids=lambda p: p.stem)
def test_config_files_in_the_repository_load_and_train_a_few_steps(tiny_corpus: Path, tmp_path: Path, path: Path) -> None:
    """Each recipe's model and optimizer, at full size, on the tiny corpus (whose vocabulary is smaller)."""
    config = load_config(path)
    assert config.model.vocab_size == config.tokenizer.vocab_size
    tiny = ["tokenizer.vocab_size=80", f"data.directory={tiny_corpus}", "data.limit_train_pairs=null", "data.limit_valid_pairs=null", "max_steps=3", "validate_bleu=false", "progress=false", "threads=1"]
    state = train(load_config(path, tiny), tmp_path / "run")
    assert state.step == 3 and (tmp_path / "run" / "last.pt").exists()


def test_averaging_checkpoints_gives_the_mean_of_their_weights(tiny_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_corpus, epochs=2), run)
    average_checkpoints([run / "epoch1.pt", run / "epoch2.pt"], run / "average.pt")
    first, second, mean = (torch.load(run / name, weights_only=True)["model"] for name in ("epoch1.pt", "epoch2.pt", "average.pt"))
    for name in first:
        torch.testing.assert_close(mean[name], (first[name] + second[name]) / 2)
    # tied embeddings stay one tensor, so the file is no larger than an epoch checkpoint
    assert (run / "average.pt").stat().st_size <= (run / "epoch1.pt").stat().st_size * 1.01
    assert translate_run(run, "average.pt", ["A man is riding a bike."])  # loads and decodes
    average_checkpoints([run / "epoch1.pt", run / "epoch2.pt"], run / "half.pt", half=True)
    half = torch.load(run / "half.pt", weights_only=True)["model"]
    for name in first:
        torch.testing.assert_close(half[name].float(), mean[name], atol=2e-3, rtol=2e-3)
    assert (run / "half.pt").stat().st_size < 0.6 * (run / "average.pt").stat().st_size
    assert translate_run(run, "half.pt", ["A man is riding a bike."])


def test_torchrun_trains_with_two_processes(tiny_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "training", "train", "--out", str(run),
        "--set", f"data.directory={tiny_corpus}", "--set", "tokenizer.vocab_size=80",
        "--set", "model.d_model=32", "--set", "model.n_heads=2", "--set", "model.d_ff=64",
        "--set", "model.n_encoder_layers=1", "--set", "model.n_decoder_layers=1",
        "--set", "max_tokens=200", "--set", "epochs=2", "--set", "validate_bleu=false",
        "--set", "progress=false",
    ]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((run / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert (run / "best.pt").exists()


def test_a_run_started_from_a_checkpoints_weights_begins_with_them_and_its_tokenizer(tiny_corpus: Path, tmp_path: Path) -> None:
    """init_from: an averaged fp16 checkpoint's weights (cast to fp32) and the tokenizer beside it
    are where the new run starts; with a learning rate of 0 one step leaves them as they were."""
    first = tmp_path / "first"
    train(tiny_config(tiny_corpus, epochs=2), first)
    average_checkpoints([first / "epoch1.pt", first / "epoch2.pt"], first / "half.pt", half=True)
    more = tmp_path / "more"
    train(tiny_config(tiny_corpus, max_steps=1, init_from=str(first / "half.pt"), optim__learning_rate=0.0, optim__weight_decay=0.0), more)
    start, after = torch.load(first / "half.pt", weights_only=True)["model"], torch.load(more / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(start[name].float(), after[name]) for name in start)
    assert (more / "tokenizer.model").read_bytes() == (first / "tokenizer.model").read_bytes()
    more_dropout = tiny_config(tiny_corpus, max_steps=1, init_from=str(first / "half.pt"), model__dropout=0.45)
    train(more_dropout, tmp_path / "more_dropout")
    assert ModelSpec.load(tmp_path / "more_dropout" / "model_spec.json").config.dropout == 0.45
    other = tiny_config(tiny_corpus, max_steps=1, init_from=str(first / "half.pt"), model__d_model=32)
    with pytest.raises(ValueError, match="another model"):
        train(other, tmp_path / "other")


def test_extra_target_files_add_the_teachers_translations_of_the_same_sources(tiny_corpus: Path, tmp_path: Path) -> None:
    """Sequence-level distillation: each line of an extra target file pairs with the training
    source on the same line, beside the original pairs."""
    sources, references = read_parallel(load_config(None, [f"data.directory={tiny_corpus}"]).data, "train")
    teacher = tmp_path / "teacher.de"
    teacher.write_text("".join(f"{reference.upper()}\n" for reference in references), encoding="utf-8")
    config = tiny_config(tiny_corpus, data__extra_train_targets=[str(teacher)])
    all_sources, all_targets = read_training_pairs(config.data)
    assert list(zip(all_sources, all_targets)) == list(zip(sources, references)) + [(s, r.upper()) for s, r in zip(sources, references)]
    short = tmp_path / "short.de"
    short.write_text("Ein Mann.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="short.de has 1 lines"):
        read_training_pairs(tiny_config(tiny_corpus, data__extra_train_targets=[str(short)]).data)
