"""PNG plots of a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training and validation loss and validation BLEU, one point per epoch."""
    epochs = [entry["epoch"] for entry in history]
    figure, (loss_axes, bleu_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [e["train_loss"] for e in history], marker="o", label="training")
    loss_axes.plot(epochs, [e["valid_loss"] for e in history], marker="o", label="validation")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("label-smoothed cross-entropy per token")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    bleu_points = [(e["epoch"], e["valid_bleu"]) for e in history if e.get("valid_bleu") is not None]
    if bleu_points:
        bleu_axes.plot(*zip(*bleu_points), marker="o", color="tab:green")
    bleu_axes.set_xlabel("epoch")
    bleu_axes.set_ylabel("validation BLEU (greedy, sacreBLEU)")
    bleu_axes.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_validation_bleu(runs: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    """Validation BLEU against optimizer updates, one line per run (a sweep side by side)."""
    figure, axes = plt.subplots(figsize=(8, 5))
    for name, history in runs.items():
        points = [(e["step"], e["valid_bleu"]) for e in history if e.get("valid_bleu") is not None]
        if points:
            axes.plot(*zip(*points), marker=".", label=name)
    axes.set_xlabel("optimizer updates")
    axes.set_ylabel("validation BLEU (greedy, sacreBLEU)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
