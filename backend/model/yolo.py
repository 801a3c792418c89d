"""YOLOv5 n/s/m/l/x (ultralytics v6/v7) built as ONNX with random weights, no torch needed.

The graph mirrors what ultralytics' `export.py` emits for a BN-folded model at 640×640:
Conv(+bias)·Sigmoid·Mul, C3, SPPF, the PANet neck and the decoding Detect head, so split
points, cut sizes and per-node costs match the real network. Only weights and biases are
initializers (grids, anchors and shape operands are `Constant` nodes, as torch emits traced
tensors), so the initializer element count is exactly the BN-folded parameter count.

Plain He-style random weights drift by orders of magnitude over ~100 SiLU layers (channel
means and SiLU's curvature compound), so each conv is calibrated while the graph is built,
LSUV-style: a small random image goes through the graph in numpy and each conv's weights are
scaled so its output has a fixed RMS, as a trained BN keeps it. Activations then stay O(1)
at 640×640 on any input, which makes segment outputs comparable with plain tolerances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
IMAGE_SIZE = 640
NUM_CLASSES = 80
STRIDES = (8, 16, 32)
ANCHORS = (
    (10, 13, 16, 30, 33, 23),  # P3/8
    (30, 61, 62, 45, 59, 119),  # P4/16
    (116, 90, 156, 198, 373, 326),  # P5/32
)
CALIBRATION_SIZE = 128  # side of the calibration images: P5 is 4×4, cheap even for x
# Calibrated on 128² while run on 640², a small scale error per layer is unavoidable. SiLU's
# variance map has slope 1.17 at unit scale (the error grows ×1.17 per layer over ~100 layers,
# yolov5x ended at RMS ~1000); at RMS 4 the slope is 1.04, close to ReLU's neutral 1.
PRE_ACTIVATION_RMS = 4.0


@dataclass(frozen=True)
class YoloVariant:
    """Depth/width multiples of one size, as in `yolov5{n,s,m,l,x}.yaml`."""

    name: str
    depth: float
    width: float


VARIANTS: dict[str, YoloVariant] = {
    v.name: v
    for v in (
        YoloVariant("yolov5n", 0.33, 0.25),
        YoloVariant("yolov5s", 0.33, 0.50),
        YoloVariant("yolov5m", 0.67, 0.75),
        YoloVariant("yolov5l", 1.00, 1.00),
        YoloVariant("yolov5x", 1.33, 1.25),
    )
}

# Parameter counts of the BN-folded models = what ultralytics prints after `fuse()`
# (its published 1.9M … 86.7M); the unfused PyTorch models have one more per BN channel.
PARAMETERS: dict[str, int] = {
    "yolov5n": 1_867_405,
    "yolov5s": 7_225_885,
    "yolov5m": 21_172_173,
    "yolov5l": 46_533_693,
    "yolov5x": 86_705_005,
}

# Backbone + head of yolov5s.yaml v6.0: (from, repeats, module, args).
_LAYERS: tuple[tuple[int | tuple[int, ...], int, str, tuple], ...] = (
    (-1, 1, "Conv", (64, 6, 2, 2)),  # 0 P1/2
    (-1, 1, "Conv", (128, 3, 2)),  # 1 P2/4
    (-1, 3, "C3", (128,)),  # 2
    (-1, 1, "Conv", (256, 3, 2)),  # 3 P3/8
    (-1, 6, "C3", (256,)),  # 4
    (-1, 1, "Conv", (512, 3, 2)),  # 5 P4/16
    (-1, 9, "C3", (512,)),  # 6
    (-1, 1, "Conv", (1024, 3, 2)),  # 7 P5/32
    (-1, 3, "C3", (1024,)),  # 8
    (-1, 1, "SPPF", (1024, 5)),  # 9
    (-1, 1, "Conv", (512, 1, 1)),  # 10
    (-1, 1, "Upsample", ()),  # 11
    ((-1, 6), 1, "Concat", ()),  # 12 cat backbone P4
    (-1, 3, "C3", (512, False)),  # 13
    (-1, 1, "Conv", (256, 1, 1)),  # 14
    (-1, 1, "Upsample", ()),  # 15
    ((-1, 4), 1, "Concat", ()),  # 16 cat backbone P3
    (-1, 3, "C3", (256, False)),  # 17 P3/8-small
    (-1, 1, "Conv", (256, 3, 2)),  # 18
    ((-1, 14), 1, "Concat", ()),  # 19 cat head P4
    (-1, 3, "C3", (512, False)),  # 20 P4/16-medium
    (-1, 1, "Conv", (512, 3, 2)),  # 21
    ((-1, 10), 1, "Concat", ()),  # 22 cat head P5
    (-1, 3, "C3", (1024, False)),  # 23 P5/32-large
    ((17, 20, 23), 1, "Detect", ()),  # 24
)


def make_divisible(x: float, divisor: int = 8) -> int:
    """Channel rounding of ultralytics: up to the next multiple of `divisor`."""
    return math.ceil(x / divisor) * divisor


def _conv_np(x: np.ndarray, w: np.ndarray, s: int, p: int) -> np.ndarray:
    """NCHW convolution (no bias) through one matmul, for calibration only."""
    b, c, _, _ = x.shape
    o, _, k, _ = w.shape
    if p:  # wrap, not zeros: calibrate for the interior of a large image, not its border
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="wrap")
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # B,C,Ho,Wo,k,k
    ho, wo = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * k * k)
    out = cols @ w.reshape(o, c * k * k).T
    return np.ascontiguousarray(out.reshape(b, ho, wo, o).transpose(0, 3, 1, 2))


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (np.float32(1.0) + np.exp(-x))


def _maxpool_np(x: np.ndarray, k: int) -> np.ndarray:
    p = k // 2
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="wrap")
    return sliding_window_view(x, (k, k), axis=(2, 3)).max(axis=(4, 5))


@dataclass
class _Builder:
    """Emits ONNX nodes and, unless `rng` is None (structure only), calibrated weights."""

    rng: np.random.Generator | None
    # Weights go straight into the model's graph: each extra copy of x costs ~0.3 s.
    graph: onnx.GraphProto = field(default_factory=onnx.GraphProto)
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    parameters: int = 0
    acts: dict[str, np.ndarray] = field(default_factory=dict)  # calibration activations

    def node(self, op: str, name: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outputs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def const(self, name: str, value: np.ndarray) -> str:
        tensor = numpy_helper.from_array(np.asarray(value), name=f"{name}_value")
        (out,) = self.node("Constant", name, [], value=tensor)
        return out

    def conv2d(
        self,
        name: str,
        x: str,
        c1: int,
        c2: int,
        k: int,
        s: int,
        p: int,
        target_bias: np.ndarray | None = None,
        rms: float = PRE_ACTIVATION_RMS,
    ) -> str:
        """Conv with its BN folded in: output RMS `rms` on the calibration image, plus a bias
        of `target_bias` (default: a small random BN beta)."""
        (y,) = self.node(
            "Conv",
            name,
            [x, f"{name}.weight", f"{name}.bias"],
            kernel_shape=[k, k],
            strides=[s, s],
            pads=[p, p, p, p],
        )
        self.parameters += c2 * c1 * k * k + c2
        if self.rng is None:
            return y
        w = self.rng.standard_normal((c2, c1, k, k), dtype=np.float32)
        if target_bias is None:
            target_bias = np.float32(0.1) * self.rng.standard_normal(c2, dtype=np.float32)
        # One scale per layer (LSUV-style), from the RMS over all channels and positions:
        # per-channel statistics of the few deep positions are too noisy and their errors
        # compound over ~100 near-homogeneous layers.
        out = _conv_np(self.acts[x], w, s, p)
        # Rounded to 4 digits so BLAS rounding differences between machines (thread counts,
        # kernels) do not change the weights: a seed must name one model, byte for byte.
        mean_square = max(float(np.mean(out * out, dtype=np.float64)), 1e-12)
        scale = np.float32(float(f"{rms / math.sqrt(mean_square):.4g}"))
        w *= scale
        bias = target_bias.astype(np.float32)
        out *= scale
        out += bias[None, :, None, None]
        self.acts[y] = out
        self._initializer(f"{name}.weight", w)
        self._initializer(f"{name}.bias", bias)
        return y

    def _initializer(self, name: str, value: np.ndarray) -> None:
        tensor = self.graph.initializer.add()
        tensor.name = name
        tensor.data_type = TensorProto.FLOAT
        tensor.dims.extend(value.shape)
        tensor.raw_data = value.astype("<f4", copy=False).tobytes()

    def conv(
        self, name: str, x: str, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None
    ) -> str:
        """ultralytics `Conv`: Conv2d + (folded) BN + SiLU, exported as Sigmoid·Mul."""
        y = self.conv2d(f"{name}.conv", x, c1, c2, k, s, k // 2 if p is None else p)
        (sig,) = self.node("Sigmoid", f"{name}.act.sigmoid", [y])
        (out,) = self.node("Mul", f"{name}.act.mul", [y, sig])
        self._calc(out, lambda: _silu(self.acts[y]))
        return out

    def _calc(self, out: str, fn) -> None:
        if self.rng is not None:
            self.acts[out] = fn()

    def add(self, name: str, a: str, b: str) -> str:
        (y,) = self.node("Add", name, [a, b])
        self._calc(y, lambda: self.acts[a] + self.acts[b])
        return y

    def concat(self, name: str, xs: list[str]) -> str:
        (y,) = self.node("Concat", name, xs, axis=1)
        self._calc(y, lambda: np.concatenate([self.acts[x] for x in xs], axis=1))
        return y

    def c3(self, name: str, x: str, c1: int, c2: int, n: int, shortcut: bool) -> str:
        c_ = int(c2 * 0.5)
        a = self.conv(f"{name}.cv1", x, c1, c_)
        for i in range(n):  # Bottleneck(c_, c_, shortcut, e=1.0)
            h = self.conv(f"{name}.m.{i}.cv1", a, c_, c_, 1)
            h = self.conv(f"{name}.m.{i}.cv2", h, c_, c_, 3)
            a = self.add(f"{name}.m.{i}.add", a, h) if shortcut else h
        b = self.conv(f"{name}.cv2", x, c1, c_)
        return self.conv(f"{name}.cv3", self.concat(f"{name}.concat", [a, b]), 2 * c_, c2)

    def sppf(self, name: str, x: str, c1: int, c2: int, k: int) -> str:
        c_ = c1 // 2
        y = [self.conv(f"{name}.cv1", x, c1, c_)]
        for i in range(3):
            prev = y[-1]
            y += self.node(
                "MaxPool",
                f"{name}.m.{i}",
                [prev],
                kernel_shape=[k, k],
                strides=[1, 1],
                pads=[k // 2] * 4,
            )
            self._calc(y[-1], lambda prev=prev: _maxpool_np(self.acts[prev], k))
        return self.conv(f"{name}.cv2", self.concat(f"{name}.concat", y), 4 * c_, c2)

    def upsample(self, name: str, x: str) -> str:
        scales = self.const(f"{name}.scales", np.array([1, 1, 2, 2], dtype=np.float32))
        (y,) = self.node(
            "Resize",
            name,
            [x, "", scales],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
        self._calc(y, lambda: self.acts[x].repeat(2, axis=2).repeat(2, axis=3))
        return y

    def detect(self, name: str, xs: list[str], chs: list[int]) -> str:
        """Detect head with the export-time decoding (grid/anchor_grid as constants)."""
        na, no = len(ANCHORS[0]) // 2, NUM_CLASSES + 5
        levels = []
        for i, (x, c, stride, anchors) in enumerate(zip(xs, chs, STRIDES, ANCHORS, strict=True)):
            ny = nx = IMAGE_SIZE // stride
            p = f"{name}.{i}"
            # Objectness/class priors of ultralytics' `_initialize_biases`: few confident boxes.
            prior = np.zeros((na, no), dtype=np.float32)
            prior[:, 4] = math.log(8 / (IMAGE_SIZE / stride) ** 2)
            prior[:, 5:] = math.log(0.6 / (NUM_CLASSES - 0.99))
            y = self.conv2d(f"{name}.m.{i}", x, c, na * no, 1, 1, 0, prior.reshape(-1), 1.0)
            shape5 = self.const(f"{p}.shape", np.array([1, na, no, ny, nx], dtype=np.int64))
            (y,) = self.node("Reshape", f"{p}.reshape", [y, shape5])
            (y,) = self.node("Transpose", f"{p}.transpose", [y], perm=[0, 1, 3, 4, 2])
            (y,) = self.node("Sigmoid", f"{p}.sigmoid", [y])
            split = self.const(f"{p}.split_sizes", np.array([2, 2, no - 4], dtype=np.int64))
            xy, wh, conf = self.node("Split", f"{p}.split", [y, split], n_out=3, axis=4)
            yv, xv = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
            grid = np.broadcast_to(np.stack((xv, yv), 2), (1, na, ny, nx, 2)) - 0.5
            anchor = np.asarray(anchors, dtype=np.float32).reshape(1, na, 1, 1, 2)
            anchor_grid = np.broadcast_to(anchor, (1, na, ny, nx, 2))
            two = self.const(f"{p}.two", np.array(2.0, dtype=np.float32))
            (xy,) = self.node("Mul", f"{p}.xy.mul2", [xy, two])
            grid_c = self.const(f"{p}.grid", grid.astype(np.float32))
            (xy,) = self.node("Add", f"{p}.xy.add_grid", [xy, grid_c])
            stride_c = self.const(f"{p}.stride", np.array(float(stride), dtype=np.float32))
            (xy,) = self.node("Mul", f"{p}.xy.mul_stride", [xy, stride_c])
            (wh,) = self.node("Mul", f"{p}.wh.mul2", [wh, two])
            (wh,) = self.node("Pow", f"{p}.wh.pow", [wh, two])
            ag = self.const(f"{p}.anchor_grid", anchor_grid.astype(np.float32))
            (wh,) = self.node("Mul", f"{p}.wh.mul_anchor", [wh, ag])
            (y,) = self.node("Concat", f"{p}.concat", [xy, wh, conf], axis=4)
            shape3 = self.const(f"{p}.out_shape", np.array([1, na * ny * nx, no], dtype=np.int64))
            levels += self.node("Reshape", f"{p}.out", [y, shape3])
        self.nodes.append(helper.make_node("Concat", levels, [OUTPUT_NAME], name=name, axis=1))
        return OUTPUT_NAME


def _build(
    variant: YoloVariant, rng: np.random.Generator | None, graph: onnx.GraphProto | None = None
) -> _Builder:
    g = _Builder(rng, graph if graph is not None else onnx.GraphProto())
    if rng is not None:
        g.acts[INPUT_NAME] = rng.random((1, 3, CALIBRATION_SIZE, CALIBRATION_SIZE), np.float32)
    outs: list[str] = []
    chs: list[int] = []
    x, c_in = INPUT_NAME, 3
    for i, (src, n, module, args) in enumerate(_LAYERS):
        name = f"model.{i}"
        n = max(round(n * variant.depth), 1) if n > 1 else n
        srcs = src if isinstance(src, tuple) else (src,)
        ins = [x if j == -1 else outs[j] for j in srcs]
        in_chs = [c_in if j == -1 else chs[j] for j in srcs]
        c2 = make_divisible(args[0] * variant.width) if args else sum(in_chs)
        if module == "Conv":
            x = g.conv(name, ins[0], in_chs[0], c2, args[1], args[2], (args[3:] or (None,))[0])
        elif module == "C3":
            x = g.c3(name, ins[0], in_chs[0], c2, n, args[1] if len(args) > 1 else True)
        elif module == "SPPF":
            x = g.sppf(name, ins[0], in_chs[0], c2, args[1])
        elif module == "Upsample":
            x = g.upsample(name, ins[0])
        elif module == "Concat":
            x = g.concat(name, ins)
        elif module == "Detect":
            x = g.detect(name, ins, in_chs)
        else:  # pragma: no cover - the table above is fixed
            raise AssertionError(module)
        outs.append(x)
        chs.append(c2)
        c_in = c2
        if rng is not None:  # free calibration activations no later layer reads
            live = {outs[j] for j in (4, 6, 10, 14, 17, 20) if j < len(outs)} | {x}
            g.acts = {k: v for k, v in g.acts.items() if k in live}
    return g


def parameter_count(name: str) -> int:
    """Initializer elements of a variant, from its structure alone (no weights drawn)."""
    return _build(VARIANTS[name], None).parameters


def build_yolov5(name: str, seed: int = 0) -> onnx.ModelProto:
    """Build one YOLOv5 size with seeded random weights; input `images`, output `output0`."""
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(
        helper.make_graph(
            [],
            f"{name}_random_seed{seed}",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, 640, 640])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 25200, 85])],
        ),
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="omdp.zoo",
        doc_string=f"{name} (ultralytics v7.0 architecture) with random weights, seed={seed}; "
        "BN folded and calibrated on random images; not a trained detector",
    )
    g = _build(VARIANTS[name], np.random.default_rng(seed), model.graph)
    model.graph.node.extend(g.nodes)
    return model
