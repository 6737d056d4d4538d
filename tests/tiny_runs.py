"""Tiny real training runs for tests: a handful of Multi30k-style pairs and seconds-long configs."""

from __future__ import annotations

import json
from pathlib import Path

from training.config import TrainConfig, load_config

PARALLEL_PAIRS = [
    ("A man is riding a bike.", "Ein Mann fährt Fahrrad."),
    ("Two dogs play in the snow.", "Zwei Hunde spielen im Schnee."),
    ("A girl is reading a book.", "Ein Mädchen liest ein Buch."),
    ("The boy jumps into the water.", "Der Junge springt ins Wasser."),
    ("A woman is cooking dinner.", "Eine Frau kocht das Abendessen."),
    ("Three people walk down the street.", "Drei Leute gehen die Straße entlang."),
]




def write_tiny_corpus(directory: Path) -> Path:
    """val holds the pairs once, train 64 times over, so an epoch is several steps and
    per-epoch work (validation, checkpoints) stays rare."""
    directory.mkdir(parents=True)
    for split, copies in (("train", 64), ("val", 1)):
        for side, language in ((0, "en"), (1, "de")):
            lines = [pair[side] for pair in PARALLEL_PAIRS] * copies
            (directory / f"{split}.{language}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


TINY_MODELS = {
    "transformer": {"d_model": 64, "n_heads": 4, "n_encoder_layers": 1, "n_decoder_layers": 1, "d_ff": 128, "dropout": 0.0},
    "rnn": {"embed_dim": 64, "hidden_size": 128, "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0},
}


def tiny_config(corpus: Path, architecture: str = "transformer", **options: object) -> TrainConfig:
    """A config for a seconds-long run; options as 'section.option' or top-level names."""
    overrides = {
        "architecture": architecture,
        **{f"model.{k}": v for k, v in TINY_MODELS[architecture].items()},
        "tokenizer.vocab_size": 80,
        "data.directory": str(corpus),
        "data.max_length": 32,
        "optim.learning_rate": 0.003,
        "optim.warmup_steps": 20,
        "optim.label_smoothing": 0.0,
        "max_tokens": 300,
        "epochs": 100,
        "validate_bleu": False,
        "progress": False,
        "checkpoint_every": 1000,
        **{key.replace("__", "."): value for key, value in options.items()},
    }
    return load_config(None, [f"{key}={json.dumps(value)}" for key, value in overrides.items()])
