"""Per-row int8: a row's result depends on that row alone, unlike per-tensor dynamic quantization,
and equals the arithmetic it stands for (after ONNX Runtime's graph optimizations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from export.graph_builder import IR_VERSION
from export.int8 import write_int8

K, N = 64, 48
BIAS = np.linspace(-1, 1, N, dtype=np.float32)


def matmul_graph(path: Path, rank: int, relu: bool = False) -> np.ndarray:
    """x @ w + b, as a linear layer of the exported graphs is (the bias Add is what ONNX Runtime
    folds into its fused MatMulIntegerToFloat)."""
    weight = np.random.default_rng(0).normal(size=(K, N)).astype(np.float32)
    shape = ["batch", "length", K][-rank:]
    nodes = [helper.make_node("Relu", ["x"], ["r"])] if relu else []
    nodes += [helper.make_node("MatMul", ["r" if relu else "x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [*shape[:-1], N])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(BIAS, "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION), path)
    return weight


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # every optimization on, as served
    return session.run(None, {"x": x})[0]


def per_row_reference(x: np.ndarray, weight: np.ndarray, unsigned: bool) -> np.ndarray:
    """What the graph should compute: each row rounded to 255 levels of its own range, weights to
    int8 per output column, products exact, then scaled back."""
    levels = 255 if unsigned else 127
    scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-8) / levels
    weight_scale = np.abs(weight).max(axis=0) / 127
    return (np.round(x / scale) @ np.round(weight / weight_scale)) * scale * weight_scale + BIAS


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("relu", [False, True], ids=["signed", "after-relu"])
def test_each_row_is_quantized_on_its_own(tmp_path: Path, rank: int, relu: bool) -> None:
    weight = matmul_graph(tmp_path / "fp32.onnx", rank, relu)
    write_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    rows = np.random.default_rng(1).normal(size=(8, K)).astype(np.float32)
    rows = rows.reshape((2, 4, K) if rank == 3 else (8, K))
    flat = rows.reshape(-1, K)
    alone = np.concatenate([run(tmp_path / "int8.onnx", flat[i].reshape((1,) * (rank - 1) + (K,))).reshape(1, N) for i in range(len(flat))])
    batched = run(tmp_path / "int8.onnx", rows).reshape(-1, N)
    np.testing.assert_array_equal(batched, alone)
    loud = flat.copy()
    loud[3] *= 1000  # a batch-mate with a far wider range
    quiet = [i for i in range(len(flat)) if i != 3]
    np.testing.assert_array_equal(run(tmp_path / "int8.onnx", loud.reshape(rows.shape)).reshape(-1, N)[quiet], alone[quiet])
    inputs = np.maximum(flat, 0) if relu else flat
    np.testing.assert_allclose(batched, per_row_reference(inputs, weight, relu), rtol=1e-4, atol=1e-4)
    ops = {node.op_type for node in onnx.load(tmp_path / "int8.onnx").graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" not in ops


def test_per_tensor_quantization_would_let_a_batch_mate_change_a_row(tmp_path: Path) -> None:
    """What the per-row form is for: ONNX Runtime's dynamic quantization, one scale per tensor."""
    matmul_graph(tmp_path / "fp32.onnx", 2)
    quantize_dynamic(tmp_path / "fp32.onnx", tmp_path / "per_tensor.onnx", weight_type=QuantType.QInt8, per_channel=True)
    rows = np.random.default_rng(1).normal(size=(8, K)).astype(np.float32)
    loud = rows.copy()
    loud[3] *= 1000
    assert not np.array_equal(run(tmp_path / "per_tensor.onnx", loud)[0], run(tmp_path / "per_tensor.onnx", rows[:1])[0])
