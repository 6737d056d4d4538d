"""Learning-rate schedules: warmup + inverse square root, or warmup + decay on plateau."""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer

from training.config import OptimConfig


class LearningRateSchedule:
    """Sets the optimizer's learning rate before every step. The plateau decay reacts to the
    validation BLEU reported at the end of each epoch."""

    def __init__(self, optimizer: Optimizer, config: OptimConfig) -> None:
        self.optimizer = optimizer
        self.config = config
        self.plateau_scale = 1.0
        self.best_metric = -math.inf
        self.epochs_without_improvement = 0

    def learning_rate(self, step: int) -> float:
        """step counts from 1."""
        config = self.config
        warmup = max(config.warmup_steps, 1)
        if config.schedule == "inverse_sqrt":
            factor = min(step / warmup, math.sqrt(warmup / step))
        else:
            factor = min(step / warmup, 1.0) * self.plateau_scale
        return max(config.learning_rate * factor, config.min_learning_rate if step > warmup else 0.0)

    def apply(self, step: int) -> float:
        rate = self.learning_rate(step)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        return rate

    def report_validation(self, metric: float) -> None:
        if metric > self.best_metric:
            self.best_metric = metric
            self.epochs_without_improvement = 0
            return
        self.epochs_without_improvement += 1
        if self.config.schedule == "plateau" and self.epochs_without_improvement > self.config.plateau_patience:
            self.plateau_scale *= self.config.plateau_factor
            self.epochs_without_improvement = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau_scale": self.plateau_scale,
            "best_metric": self.best_metric,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale = state["plateau_scale"]
        self.best_metric = state["best_metric"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
