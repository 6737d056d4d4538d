"""Precision variants of the fp32 graphs: fp16 for GPUs, int8 (activations quantized per row) for CPUs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16
from onnxruntime.transformers.onnx_model import OnnxModel

from export.int8 import write_int8
from nmt_spec.graph_names import LOG_PROBS, TOP_LOG_PROBS


@dataclass(frozen=True)
class VariantRecipe:
    name: str
    intended_device: str
    file_suffix: str
    # A sentence's translation is the same alone and in any batch (no statistic over the batch).
    batch_invariant: bool = True


VARIANTS = {
    "fp32": VariantRecipe("fp32", "any", ""),
    "int8": VariantRecipe("int8", "cpu", ".int8"),
    "fp16": VariantRecipe("fp16", "cuda", ".fp16"),
}


def write_variant(recipe: VariantRecipe, fp32_path: Path, output_path: Path) -> None:
    if recipe.name == "int8":
        write_int8(fp32_path, output_path)
    elif recipe.name == "fp16":
        # Caches and encoder outputs are fp16 in and out, so they stay fp16 on the device from step
        # to step; only the log-probabilities the search adds up stay fp32. (Keeping every input
        # and output fp32 cast 18 caches at every step: on an H200 that made the Transformer's
        # fp16 step 0.62x as fast as fp32's.)
        model = OnnxModel(convert_float_to_float16(onnx.load(fp32_path), keep_io_types=[LOG_PROBS, TOP_LOG_PROBS]))
        model.topological_sort()  # the converter appends its input casts after their users
        onnx.save(model.model, output_path)
    else:
        raise ValueError(f"no recipe for variant {recipe.name!r}")
