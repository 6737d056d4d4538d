"""A thin layer over onnx.helper: named initializers and nodes, unique intermediate names."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nmt_spec.graph_names import LOG_PROBS, OUTPUT_LOG_PROBS, TOP_IDS, TOP_K, TOP_LOG_PROBS

MICROSOFT_DOMAIN = "com.microsoft"
OPSET = 17  # LayerNormalization is an ONNX op from opset 17 on
# ONNX Runtime 1.31 reads models up to IR version 10 with opset 17 and contrib ops.
IR_VERSION = 10

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
INT32 = TensorProto.INT32
INT64 = TensorProto.INT64
BOOL = TensorProto.BOOL


class GraphBuilder:
    def __init__(self, name: str, prefix: str = "") -> None:
        """prefix: of every generated name, so that a subgraph's names cannot shadow its outer
        graph's (which ONNX forbids)."""
        self.name = name
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._counter = 0

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{self.prefix}{hint}_{self._counter}"

    def input(self, name: str, elem_type: int, shape: list[int | str]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: list[int | str]) -> str:
        if value != name:
            self.op("Identity", [value], name=name)
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], name: str | None = None, domain: str = "", outputs: int = 1, output_names: list[str] | None = None, **attributes: object
    ) -> str | list[str]:
        """Add a node; returns its output name (or names, when outputs > 1). output_names: of
        the outputs, where some are graph outputs that must come from the node itself."""
        if output_names is None:
            output_names = [name] if name and outputs == 1 else [self.fresh(f"{op_type}_out") for _ in range(outputs)]
        self.nodes.append(
            helper.make_node(op_type, inputs, output_names, name=self.fresh(op_type), domain=domain or None, **attributes)
        )
        return output_names[0] if len(output_names) == 1 else output_names

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, prefix: str) -> str:
        """x @ weight.T + bias, with a PyTorch (out, in) weight."""
        y = self.op("MatMul", [x, self.constant(f"{prefix}.weight", weight.T)])
        return self.op("Add", [y, self.constant(f"{prefix}.bias", bias)]) if bias is not None else y

    def next_token_outputs(self, logits: str, vocab_size: int) -> None:
        """The decoder step's ends: log_probs (B, V), and for the input top_k the best K tokens of
        each row with their log-probabilities, computed where the distribution is (TopK breaks
        ties towards the lower id, as numpy's argmax)."""
        log_probs = self.op("LogSoftmax", [logits], axis=-1)
        k = self.input(TOP_K, INT64, [1])
        values, indices = self.op("TopK", [log_probs, k], outputs=2, axis=-1, largest=1, sorted=1)
        self.output(values, TOP_LOG_PROBS, FLOAT, ["batch_size", "top_k"])
        self.output(indices, TOP_IDS, INT64, ["batch_size", "top_k"])
        # Copying the distribution out cost as much as the TopK that reads it (64 rows: 110 us
        # a step), so it leaves the graph only when asked.
        wanted = self.input(OUTPUT_LOG_PROBS, BOOL, [])
        full = self.op("If", [wanted], then_branch=self._pass_through(log_probs, vocab_size), else_branch=self._empty_rows(vocab_size))
        self.output(full, LOG_PROBS, FLOAT, ["log_probs_rows", vocab_size])

    def _pass_through(self, value: str, vocab_size: int) -> onnx.GraphProto:
        branch = GraphBuilder("log_probs", prefix=f"{self.prefix}log_probs_branch.")
        branch.output(branch.op("Identity", [value]), branch.fresh("log_probs"), FLOAT, ["log_probs_rows", vocab_size])
        return branch.subgraph()

    def _empty_rows(self, vocab_size: int) -> onnx.GraphProto:
        return empty_branch("no_log_probs", f"{self.prefix}empty_log_probs_branch.", ["log_probs_rows", vocab_size])

    def tied_embedding(self, ids: str, transposed_table: str) -> str:
        """Rows of the embedding for ids -> ids.shape + (D,), read from the (D, V) transpose that
        the output projection multiplies by, so a tied matrix is stored once. The Transpose of
        a constant is folded when ONNX Runtime loads the graph: gathering rows of the (V, D)
        copy is one contiguous read per id, where gathering columns of (D, V) was D scattered
        reads per id (measured: 7% of a decoder step on the Transformer)."""
        table = self.op("Transpose", [transposed_table], perm=[1, 0])
        return self.op("Gather", [table, ids], axis=0)

    def layer_norm(self, x: str, weight: np.ndarray, bias: np.ndarray, prefix: str, epsilon: float = 1e-5) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.constant(f"{prefix}.weight", weight), self.constant(f"{prefix}.bias", bias)],
            axis=-1,
            epsilon=epsilon,
        )

    def subgraph(self) -> onnx.GraphProto:
        """A branch of an If node: no inputs of its own, it reads its outer graph's values."""
        return helper.make_graph(self.nodes, self.name, [], self.outputs, self.initializers)

    def model(self, producer: str = "nmt-serving export") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MICROSOFT_DOMAIN, 1)],
            producer_name=producer,
            ir_version=IR_VERSION,
        )
        onnx.checker.check_model(model, full_check=False)
        return model


def empty_branch(name: str, prefix: str, declared: list[int | str]) -> onnx.GraphProto:
    """An If branch whose one output is an empty float tensor of the declared shape (its symbolic
    axes 0 long): what a step returns for an output nobody asked for."""
    branch = GraphBuilder(name, prefix=prefix)
    shape = branch.constant(branch.fresh("shape"), np.array([size if isinstance(size, int) else 0 for size in declared], np.int64))
    empty = branch.op("ConstantOfShape", [shape], value=helper.make_tensor("zero", FLOAT, [1], [0.0]))
    branch.output(empty, branch.fresh("empty"), FLOAT, declared)
    return branch.subgraph()
