"""Checkpoint files: a training checkpoint (resumable) and a model checkpoint (weights + spec)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nmt_spec import ModelSpec
from nmt_spec.weights import check_shapes
from training.models import Seq2SeqModel, build_model


def save_model_checkpoint(path: Path, spec: ModelSpec, model: Seq2SeqModel, **metadata: Any) -> None:
    """Weights and the spec only: what export and evaluation need; the weights are the spec's
    (nmt_spec/weights.py), checked before they are written."""
    weights = model.state_dict()
    check_shapes(spec, {name: value.shape for name, value in weights.items()}, str(path))
    torch.save({"spec": spec.to_dict(), "model": weights, **metadata}, path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[ModelSpec, Seq2SeqModel, dict[str, Any]]:
    """Rebuild the model a checkpoint holds, in eval mode. The tokenizer is the spec's
    tokenizer_file, next to the checkpoint."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    spec = ModelSpec.from_dict(checkpoint["spec"])
    check_shapes(spec, {name: value.shape for name, value in checkpoint["model"].items()}, str(path))
    model = build_model(spec).to(device)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return spec, model, checkpoint


def average_checkpoints(paths: list[Path], output: Path, half: bool = False) -> None:
    """Mean of the weights of several checkpoints of one model (Vaswani et al., 2017, 6.1).
    half: stored as fp16, half the bytes (what ships in checkpoints/); loading casts back to fp32,
    and export builds its graphs from the rounded weights, so they are what the graphs hold."""
    if not paths:
        raise ValueError("no checkpoints to average")
    first = torch.load(paths[0], map_location="cpu", weights_only=True)
    total = {name: value.double() for name, value in first["model"].items()}
    for path in paths[1:]:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if checkpoint["spec"] != first["spec"]:
            raise ValueError(f"{path} is not the same model as {paths[0]}")
        for name, value in checkpoint["model"].items():
            total[name] += value.double()
    averaged = {name: (value / len(paths)).to(first["model"][name].dtype) for name, value in total.items()}
    # Loaded into the model, tied matrices share one tensor again, so they are saved once.
    model = build_model(ModelSpec.from_dict(first["spec"]))
    model.load_state_dict(averaged)
    weights, halves = model.state_dict(), {}
    if half:  # one fp16 tensor per shared fp32 one, so tied matrices stay stored once
        weights = {name: halves.setdefault(value.data_ptr(), value.half()) if value.is_floating_point() else value for name, value in weights.items()}
    torch.save({"spec": first["spec"], "model": weights, "averaged_from": [Path(p).name for p in paths]}, output)
