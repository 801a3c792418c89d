"""Running one ONNX model on one runtime, and timing it so the numbers can be trusted.

Self-contained on purpose (stdlib + numpy + onnx + the runtime, imported lazily): the
device agent ships this file as-is to devices that have nothing of this project installed.

Timing protocol (why each step exists):
- session creation / compilation happens outside the timed region and is recorded on its
  own (`load_ms`): onnxruntime folds constants at load (seconds for VGG19), OpenVINO
  compiles; neither belongs in an inference latency;
- warm-up runs (first runs allocate memory, fill caches, JIT kernels) are not kept;
- timed runs continue until the median's 95% confidence interval (distribution-free, from
  binomial order statistics) is narrower than a relative target, or a run/time budget ends,
  but never before a minimum count: noisy devices get more runs, quiet ones stop early;
- every raw sample (ms) is kept, so any statistic can be recomputed later.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import platform
import re
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

try:
    import onnx
except ImportError:  # a device without onnx runs the segments the lab cut (segments mode)
    onnx = None  # type: ignore[assignment]

if __package__:
    from .probe import host_facts as _probe_facts
    from .probe import packages as _probe_packages
    from .protocol import TENSOR_DTYPES, TimingSettings
else:  # plain files side by side on a device
    from probe import host_facts as _probe_facts  # type: ignore[no-redef]
    from probe import packages as _probe_packages  # type: ignore[no-redef]
    from protocol import TENSOR_DTYPES, TimingSettings  # type: ignore[no-redef]

RUNTIMES = ("onnxruntime", "openvino")
# The options each runtime takes (besides `name`): the one list the devices file, the
# agent and the session's configuration key all use.
RUNTIME_OPTIONS = {
    "onnxruntime": ("threads", "inter_threads", "graph_opt", "providers"),
    "openvino": ("threads", "ov_device", "precision", "perf_hint"),
}
ORT_GRAPH_OPT = ("disable", "basic", "extended", "all")
OV_PRECISIONS = ("f32", "f16", "bf16")
OV_PERF_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


class RuntimeUnavailable(RuntimeError):
    """The requested runtime (or one of its providers/devices) is not installed here."""


# -- configuration ---------------------------------------------------------------------------


@dataclass
class RuntimeConfig:
    """Which runtime runs a segment and how. Part of a measurement's identity: the same
    segment under another configuration is another measurement."""

    name: str = "onnxruntime"
    threads: int | None = None  # ORT intra-op threads / OV INFERENCE_NUM_THREADS
    inter_threads: int | None = None  # ORT inter-op threads
    graph_opt: str = "all"  # ORT graph optimisation level
    providers: list[str] | None = None  # ORT execution providers (default: CPU)
    ov_device: str = "CPU"
    precision: str = "f32"  # OV INFERENCE_PRECISION_HINT, pinned: this CPU picks bf16 otherwise
    perf_hint: str = "LATENCY"  # OV PERFORMANCE_HINT

    def options(self) -> dict[str, Any]:
        """The options that matter for this runtime, without unset values."""
        keys = RUNTIME_OPTIONS.get(self.name, ())
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def key(self) -> str:
        """Canonical text identity (runtime + options) used to tell measurements apart."""
        return json.dumps({"runtime": self.name, **self.options()}, sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuntimeConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown runtime option(s): {', '.join(sorted(unknown))}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.name not in RUNTIMES:
            raise ValueError(f"runtime '{self.name}' is unknown (use {' or '.join(RUNTIMES)})")
        for k in ("threads", "inter_threads"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{k} must be a positive integer, not {v!r}")
        if self.graph_opt not in ORT_GRAPH_OPT:
            raise ValueError(
                f"graph_opt '{self.graph_opt}' is unknown (use {', '.join(ORT_GRAPH_OPT)})"
            )
        if self.precision not in OV_PRECISIONS:
            raise ValueError(
                f"precision '{self.precision}' is unknown (use {', '.join(OV_PRECISIONS)})"
            )
        if self.perf_hint not in OV_PERF_HINTS:
            raise ValueError(
                f"perf_hint '{self.perf_hint}' is unknown (use {', '.join(OV_PERF_HINTS)})"
            )


# -- statistics ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based order-statistic ranks (lo, hi) bracketing the median with at least
    `confidence` coverage, from the Binomial(n, 1/2) law — no distribution assumed.

    None when n is too small for any interval (n < 6 at 95%).
    """
    alpha = (1.0 - confidence) / 2.0
    if n < 1:
        return None
    if n <= 1000:
        total = 2**n
        cdf = 0
        j = 0  # largest j with P(B <= j - 1) <= alpha -> lower rank j (1-based)
        for k in range(n + 1):
            cdf += math.comb(n, k)
            if cdf / total > alpha:
                j = k  # P(B <= k-1) <= alpha, P(B <= k) > alpha
                break
        if j < 1:
            return None
        return j - 1, n - j
    z = _normal_quantile(1.0 - alpha)
    half = z * math.sqrt(n) / 2.0
    lo = max(math.floor(n / 2.0 - half), 1)
    return lo - 1, n - lo


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF by bisection (only needed for n > 1000)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass
class Stats:
    """Summary of raw samples (ms). `rel_ci` is the CI half-width over the median."""

    count: int
    median: float
    p10: float
    p90: float
    mean: float
    std: float
    min: float
    max: float
    ci_low: float | None
    ci_high: float | None
    rel_ci: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: list[float], confidence: float = 0.95) -> Stats:
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    s = np.sort(a)
    med = float(np.median(s))
    ranks = median_ci_ranks(len(s), confidence)
    lo = hi = rel = None
    if ranks is not None:
        lo, hi = float(s[ranks[0]]), float(s[ranks[1]])
        rel = (hi - lo) / 2.0 / med if med > 0 else None  # no relative width at 0 ms
    return Stats(
        int(a.size),
        med,
        float(np.percentile(s, 10)),
        float(np.percentile(s, 90)),
        float(a.mean()),
        float(a.std(ddof=1)) if a.size > 1 else 0.0,
        float(s[0]),
        float(s[-1]),
        lo,
        hi,
        rel,
    )


# -- host and versions -----------------------------------------------------------------------


def versions() -> dict[str, str | None]:
    """Versions of python and the packages the agent needs, without importing runtimes."""
    found = _probe_packages()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__ if onnx is not None else None,
        # whichever build is installed (onnxruntime-gpu, onnxruntime-openvino, ...)
        "onnxruntime": found.get("onnxruntime"),
        "openvino": found.get("openvino"),
    }


def host_facts() -> dict[str, Any]:
    """What a measurement ran on: the probe's host facts, plus CPU affinity and memory."""
    mem_kb = None
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {**_probe_facts(), "affinity": affinity, "memory_mb": mem_kb // 1024 if mem_kb else None}


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    elem_type: int

    @property
    def dtype(self) -> np.dtype:
        return np_dtype(self.elem_type)


def np_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX tensor type, from the protocol's table (no onnx needed,
    the same in every onnx release)."""
    name = TENSOR_DTYPES.get(elem_type)
    if name is None:
        raise ValueError(f"ONNX tensor type {elem_type} has no numpy equivalent")
    return np.dtype(name)


def tensor_spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    """Name, concrete shape and type of a tensor; ValueError when a dim is not known."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        raise ValueError(f"tensor '{vi.name}' has no known shape: give concrete input shapes")
    dims = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value"):
            raise ValueError(
                f"tensor '{vi.name}' has a symbolic dim "
                f"'{d.dim_param or '?'}': give concrete input shapes"
            )
        dims.append(d.dim_value)
    return TensorSpec(vi.name, tuple(dims), tt.elem_type)


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """The model's real inputs (IR-3 initializer inputs excluded) with concrete shapes."""
    inits = {t.name for t in model.graph.initializer}
    return [tensor_spec(vi) for vi in model.graph.input if vi.name not in inits]


def random_tensor(spec: TensorSpec, seed: int) -> np.ndarray:
    """Seeded per (seed, tensor name): the same tensor gets the same values in every
    segment. Floats standard normal, ints small non-negative, bools fair coins."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    dt = spec.dtype
    if dt == np.bool_:
        return rng.integers(0, 2, spec.shape).astype(np.bool_)
    if np.issubdtype(dt, np.integer):
        return rng.integers(0, 4, spec.shape).astype(dt)
    if np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.complexfloating):
        return rng.standard_normal(spec.shape).astype(dt)
    raise ValueError(f"cannot make random values for input '{spec.name}' of type {dt}")


def random_inputs(specs: list[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    return {s.name: random_tensor(s, seed) for s in specs}


# -- runners ---------------------------------------------------------------------------------


class Runner:
    """A loaded model ready to run: `load_ms` is what creating it cost."""

    runtime: str
    version: str | None
    load_ms: float
    options: dict[str, Any]
    used: str  # the execution provider / OpenVINO device that actually ran it

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def output_names(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the session (runtimes free memory when the object goes)."""


_ORT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailable("onnxruntime is not installed on this device") from exc
    onnxruntime.set_default_logger_severity(3)  # errors only: no warning spam on stderr
    return onnxruntime


def _ort_options(ort, config: RuntimeConfig, profile_prefix: str | None = None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if config.threads:
        so.intra_op_num_threads = config.threads
    if config.inter_threads:
        so.inter_op_num_threads = config.inter_threads
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _ORT_LEVELS[config.graph_opt])
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def _ort_providers(ort, config: RuntimeConfig) -> list[str]:
    wanted = config.providers or ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        raise RuntimeUnavailable(
            f"onnxruntime provider(s) {', '.join(missing)} not available "
            f"(installed: {', '.join(available)})"
        )
    return wanted


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, model: bytes, config: RuntimeConfig, profile_prefix: str | None = None):
        ort = _ort()
        self.version = ort.__version__
        self.options = config.options()
        so = _ort_options(ort, config, profile_prefix)
        providers = _ort_providers(ort, config)
        t0 = time.perf_counter()
        self.session = ort.InferenceSession(model, so, providers=providers)
        self.load_ms = (time.perf_counter() - t0) * 1e3
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.used = self.session.get_providers()[0]  # the first provider the session took

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self._outputs, feeds)

    def output_names(self) -> list[str]:
        return list(self._outputs)

    def end_profiling(self) -> str:
        return self.session.end_profiling()

    def close(self) -> None:
        self.session = None


@dataclass(frozen=True)
class OvApi:
    """The OpenVINO API at hand: 2023.1+ exports it from `openvino`, 2022.x only from
    `openvino.runtime`, whose `infer` takes no sharing flags and whose `read_model` takes
    the bytes themselves."""

    module: Any
    core: Any
    legacy: bool

    def version(self) -> str:
        return str(self.module.get_version())

    def read_model(self, model: bytes) -> Any:
        return self.core.read_model(model if self.legacy else io.BytesIO(model))

    def infer(self, request: Any, feeds: dict[str, np.ndarray]) -> Any:
        if self.legacy:
            return request.infer(feeds)
        return request.infer(feeds, share_inputs=True, share_outputs=True)


@functools.lru_cache(maxsize=1)
def ov_api() -> OvApi:
    # `import openvino` imports its model converter, whose telemetry forks a sender that
    # tries the network (none here) and then blocks interpreter exit. We only need the
    # runtime: hide the converter so the import skips it (openvino guards it with
    # try/except ImportError).
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino.tools.ovc", None)  # type: ignore[arg-type]
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailable("openvino is not installed on this device") from exc
    if hasattr(openvino, "Core"):
        return OvApi(openvino, openvino.Core(), False)
    try:
        import openvino.runtime as legacy
    except ImportError as exc:
        raise RuntimeUnavailable(
            "this openvino has neither openvino.Core nor openvino.runtime (need 2022.1+)"
        ) from exc
    return OvApi(legacy, legacy.Core(), True)


def ov_properties(config: RuntimeConfig, perf_count: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"PERFORMANCE_HINT": config.perf_hint}
    if config.ov_device.split(".")[0] in ("CPU", "GPU"):
        props["INFERENCE_PRECISION_HINT"] = config.precision
    if config.threads and config.ov_device.startswith("CPU"):
        props["INFERENCE_NUM_THREADS"] = config.threads
    if perf_count:
        props["PERF_COUNT"] = True
    return props


class OvRunner(Runner):
    runtime = "openvino"

    def __init__(self, model: bytes, config: RuntimeConfig, perf_count: bool = False):
        self.api = api = ov_api()
        core = api.core
        _ov_device_check(core, config.ov_device)
        self.version = api.version()
        self.options = config.options()
        t0 = time.perf_counter()
        ov_model = api.read_model(model)
        self.compiled = core.compile_model(
            ov_model, config.ov_device, ov_properties(config, perf_count)
        )
        self.request = self.compiled.create_infer_request()
        self.load_ms = (time.perf_counter() - t0) * 1e3
        self._outputs = [o.get_any_name() for o in self.compiled.outputs]
        self.used = config.ov_device
        with contextlib.suppress(Exception):  # AUTO/MULTI: the devices it compiled for
            self.used = ",".join(self.compiled.get_property("EXECUTION_DEVICES"))
        with contextlib.suppress(Exception):
            hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            self.options["effective_precision"] = getattr(hint, "to_string", hint.__str__)()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = self.api.infer(self.request, feeds)
        return [res[o] for o in self.compiled.outputs]

    def output_names(self) -> list[str]:
        return list(self._outputs)

    def close(self) -> None:
        self.request = None
        self.compiled = None


def check_available(config: RuntimeConfig) -> None:
    """RuntimeUnavailable, naming what this device has, when the configured runtime,
    execution provider or OpenVINO device is not here: the job fails before any timing."""
    if config.name == "onnxruntime":
        _ort_providers(_ort(), config)
    elif config.name == "openvino":
        _ov_device_check(ov_api().core, config.ov_device)


def _ov_device_check(core: Any, device: str) -> None:
    available = list(core.available_devices)
    wanted = {d.split(".")[0] for d in re.split(r"[:,]", device) if d}
    wanted -= {"AUTO", "MULTI", "HETERO", "BATCH"}  # virtual devices over the real ones
    if not wanted <= {d.split(".")[0] for d in available}:
        raise RuntimeUnavailable(
            f"OpenVINO device '{device}' is not available (available: {', '.join(available)})"
        )


def load(model: bytes | onnx.ModelProto, config: RuntimeConfig) -> Runner:
    """Create a session / compile the model; the cost lands in `runner.load_ms`."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    if config.name == "onnxruntime":
        return OrtRunner(data, config)
    if config.name == "openvino":
        return OvRunner(data, config)
    raise RuntimeUnavailable(f"runtime '{config.name}' is unknown")


def clean_message(exc: BaseException) -> str:
    """A runtime's exception as one useful line (OpenVINO puts file:line noise first)."""
    noise = ("Exception from ", "Check '", "To facilitate", "FrontEnd API failed", "Summary:")
    lines = [ln.strip(" -") for ln in str(exc).splitlines()]
    useful = [ln for ln in lines if ln and not ln.startswith(noise)]
    text = "; ".join(useful) or type(exc).__name__
    return text[:500]


# -- timing ----------------------------------------------------------------------------------


@dataclass
class Timing:
    samples: list[float]  # ms, in run order
    stats: Stats
    stop: str  # "ci" | "max_runs" | "max_seconds"
    warmup_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of warm-up + timed runs


class Stopped(Exception):
    """Timing was interrupted from outside (agent asked to stop): no result."""


def time_runner(
    runner: Runner,
    feeds: dict[str, np.ndarray],
    settings: TimingSettings,
    should_stop: Callable[[], bool] | None = None,
    warmed_up: Callable[[], None] | None = None,
) -> Timing:
    """Warm up, then time single runs until the median is known precisely enough.
    `warmed_up` is called between the two (outside the timed region)."""
    t_start = time.perf_counter()
    clock = time.perf_counter_ns
    warm: list[float] = []
    for _ in range(settings.warmup):
        t0 = clock()
        runner.run(feeds)
        warm.append((clock() - t0) / 1e6)
        if should_stop and should_stop():
            raise Stopped
    if warmed_up is not None:
        warmed_up()
    samples: list[float] = []
    t_timed = time.perf_counter()
    stop = "max_runs"
    while len(samples) < settings.max_runs:
        t0 = clock()
        runner.run(feeds)
        samples.append((clock() - t0) / 1e6)
        if should_stop and should_stop():
            raise Stopped
        n = len(samples)
        if n < settings.min_runs:
            continue
        if n < 100 or n % 10 == 0:
            st = summarize(samples, settings.confidence)
            if st.rel_ci is not None and st.rel_ci <= settings.target_rel_ci:
                stop = "ci"
                break
        if time.perf_counter() - t_timed >= settings.max_seconds:
            stop = "max_seconds"
            break
    return Timing(
        samples, summarize(samples, settings.confidence), stop, warm, time.perf_counter() - t_start
    )


if __name__ == "__main__":  # a quick look at this host: python runtimes.py
    json.dump({"versions": versions(), "host": host_facts()}, sys.stdout, indent=2)
    print()
