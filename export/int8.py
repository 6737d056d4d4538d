"""The int8 variant: weights per output channel, activations quantized per row.

ONNX Runtime's dynamic quantization scales a MatMul's whole input tensor at once
(DynamicQuantizeLinear), so a sentence's translation depends on the sentences batched with it
(measured on the shipped Transformer: 33 of 300 translations changed between alone and shuffled
batches of 64). Here every row (a token's vector) gets its own symmetric scale, as CTranslate2
quantizes, so a row's result depends on that row alone: the integer products are exact, and
the float scaling is elementwise.

Measured on the 2.35M-parameter Transformer (2-core CPU, one thread, 500 test2016 sentences,
greedy), sentences/s in one run: fp32 806, per-tensor int8 973, per-row int8 929 (test2016 BLEU
34.63 against fp32's 34.69); MatMulNBits (8 bits, blocks of 128, accuracy level 4, which also
quantizes activations per row block) 707 (BLEU 34.66). On the 6M one int8 x int8 MatMulInteger
ran at a sixth of uint8 x int8 (97 against 628): uint8 activations offset by 128 against int8
weights are MLAS's fast path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

# uint8 activations: round(x / scale) in [-127, 127], offset by this zero point.
ZERO_POINT = 128
LEVELS = 127
UNSIGNED_LEVELS = 255  # inputs that are never negative: round(x / scale) in [0, 255], zero point 0
SMALLEST_RANGE = 1e-8  # an all-zero row keeps a finite scale (its products are 0 anyway)
CONSTANTS = "per_row_quantization"


def write_int8(fp32_path: Path, output_path: Path) -> None:
    # The weights of every MatMul to int8, the output projection's included. Embedding lookups
    # stay fp32: the tied table is the output projection's fp32 matrix read through a Transpose,
    # which the export then stores once for every graph of the model (export/shared_weights.py),
    # so an int8 copy of it would only add bytes. Shape inference stops at contrib ops
    # (MultiHeadAttention): their outputs are float.
    quantize_dynamic(
        onnx.load(fp32_path),
        output_path,
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    onnx.save(branches_last(quantize_activations_per_row(onnx.load(output_path))), output_path)


def quantize_activations_per_row(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every DynamicQuantizeLinear (one scale and zero point per tensor) replaced by a per-row
    symmetric quantization with the same three outputs: the uint8 tensor, a scale of the input's
    shape with the last axis 1 (which the MatMulInteger's scale product broadcasts), and the
    constant zero point."""
    graph = model.graph
    graph.initializer.extend(
        numpy_helper.from_array(value, f"{CONSTANTS}.{name}")
        for name, value in (
            ("zero_point", np.array(ZERO_POINT, np.uint8)),
            ("offset", np.array(ZERO_POINT, np.float32)),
            ("step", np.array(1 / LEVELS, np.float32)),
            ("unsigned_zero_point", np.array(0, np.uint8)),
            ("unsigned_step", np.array(1 / UNSIGNED_LEVELS, np.float32)),
            ("smallest_range", np.array(SMALLEST_RANGE, np.float32)),
        )
    )
    non_negative = {node.output[0] for node in graph.node if node.op_type == "Relu"}
    nodes = []
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        nodes.extend(_per_row_nodes(node.input[0], *node.output, unsigned=node.input[0] in non_negative))
    row_scales = {node.output[1] for node in graph.node if node.op_type == "DynamicQuantizeLinear"}
    del graph.node[:]
    graph.node.extend(_row_scales_last(nodes, row_scales))
    read = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name.startswith(f"{CONSTANTS}.") and t.name not in read]:
        graph.initializer.remove(tensor)  # e.g. the unsigned constants of a graph without Relu
    return model


def _row_scales_last(nodes: list[onnx.NodeProto], row_scales: set[str]) -> list[onnx.NodeProto]:
    """The quantizer dequantizes with Mul(Cast(MatMulInteger), Mul(input scale, weight scale)),
    which ONNX Runtime fuses, with the bias Add after it, into MatMulIntegerToFloat; that kernel
    gets per-row input scales wrong (measured: the 2.35M Transformer's encoder outputs 30-39% off,
    0.6 test2016 BLEU lost; tests/export/test_int8.py fails on one linear layer). So the scales
    are applied by two Muls of their own, weight scales first, which ONNX Runtime leaves unfused."""
    products = {node.output[0]: node for node in nodes if node.op_type == "Mul" and node.input[0] in row_scales}
    rewritten = []
    for node in nodes:
        if node.output[0] in products:
            continue  # the scale product is no longer needed
        if node.op_type == "Mul" and node.input[1] in products:
            row_scale, weight_scale = products[node.input[1]].input
            partial = f"{node.output[0]}.column_scaled"
            rewritten.append(helper.make_node("Mul", [node.input[0], weight_scale], [partial]))
            rewritten.append(helper.make_node("Mul", [partial, row_scale], list(node.output)))
            continue
        rewritten.append(node)
    return rewritten


def _per_row_nodes(x: str, quantized: str, scale: str, zero_point: str, unsigned: bool) -> list[onnx.NodeProto]:
    """unsigned: x is never negative (a Relu's output), so [0, max] spans all 256 levels
    rather than the upper half of [-max, max]: twice the resolution for the feed-forward
    layers' second matrix."""
    name = f"{quantized}.per_row"
    constant = f"{CONSTANTS}.{{}}".format
    nodes = [
        helper.make_node("ReduceMax", [x if unsigned else f"{name}.abs"], [f"{name}.max"], axes=[-1], keepdims=1),
        helper.make_node("Max", [f"{name}.max", constant("smallest_range")], [f"{name}.range"]),
        helper.make_node("Mul", [f"{name}.range", constant("unsigned_step" if unsigned else "step")], [scale]),
        helper.make_node("Div", [x, scale], [f"{name}.scaled"]),
        helper.make_node("Round", [f"{name}.scaled"], [f"{name}.rounded" if not unsigned else f"{name}.shifted"]),
    ]
    if not unsigned:
        nodes.insert(0, helper.make_node("Abs", [x], [f"{name}.abs"]))
        nodes.append(helper.make_node("Add", [f"{name}.rounded", constant("offset")], [f"{name}.shifted"]))
    return nodes + [
        helper.make_node("Cast", [f"{name}.shifted"], [quantized], to=onnx.TensorProto.UINT8),
        helper.make_node("Identity", [constant("unsigned_zero_point" if unsigned else "zero_point")], [zero_point]),
    ]


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
