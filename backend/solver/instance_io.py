"""Instance files (JSON, docs/instance-format.md): read with every mistake named, written back.

Reading never trusts sizes: the file's size, its nesting depth and the tables it implies
(devices x candidates x candidates) are checked against stated limits before anything
big is allocated, and every problem is one `OmdpError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from backend.chain import link_names
from backend.errors import OmdpError
from backend.solver.costs import Instance, LayerInstance, Memory, SegmentInstance


def load_instance(path: str | Path) -> Instance:
    """Read an instance file; every problem is an OmdpError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise OmdpError(f"instance file {p} not found", "check the path (a JSON instance file)")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"{p}:{line}" if line else str(p)
        raise OmdpError(f"{where}: not valid JSON ({exc})", "see docs/instance-format.md") from None
    return instance_from_dict(data, where=str(p))


def instance_from_dict(data: Any, where: str = "instance") -> Instance:
    """Build an instance from the documented JSON structure."""
    r = _Reader(where)
    if not isinstance(data, dict):
        raise r.error("", "the file must hold a JSON object", "see docs/instance-format.md")
    kind = data.get("kind")
    if kind is None:
        kind = "segment" if "candidates" in data else "layer" if "transfer_ms" in data else None
    if kind == "segment":
        return _segment_from_dict(data, r)
    if kind == "layer":
        return _layer_from_dict(data, r)
    raise r.error("kind", f"must be 'segment' or 'layer', got {kind!r}", 'set "kind"')


class _Reader:
    """Field readers that turn every mistake into one OmdpError naming file and field."""

    def __init__(self, where: str):
        self.where = where

    def error(self, field: str, problem: str, fix: str | None = None) -> OmdpError:
        at = f"{self.where}: field '{field}'" if field else self.where
        return OmdpError(f"{at} {problem}", fix or "see docs/instance-format.md")

    def get(self, data: dict, field: str, path: str | None = None) -> Any:
        if field not in data:
            raise self.error(path or field, "is missing", "see docs/instance-format.md")
        return data[field]

    def number(self, value: Any, field: str, *, positive: bool = False, allow_null: bool = False):
        if value is None and allow_null:
            return math.inf
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
            need = "a number > 0" if positive else "a number >= 0"
            fix = f"write {need}" + (" or null" if allow_null else "")
            raise self.error(field, f"must be {need}, got {value!r}", fix)
        return float(value)

    def numbers(self, value: Any, field: str, length: int | None = None, allow_null: bool = False):
        if not isinstance(value, list):
            raise self.error(field, f"must be a list of numbers, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise self.error(field, f"must have {length} values, got {len(value)}")
        return np.array(
            [self.number(v, f"{field}[{i}]", allow_null=allow_null) for i, v in enumerate(value)]
        )

    def device(self, value: Any, devices: tuple[str, ...], field: str) -> int:
        if value not in devices:
            raise self.error(
                field, f"names unknown device {value!r}", f"use one of {list(devices)}"
            )
        return devices.index(value)

    def devices(self, data: dict) -> tuple[str, ...]:
        devs = self.get(data, "devices")
        if (
            not isinstance(devs, list)
            or not devs
            or not all(isinstance(d, str) and d for d in devs)
        ):
            raise self.error("devices", "must be a non-empty list of device names")
        if len(set(devs)) != len(devs):
            raise self.error("devices", f"repeats a name: {devs}")
        names = link_names(devs)
        if len(set(names)) != len(names):
            raise self.error("devices", f"gives ambiguous link names {list(names)}")
        return tuple(devs)

    def segment_table(self, value: Any, field: str, cand: np.ndarray, devices: tuple[str, ...]):
        """A (D, M, M) table from per-device tables, or one table shared by all devices."""
        if isinstance(value, dict) and value and all(k in devices for k in value):
            out = np.full((len(devices), len(cand), len(cand)), np.inf)
            for k, v in value.items():
                out[devices.index(k)] = self.one_table(v, f"{field}.{k}", cand)
            return out
        return self.one_table(value, field, cand)

    def one_table(self, value: Any, field: str, cand: np.ndarray) -> np.ndarray:
        m = len(cand)
        out = np.full((m, m), np.inf)
        index = {int(c): i for i, c in enumerate(cand)}
        if isinstance(value, list):
            if len(value) != m or not all(isinstance(row, list) and len(row) == m for row in value):
                raise self.error(field, f"must be a {m} x {m} matrix (candidates x candidates)")
            for i, row in enumerate(value):
                for j, v in enumerate(row):
                    if j > i:
                        out[i, j] = self.number(v, f"{field}[{i}][{j}]", allow_null=True)
            return out
        if not isinstance(value, dict):
            raise self.error(field, 'must be a matrix or an object {"a:b": value}')
        for key, v in value.items():
            parts = key.split(":") if isinstance(key, str) else []
            try:
                a, b = (int(x) for x in parts)
            except ValueError:
                raise self.error(f"{field}.{key}", "is not a segment key 'a:b'") from None
            if a not in index or b not in index or a >= b:
                raise self.error(
                    f"{field}.{key}",
                    "is not a segment [a, b) between candidate positions with a < b",
                    f"candidates are {cand.tolist()}",
                )
            out[index[a], index[b]] = self.number(v, f"{field}.{key}", allow_null=True)
        return out


def _segment_from_dict(data: dict, r: _Reader) -> SegmentInstance:
    devices = r.devices(data)
    d = len(devices)
    raw_c = r.get(data, "candidates")
    if not isinstance(raw_c, list) or len(raw_c) < 2:
        raise r.error("candidates", "must be a list of at least two positions (0 and N)")
    for i, v in enumerate(raw_c):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise r.error(f"candidates[{i}]", f"must be a position (integer >= 0), got {v!r}")
    cand = np.array(raw_c, dtype=np.int64)
    if cand[0] != 0 or np.any(np.diff(cand) <= 0):
        raise r.error("candidates", "must increase strictly and start at 0 (the last one is N)")
    cut = r.numbers(r.get(data, "cut_bytes"), "cut_bytes", len(cand))
    links = data.get("links", {})
    names = link_names(devices)
    if not isinstance(links, dict):
        raise r.error("links", 'must be an object {"a-b": {"bandwidth_mbps": ...}}')
    for name in links:
        if name not in names:
            raise r.error(
                f"links.{name}", "is not a link of this chain", f"valid links: {', '.join(names)}"
            )
    bw, lat = np.zeros(d - 1), np.zeros(d - 1)
    for i, name in enumerate(names):
        spec = r.get(links, name, f"links.{name}")
        if not isinstance(spec, dict):
            raise r.error(f"links.{name}", "must be an object with bandwidth_mbps and latency_ms")
        bw[i] = r.number(
            r.get(spec, "bandwidth_mbps", f"links.{name}.bandwidth_mbps"),
            f"links.{name}.bandwidth_mbps",
            positive=True,
        )
        lat[i] = r.number(spec.get("latency_ms", 0.0), f"links.{name}.latency_ms")
    source = r.device(data.get("source", devices[0]), devices, "source")
    sink = data.get("sink")
    sink = None if sink is None else r.device(sink, devices, "sink")
    compute = r.get(data, "compute_ms")
    if not isinstance(compute, dict):
        raise r.error("compute_ms", "must be an object {device: table}")
    table = np.full((d, len(cand), len(cand)), np.inf)
    for k, v in compute.items():
        table[r.device(k, devices, f"compute_ms.{k}")] = r.one_table(v, f"compute_ms.{k}", cand)
    est = None
    for field in ("estimated_ms", "estimated_node_ms"):
        if field in data and not isinstance(data[field], dict):
            raise r.error(field, "must be an object {device: ...}")
    if "estimated_ms" in data:
        est = np.full_like(table, np.inf)
        for k, v in data["estimated_ms"].items():
            est[r.device(k, devices, f"estimated_ms.{k}")] = r.one_table(
                v, f"estimated_ms.{k}", cand
            )
    elif "estimated_node_ms" in data:
        est = np.full_like(table, np.inf)
        n = int(cand[-1])
        for k, v in data["estimated_node_ms"].items():
            times = r.numbers(v, f"estimated_node_ms.{k}", n)
            pre = np.concatenate([[0.0], np.cumsum(times)])[cand]
            est[r.device(k, devices, f"estimated_node_ms.{k}")] = pre[None, :] - pre[:, None]
    memory = _memory_from_dict(data["memory"], r, cand, devices) if "memory" in data else None
    return SegmentInstance(devices, cand, cut, table, bw, lat, source, sink, est, memory)


def _memory_from_dict(mem: Any, r: _Reader, cand: np.ndarray, devices: tuple[str, ...]) -> Memory:
    if not isinstance(mem, dict):
        raise r.error("memory", "must be an object")
    limits = r.get(mem, "limit_bytes", "memory.limit_bytes")
    if not isinstance(limits, dict):
        raise r.error("memory.limit_bytes", "must be an object {device: bytes or null}")
    lim = np.full(len(devices), np.inf)
    for k, v in limits.items():
        lim[r.device(k, devices, f"memory.limit_bytes.{k}")] = r.number(
            v, f"memory.limit_bytes.{k}", allow_null=True
        )
    if "node_weight_bytes" in mem or "position_activation_bytes" in mem:
        n = int(cand[-1])
        w = r.numbers(
            r.get(mem, "node_weight_bytes", "memory.node_weight_bytes"),
            "memory.node_weight_bytes",
            n,
        )
        act = r.numbers(
            r.get(mem, "position_activation_bytes", "memory.position_activation_bytes"),
            "memory.position_activation_bytes",
            n + 1,
        )
        return Memory.from_positions(lim, cand, w, act)
    wb = r.segment_table(
        r.get(mem, "weight_bytes", "memory.weight_bytes"), "memory.weight_bytes", cand, devices
    )
    ab = r.segment_table(
        r.get(mem, "peak_activation_bytes", "memory.peak_activation_bytes"),
        "memory.peak_activation_bytes",
        cand,
        devices,
    )
    return Memory(lim, wb, ab)


def _layer_from_dict(data: dict, r: _Reader) -> LayerInstance:
    devices = r.devices(data)
    d = len(devices)
    comp_raw = r.get(data, "compute_ms")
    if not isinstance(comp_raw, list) or not comp_raw:
        raise r.error("compute_ms", "must be a list with one row of device times per layer")
    comp = np.array(
        [r.numbers(row, f"compute_ms[{i}]", d, allow_null=True) for i, row in enumerate(comp_raw)]
    )
    n = len(comp)
    tr_raw = r.get(data, "transfer_ms")
    if not isinstance(tr_raw, list) or len(tr_raw) != n + 1:
        raise r.error("transfer_ms", f"must hold {n + 1} device x device matrices (positions 0..N)")
    tr = np.zeros((n + 1, d, d))
    for p, mat in enumerate(tr_raw):
        if not isinstance(mat, list) or len(mat) != d:
            raise r.error(f"transfer_ms[{p}]", f"must be a {d} x {d} matrix")
        for a, row in enumerate(mat):
            tr[p, a] = r.numbers(row, f"transfer_ms[{p}][{a}]", d, allow_null=True)
    source = r.device(data.get("source", devices[0]), devices, "source")
    sink = data.get("sink")
    sink = None if sink is None else r.device(sink, devices, "sink")
    return LayerInstance(devices, comp, tr, source, sink)


def instance_to_dict(inst: Instance) -> dict[str, Any]:
    """The JSON structure of an instance (matrix form), e.g. to save a generated one."""

    def table(t: np.ndarray) -> list:
        return [[None if not math.isfinite(v) else float(v) for v in row] for row in t]

    if isinstance(inst, LayerInstance):
        return {
            "kind": "layer",
            "devices": list(inst.devices),
            "compute_ms": table(inst.compute_ms),
            "transfer_ms": [table(m) for m in inst.transfer_ms],
            "source": inst.devices[inst.source],
            "sink": None if inst.sink is None else inst.devices[inst.sink],
        }
    out: dict[str, Any] = {
        "kind": "segment",
        "devices": list(inst.devices),
        "candidates": inst.candidates.tolist(),
        "cut_bytes": inst.cut_bytes.tolist(),
        "links": {
            name: {"bandwidth_mbps": float(b), "latency_ms": float(lat)}
            for name, b, lat in zip(
                inst.link_names, inst.bandwidth_mbps, inst.latency_ms, strict=True
            )
        },
        "source": inst.devices[inst.source],
        "sink": None if inst.sink is None else inst.devices[inst.sink],
        "compute_ms": {dev: table(inst.compute_ms[d]) for d, dev in enumerate(inst.devices)},
    }
    if inst.estimated_ms is not None:
        out["estimated_ms"] = {
            dev: table(inst.estimated_ms[d]) for d, dev in enumerate(inst.devices)
        }
    if inst.memory is not None:
        mem = inst.memory
        out["memory"] = {
            "limit_bytes": {
                dev: None if not math.isfinite(v) else float(v)
                for dev, v in zip(inst.devices, mem.limit_bytes, strict=True)
            },
            "weight_bytes": {dev: table(mem.weight_bytes[d]) for d, dev in enumerate(inst.devices)},
            "peak_activation_bytes": {
                dev: table(mem.activation_bytes[d]) for d, dev in enumerate(inst.devices)
            },
        }
    return out
