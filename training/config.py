"""Training configuration: dataclasses with working defaults, loaded from YAML files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nmt_spec import ARCHITECTURES, RNNConfig, TransformerConfig
from nmt_spec.corpus import DEFAULT_DIRECTORY


@dataclass
class DataConfig:
    directory: str = DEFAULT_DIRECTORY  # holds {split}.{lang} files, one sentence per line
    source_language: str = "en"
    target_language: str = "de"
    train_split: str = "train"
    valid_split: str = "val"
    test_split: str = "test2016"
    max_length: int = 128  # subword tokens, eos included; longer training pairs are dropped
    limit_train_pairs: int | None = None  # use only the first N pairs (smoke runs, tests)
    limit_valid_pairs: int | None = None
    # Sequence-level knowledge distillation (Kim and Rush, 2016): files of translations of the
    # training split's sources, one line per source (e.g. a teacher's beam output from
    # `python -m training evaluate --split train --hypotheses FILE`). Each adds its pairs to the
    # original ones, so the student learns from the references and from the teacher's outputs.
    extra_train_targets: tuple[str, ...] = ()


@dataclass
class TokenizerConfig:
    vocab_size: int = 8000
    model_type: Literal["bpe", "unigram"] = "bpe"


@dataclass
class OptimConfig:
    learning_rate: float = 1e-3  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0001
    # inverse_sqrt: linear warmup, then lr * sqrt(warmup / step) (Vaswani et al., 2017).
    # plateau: constant after warmup, multiplied by plateau_factor when validation BLEU stalls.
    schedule: Literal["inverse_sqrt", "plateau"] = "inverse_sqrt"
    warmup_steps: int = 400
    plateau_factor: float = 0.5
    plateau_patience: int = 1  # epochs without a better validation BLEU before decaying
    min_learning_rate: float = 1e-5
    clip_norm: float = 1.0
    label_smoothing: float = 0.1


@dataclass
class TrainConfig:
    architecture: Literal["transformer", "rnn"] = "transformer"
    model: TransformerConfig | RNNConfig = field(default_factory=TransformerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_tokens: int = 3000  # per batch, padding included, max of source and target side
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps, whatever the epoch
    seed: int = 1
    # Weights to start from (a checkpoint of the same model, e.g. an average of a run's last
    # epochs, fp16 or fp32): training goes on from them with a fresh optimizer and schedule, and
    # the run uses the tokenizer beside them. None: random initialisation.
    init_from: str | None = None
    checkpoint_every: int = 200  # steps between last.pt checkpoints (with optimizer state)
    keep_epoch_checkpoints: int = 5  # weights of the last N epochs, for averaging
    # Validation BLEU (greedy) picks best.pt; decoding 1,000 sentences costs seconds to minutes.
    validate_bleu: bool = True
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    threads: int | None = None  # torch intra-op threads on CPU; None keeps torch's default
    progress: bool = True


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    values = dict(values)
    architecture = values.get("architecture", "transformer")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r}: choose one of {sorted(ARCHITECTURES)}")
    values["model"] = _build(ARCHITECTURES[architecture], values.get("model") or {}, "model")
    values["data"] = _build(DataConfig, values.get("data") or {}, "data")
    values["tokenizer"] = _build(TokenizerConfig, values.get("tokenizer") or {}, "tokenizer")
    values["optim"] = _build(OptimConfig, values.get("optim") or {}, "optim")
    config = _build(TrainConfig, values, "config")
    config.model.vocab_size = config.tokenizer.vocab_size
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.learning_rate=5e-4' -> (['optim', 'learning_rate'], 0.0005), value parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r} is not of the form section.option=value")
    return key.split("."), yaml.safe_load(raw)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    values: dict[str, Any] = {}
    if path is not None:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for override in overrides:
        keys, value = parse_override(override)
        target = values
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return config_from_dict(values)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
