"""Per-row int8: a row's result depends on that row alone, unlike per-tensor dynamic quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from export.graph_builder import IR_VERSION
from export.int8 import write_int8

K, N = 64, 48


def matmul_graph(path: Path) -> np.ndarray:
    weight = np.random.default_rng(0).normal(size=(K, N)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", K])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", N])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION), path)
    return weight


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_each_row_is_quantized_on_its_own(tmp_path: Path) -> None:
    weight = matmul_graph(tmp_path / "fp32.onnx")
    write_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    rows = np.random.default_rng(1).normal(size=(8, K)).astype(np.float32)
    loud = rows.copy()
    loud[3] *= 1000  # a batch-mate with a far wider range
    alone = np.concatenate([run(tmp_path / "int8.onnx", rows[i : i + 1]) for i in range(len(rows))])
    np.testing.assert_array_equal(run(tmp_path / "int8.onnx", rows), alone)
    quiet = [i for i in range(len(rows)) if i != 3]
    np.testing.assert_array_equal(run(tmp_path / "int8.onnx", loud)[quiet], alone[quiet])
    np.testing.assert_allclose(alone, rows @ weight, rtol=0.05, atol=0.05 * np.abs(rows @ weight).max())
    ops = {node.op_type for node in onnx.load(tmp_path / "int8.onnx").graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" not in ops


def test_per_tensor_quantization_would_let_a_batch_mate_change_a_row(tmp_path: Path) -> None:
    """What the per-row form is for: ONNX Runtime's dynamic quantization, one scale per tensor."""
    matmul_graph(tmp_path / "fp32.onnx")
    quantize_dynamic(tmp_path / "fp32.onnx", tmp_path / "per_tensor.onnx", weight_type=QuantType.QInt8, per_channel=True)
    rows = np.random.default_rng(1).normal(size=(8, K)).astype(np.float32)
    loud = rows.copy()
    loud[3] *= 1000
    assert not np.array_equal(run(tmp_path / "per_tensor.onnx", loud)[0], run(tmp_path / "per_tensor.onnx", rows[:1])[0])
