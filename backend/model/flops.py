"""Floating-point operations per node, from inferred shapes.

The rule, documented for users (README "FLOPs"):
- Conv, ConvTranspose, Gemm, MatMul (and their quantised/fused forms listed below): 2 × MACs,
  plus one add per output element for a bias.
- Elementwise arithmetic and activations: one operation per output element
  (`ELEMENTWISE_COST` lists the few that count more, e.g. Sigmoid, Softmax).
- Normalisation: a handful per element (`NORM_COST`).
- Pooling and reductions: one per input element read.
- Data movement and shape ops (Reshape, Concat, Slice, Transpose, Gather, Resize nearest…): 0.
- Anything unknown: 0, and the node is listed as uncounted so the total is honest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from onnx import NodeProto

Shape = Sequence[int | str | None] | None  # None: rank unknown; str/None dims: unknown

ELEMENTWISE_COST = {
    "Add": 1,
    "Sub": 1,
    "Mul": 1,
    "Div": 1,
    "Pow": 1,
    "Sqrt": 1,
    "Neg": 1,
    "Abs": 1,
    "Relu": 1,
    "LeakyRelu": 2,
    "PRelu": 2,
    "Clip": 1,
    "Max": 1,
    "Min": 1,
    "Sum": 1,
    "Mean": 1,
    "Exp": 1,
    "Log": 1,
    "Reciprocal": 1,
    "Floor": 1,
    "Ceil": 1,
    "Round": 1,
    "Sigmoid": 4,
    "HardSigmoid": 3,
    "HardSwish": 4,
    "Tanh": 4,
    "Erf": 4,
    "Gelu": 8,
    "Silu": 5,
    "Mish": 8,
    "Softplus": 3,
    "Elu": 3,
    "Selu": 3,
    "Where": 1,
    "Equal": 1,
    "Greater": 1,
    "Less": 1,
    "Not": 1,
    "And": 1,
    "Or": 1,
    "Cast": 0,
}
NORM_COST = {
    "BatchNormalization": 2,
    "InstanceNormalization": 5,
    "LayerNormalization": 5,
    "GroupNormalization": 5,
    "LpNormalization": 3,
    "LRN": 5,
    "Softmax": 5,
    "LogSoftmax": 5,
}
POOL_OPS = {
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
}
ZERO_COST = {
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "GatherElements",
    "GatherND",
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Identity",
    "Dropout",
    "Expand",
    "Tile",
    "Pad",
    "Resize",
    "Upsample",
    "DepthToSpace",
    "SpaceToDepth",
    "Range",
    "NonZero",
    "TopK",
    "ScatterND",
    "ScatterElements",
    "OneHot",
    "ArgMax",
    "ArgMin",
    "CastLike",
    "QuantizeLinear",
    "DequantizeLinear",
    "NonMaxSuppression",
}


def _dims(shape: Shape) -> list[int] | None:
    """The dims when every one is known (and not negative), else None."""
    if shape is None:
        return None
    dims = [d for d in shape if isinstance(d, int) and d >= 0]
    return dims if len(dims) == len(shape) else None


def _numel(shape: Shape) -> int | None:
    dims = _dims(shape)
    return None if dims is None else math.prod(dims)


def _attr(node: NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else list(a.ints) if a.ints else default
    return default


def node_flops(
    node: NodeProto, in_shapes: Sequence[Shape], out_shapes: Sequence[Shape]
) -> int | None:
    """FLOPs of one node, or None when shapes are unknown or the op is not covered."""
    op = node.op_type
    out = out_shapes[0] if out_shapes else None
    out_n = _numel(out)
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = _dims(in_shapes[3] if op == "QLinearConv" else in_shapes[1])
        if out_n is None or w is None or len(w) < 2:
            return None
        macs = out_n * math.prod(w[1:])  # each output: Cin/group × kernel MACs
        has_bias = len(node.input) > (8 if op == "QLinearConv" else 2) and bool(node.input[-1])
        return 2 * macs + (out_n if has_bias else 0)
    if op == "ConvTranspose":
        x, w = _numel(in_shapes[0]), _dims(in_shapes[1])
        if x is None or w is None:
            return None
        # every input element multiplies a (Cout/group × kernel) slab
        macs = x * math.prod(w[1:])
        has_bias = len(node.input) > 2 and bool(node.input[2])
        return 2 * macs + ((out_n or 0) if has_bias else 0)
    if op == "Gemm":
        a, b = _dims(in_shapes[0]), _dims(in_shapes[1])
        if a is None or b is None or out_n is None or not a:
            return None
        k = a[0] if _attr(node, "transA", 0) else a[-1]
        has_c = len(node.input) > 2 and bool(node.input[2])
        return 2 * out_n * k + (out_n if has_c else 0)
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = _dims(in_shapes[0])
        if a is None or out_n is None or not a:
            return None
        return 2 * out_n * a[-1]
    if op in ELEMENTWISE_COST:
        return None if out_n is None else ELEMENTWISE_COST[op] * out_n
    if op in NORM_COST:
        return None if out_n is None else NORM_COST[op] * out_n
    if op in POOL_OPS:
        x = _numel(in_shapes[0]) if in_shapes else None
        if op in ("MaxPool", "AveragePool", "LpPool") and out_n is not None:
            kernel: list[int] = _attr(node, "kernel_shape", [1])
            return out_n * math.prod(kernel)
        return x
    if op in ZERO_COST:
        return 0
    return None
