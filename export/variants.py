"""Precision variants of the fp32 graphs: fp16 for GPUs, int8 (dynamic quantization) for CPUs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.float16 import convert_float_to_float16
from onnxruntime.transformers.onnx_model import OnnxModel

from nmt_spec.graph_names import LOG_PROBS


@dataclass(frozen=True)
class VariantRecipe:
    name: str
    intended_device: str
    file_suffix: str


VARIANTS = {
    "fp32": VariantRecipe("fp32", "any", ""),
    "int8": VariantRecipe("int8", "cpu", ".int8"),
    "fp16": VariantRecipe("fp16", "cuda", ".fp16"),
}


def write_variant(recipe: VariantRecipe, fp32_path: Path, output_path: Path) -> None:
    if recipe.name == "int8":
        # Weights of every MatMul and embedding table to int8, activations quantized on the fly
        # per batch: no calibration data needed. The embedding tables are most of the bytes
        # (measured on the Transformer: 23 MB with MatMuls alone, 8.6 MB with the Gathers too).
        # Shape inference stops at contrib ops (MultiHeadAttention): their outputs are float.
        quantize_dynamic(
            fold_constant_transposes(onnx.load(fp32_path)),
            output_path,
            op_types_to_quantize=["MatMul", "Gather"],
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        onnx.save(branches_last(onnx.load(output_path)), output_path)
    elif recipe.name == "fp16":
        # Caches and encoder outputs are fp16 in and out, so they stay fp16 on the device from step
        # to step; only the log-probabilities the search adds up stay fp32. (Keeping every input
        # and output fp32 cast 18 caches at every step: on an H200 that made the Transformer's
        # fp16 step 0.62x as fast as fp32's.)
        model = OnnxModel(convert_float_to_float16(onnx.load(fp32_path), keep_io_types=[LOG_PROBS]))
        model.topological_sort()  # the converter appends its input casts after their users
        onnx.save(model.model, output_path)
    else:
        raise ValueError(f"no recipe for variant {recipe.name!r}")


def fold_constant_transposes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Transposes of weights become weights. A tied embedding is stored once and read through a
    Transpose that ONNX Runtime folds at load; the quantizer only quantizes nodes whose weights
    are initializers, so without this the embedding would stay fp32 in the int8 graph."""
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "Transpose" and n.input[0] in weights]:
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = np.transpose(numpy_helper.to_array(weights[node.input[0]]), perm)
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), node.output[0]))
        graph.node.remove(node)
    used = {name for n in graph.node for name in n.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return model


def branches_last(model: onnx.ModelProto) -> onnx.ModelProto:
    """If nodes, and what reads their outputs, moved after every other node. The quantizer sorts
    nodes by their inputs alone, so an If whose branch reads an outer value (the attention
    branch reads each layer's query) can land before that value is computed."""
    graph = model.graph
    moved, produced = [], set()
    for node in list(graph.node):
        if node.op_type == "If" or produced & set(node.input):
            moved.append(node)
            produced |= set(node.output)
    for node in moved:
        graph.node.remove(node)
    graph.node.extend(moved)
    return model
