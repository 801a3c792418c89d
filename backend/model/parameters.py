"""What "parameters" means everywhere in the tool (inspect, zoo list, sessions, exports).

A model's parameters are the elements of its initializers that hold learned values:
floating-point weights, and the narrow integers of quantized weights. Initializers of the
index types (int32/int64: shapes, axes, indices, pads), masks (bool) and strings are not
parameters, so a shape operand never inflates the count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from onnx import TensorProto

NOT_PARAMETERS = frozenset(
    {
        TensorProto.UNDEFINED,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT32,
        TensorProto.UINT64,
        TensorProto.BOOL,
        TensorProto.STRING,
    }
)


def is_parameter(tensor: TensorProto) -> bool:
    """True when the initializer holds weights (see the module docstring)."""
    return tensor.data_type not in NOT_PARAMETERS


def count_parameters(initializers: Iterable[TensorProto]) -> int:
    """Parameter elements of these initializers, from their dims (data need not be loaded)."""
    return sum(math.prod(t.dims) for t in initializers if is_parameter(t))
