"""A sweep: several training runs from one plan file, one after another, each resumable, then the
table and validation curves of all of them (runs_report).

A plan (YAML) names a base config, overrides common to every run, and the runs, each with its own:

    base: configs/transformer-small.yaml
    common: {max_steps: 8000}
    runs:
      dropout-0.2: {model.dropout: 0.2}
      lr-3e-3: {optim.learning_rate: 0.003, optim.warmup_steps: 1000}

A run whose directory already holds a last.pt continues from it (an interrupted sweep is started
again with the same command); one that already reached its end trains no further."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from training.config import load_config
from training.runs_report import report
from training.train import LAST_CHECKPOINT, train


@dataclass(frozen=True)
class PlannedRun:
    name: str
    overrides: list[str]  # section.option=value, as --set takes them


def read_plan(path: Path) -> tuple[Path, list[PlannedRun]]:
    plan: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(plan) - {"base", "common", "runs"})
    if unknown or "base" not in plan or not plan.get("runs"):
        raise ValueError(f"{path}: a plan holds 'base' (a config file), 'common' (overrides) and 'runs' (name -> overrides); found {sorted(plan)}")

    def settings(overrides: dict[str, Any] | None) -> list[str]:
        return [f"{key}={json.dumps(value)}" for key, value in (overrides or {}).items()]

    runs = [PlannedRun(str(name), settings(plan.get("common")) + settings(overrides)) for name, overrides in plan["runs"].items()]
    return Path(plan["base"]), runs


def run_sweep(plan_path: Path, out: Path, extra_overrides: list[str] = (), plot: bool = True) -> str:
    """Train every run of the plan into out/<name>; returns the markdown table of all of them."""
    base, runs = read_plan(plan_path)
    for run in runs:
        config = load_config(base, [*run.overrides, *extra_overrides])  # a bad override fails before any training
        directory = out / run.name
        train(config, directory, resume=(directory / LAST_CHECKPOINT).exists())
    return report([out / run.name for run in runs], out / "validation-bleu.png" if plot else None)
