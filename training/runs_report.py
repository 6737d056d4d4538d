"""A table and a plot of several training runs: what each trained and how far it got on validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from nmt_spec import ModelSpec
from training.models import build_model
from training.plots import plot_validation_bleu
from training.train import HISTORY_FILE, SPEC_FILE, TRAIN_LOG


@dataclass(frozen=True)
class RunSummary:
    name: str
    architecture: str
    shape: str  # the model's size settings
    recipe: str  # dropout, rate, warmup, tokens per update
    parameters: int
    epochs: int
    updates: int
    target_tokens: int
    best_valid_bleu: float
    best_epoch: int
    wall_seconds: float  # from the run's first file to its last validation

    def row(self) -> str:
        return (
            f"| {self.name} | {self.architecture} | {self.shape} | {self.recipe} | {self.parameters / 1e6:.2f}M | {self.epochs} | "
            f"{self.updates:,} | {self.target_tokens / 1e6:.1f}M | {self.wall_seconds / 60:.0f} min | {self.best_valid_bleu:.2f} (epoch {self.best_epoch}) |"
        )


HEADER = (
    "| run | architecture | shape | recipe | parameters | epochs | updates | target tokens seen | wall time | best val BLEU (greedy) |\n"
    "|---|---|---|---|---:|---:|---:|---:|---:|---|"
)


def summarize(run: Path) -> RunSummary:
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    history = json.loads((run / HISTORY_FILE).read_text(encoding="utf-8"))
    spec = ModelSpec.load(run / SPEC_FILE)
    model, optim = config["model"], config["optim"]
    if config["architecture"] == "transformer":
        shape = f"{model['n_encoder_layers']}+{model['n_decoder_layers']} x {model['d_model']}, ff {model['d_ff']}, {model['n_heads']} heads, {model['norm']}-norm"
    else:
        shape = f"emb {model['embed_dim']}, {model['cell']} {model['hidden_size']}, {model['encoder_layers']}+{model['decoder_layers']} layers"
    schedule = f"plateau x{optim['plateau_factor']:g} after {optim['plateau_patience']} epoch(s) without gain" if optim["schedule"] == "plateau" else optim["schedule"]
    recipe = f"dropout {model['dropout']}, lr {optim['learning_rate']:g} ({schedule}, warmup {optim['warmup_steps']}), {config['max_tokens']} tokens"
    if config.get("init_from"):  # updates and tokens below are this run's, on top of the weights'
        recipe += f", continued from {config['init_from']}"
    tokens = sum(json.loads(line)["tokens"] for line in (run / TRAIN_LOG).read_text(encoding="utf-8").splitlines() if line.strip())
    best = max(history, key=lambda e: e.get("valid_bleu") or 0.0)
    parameters = sum(p.numel() for p in build_model(spec).parameters())
    wall = (run / HISTORY_FILE).stat().st_mtime - (run / SPEC_FILE).stat().st_mtime
    return RunSummary(run.name, config["architecture"], shape, recipe, parameters, len(history), history[-1]["step"], tokens, best["valid_bleu"], best["epoch"], wall)


def report(runs: list[Path], plot: Path | None) -> str:
    """The markdown table of the runs; with plot, their validation curves drawn there."""
    if plot is not None:
        histories = {run.name: json.loads((run / HISTORY_FILE).read_text(encoding="utf-8")) for run in runs}
        plot_validation_bleu(histories, plot, "validation BLEU against updates")
    return "\n".join([HEADER, *(summarize(run).row() for run in runs)])
