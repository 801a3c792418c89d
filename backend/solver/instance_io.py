"""Instance files (JSON, docs/instance-format.md): read with every mistake named, written back.

Reading never trusts sizes: the file's size, its nesting depth and the tables it implies
(devices x candidates x candidates) are checked against stated limits before anything
big is allocated, and every problem is one `OmdpError` naming the file and the field.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from backend.chain import device_name_problem, link_names, shared_link_name
from backend.errors import OmdpError
from backend.files import read_text
from backend.solver.costs import (
    Instance,
    LayerInstance,
    Memory,
    SegmentInstance,
    check_layer_size,
    check_table_size,
)

MAX_FILE_BYTES = 32 << 20  # an instance of the largest allowed tables, in sparse form
MAX_DEVICES = 256
MAX_POSITION = 2**31 - 1  # positions count a model's nodes (ONNX files stop at 2 GiB)
SEGMENT_FIELDS = (
    "kind", "devices", "candidates", "cut_bytes", "links", "source", "sink", "compute_ms",
    "estimated_ms", "estimated_node_ms", "memory",
)  # fmt: skip
LAYER_FIELDS = ("kind", "devices", "compute_ms", "transfer_ms", "source", "sink")
LINK_FIELDS = ("bandwidth_mbps", "latency_ms")
MEMORY_FIELDS = (
    "limit_bytes", "node_weight_bytes", "position_activation_bytes", "weight_bytes",
    "peak_activation_bytes",
)  # fmt: skip


def load_instance(path: str | Path) -> Instance:
    """Read an instance file; every problem is an OmdpError naming the file and the field."""
    p = Path(path)
    text = read_text(
        p, "instance file", MAX_FILE_BYTES, "give a JSON instance file (docs/instance-format.md)"
    )
    try:
        data = json.loads(text, object_pairs_hook=_no_repeated_keys)
    except RecursionError:
        raise OmdpError(
            f"{p}: the JSON nests deeper than any instance does", "see docs/instance-format.md"
        ) from None
    except ValueError as exc:  # JSONDecodeError, a repeated key, a number of 4300+ digits
        line = getattr(exc, "lineno", None)
        where = f"{p}:{line}" if line else str(p)
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise OmdpError(f"{where}: not valid JSON ({msg})", "see docs/instance-format.md") from None
    return instance_from_dict(data, where=str(p))


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {_show(key)} appears twice in one object")
        out[key] = value
    return out


def _show(value: Any, width: int = 60) -> str:
    """A value from the file for a one-line message: quoted, escaped, long values cut;
    lists and objects by their size (they can be big and deep)."""
    if isinstance(value, list):
        return f"a list of {len(value)} values"
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _key(key: Any) -> str:
    """A key from the file as part of a field path: as is when plain, else quoted."""
    plain = isinstance(key, str) and key.isprintable() and len(key) <= 60
    return key if plain else _show(key)


def instance_from_dict(data: Any, where: str = "instance") -> Instance:
    """Build an instance from the documented JSON structure."""
    r = _Reader(where)
    if not isinstance(data, dict):
        raise r.error("", "the file must hold a JSON object", "see docs/instance-format.md")
    kind = data.get("kind")
    if kind is None:
        kind = "segment" if "candidates" in data else "layer" if "transfer_ms" in data else None
    if kind == "segment":
        r.known(data, "", SEGMENT_FIELDS)
        return _segment_from_dict(data, r)
    if kind == "layer":
        r.known(data, "", LAYER_FIELDS)
        return _layer_from_dict(data, r)
    raise r.error("kind", f"must be 'segment' or 'layer', got {_show(kind)}", 'set "kind"')


class _Reader:
    """Field readers that turn every mistake into one OmdpError naming file and field."""

    def __init__(self, where: str):
        self.where = where

    def error(self, field: str, problem: str, fix: str | None = None) -> OmdpError:
        at = f"{self.where}: field '{field}'" if field else self.where
        return OmdpError(f"{at} {problem}", fix or "see docs/instance-format.md")

    def known(self, data: dict, path: str, fields: tuple[str, ...]) -> None:
        """Every key of `data` is one of `fields` (a typo would otherwise be ignored)."""
        for key in data:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(fields)}"
                field = f"{path}.{_key(key)}" if path else _key(key)
                raise self.error(field, "is not a field of an instance", hint)

    def get(self, data: dict, field: str, path: str | None = None) -> Any:
        if field not in data:
            raise self.error(path or field, "is missing", "see docs/instance-format.md")
        return data[field]

    def number(
        self, value: Any, field: str, *, positive: bool = False, allow_null: bool = False
    ) -> float:
        if value is None and allow_null:
            return math.inf
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            x = float(value) if ok else math.nan
        except OverflowError:  # an integer beyond any float
            x = math.inf
        if not math.isfinite(x) or x < 0 or (positive and x == 0):
            need = "a number > 0" if positive else "a number >= 0"
            fix = f"write {need}" + (" or null" if allow_null else "")
            raise self.error(field, f"must be {need}, got {_show(value)}", fix)
        return x

    def numbers(
        self, value: Any, field: str, length: int | None = None, allow_null: bool = False
    ) -> np.ndarray:
        if not isinstance(value, list):
            raise self.error(field, f"must be a list of numbers, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise self.error(field, f"must have {length} values, got {len(value)}")
        return np.array(
            [self.number(v, f"{field}[{i}]", allow_null=allow_null) for i, v in enumerate(value)]
        )

    def device(self, value: Any, devices: tuple[str, ...], field: str) -> int:
        if not isinstance(value, str) or value not in devices:
            raise self.error(
                field, f"names unknown device {_show(value)}", f"use one of {', '.join(devices)}"
            )
        return devices.index(value)

    def devices(self, data: dict) -> tuple[str, ...]:
        devs = self.get(data, "devices")
        if not isinstance(devs, list) or not devs or not all(isinstance(d, str) for d in devs):
            raise self.error("devices", "must be a non-empty list of device names")
        if len(devs) > MAX_DEVICES:
            raise self.error("devices", f"lists {len(devs):,} devices; the limit is {MAX_DEVICES}")
        for i, name in enumerate(devs):
            problem = device_name_problem(name)
            if problem is not None or name != name.strip():
                raise self.error(f"devices[{i}]", f"{_show(name)} {problem or 'has spaces around'}")
        repeated = next((d for i, d in enumerate(devs) if d in devs[:i]), None)
        if repeated is not None:
            raise self.error("devices", f"repeats the name {_show(repeated)}")
        shared = shared_link_name(devs)
        if shared is not None:
            name, i, j = shared
            raise self.error(
                "devices",
                f"gives two links the name {_show(name)} ({devs[i]} → {devs[i + 1]} and "
                f"{devs[j]} → {devs[j + 1]})",
                "rename a device so that link names differ (e.g. '_' instead of '-')",
            )
        return tuple(devs)

    def segment_table(self, value: Any, field: str, cand: np.ndarray, devices: tuple[str, ...]):
        """A (D, M, M) table from per-device tables, or one table shared by all devices."""
        if isinstance(value, dict) and value and all(k in devices for k in value):
            out = np.full((len(devices), len(cand), len(cand)), np.inf)
            for k, v in value.items():
                out[devices.index(k)] = self.one_table(v, f"{field}.{_key(k)}", cand)
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
            at = f"{field}.{_key(key)}"
            parts = key.split(":")
            try:
                a, b = (int(x) for x in parts)
            except ValueError:
                raise self.error(at, "is not a segment key 'a:b'") from None
            if a not in index or b not in index or a >= b:
                shown = cand.tolist() if m <= 20 else f"{cand[:10].tolist()}... ({m} in all)"
                raise self.error(
                    at,
                    "is not a segment [a, b) between candidate positions with a < b",
                    f"candidates are {shown}",
                )
            out[index[a], index[b]] = self.number(v, at, allow_null=True)
        return out


def _segment_from_dict(data: dict, r: _Reader) -> SegmentInstance:
    devices = r.devices(data)
    d = len(devices)
    cand = _candidates(r.get(data, "candidates"), r)
    check_table_size(d, len(cand), f"{r.where}")
    cut = r.numbers(r.get(data, "cut_bytes"), "cut_bytes", len(cand))
    bw, lat = _links(r.get(data, "links") if d > 1 else data.get("links", {}), devices, r)
    source = r.device(data.get("source", devices[0]), devices, "source")
    sink = data.get("sink")
    sink = None if sink is None else r.device(sink, devices, "sink")
    table = _device_tables(r.get(data, "compute_ms"), "compute_ms", cand, devices, r)
    if "estimated_ms" in data and "estimated_node_ms" in data:
        raise r.error("estimated_node_ms", "and 'estimated_ms' are both given", "keep one")
    est = layer = None
    if "estimated_ms" in data:
        est = _device_tables(data["estimated_ms"], "estimated_ms", cand, devices, r)
    elif "estimated_node_ms" in data:
        per_node = data["estimated_node_ms"]
        if not isinstance(per_node, dict):
            raise r.error("estimated_node_ms", "must be an object {device: [ms per node]}")
        est = np.full_like(table, np.inf)
        n = int(cand[-1])
        for k, v in per_node.items():
            at = f"estimated_node_ms.{_key(k)}"
            index = r.device(k, devices, at)
            pre = np.concatenate([[0.0], np.cumsum(r.numbers(v, at, n))])[cand]
            est[index] = pre[None, :] - pre[:, None]
        layer = est  # per-node sums: the file's estimate is a layer sum
    memory = _memory_from_dict(data["memory"], r, cand, devices) if "memory" in data else None
    return SegmentInstance(devices, cand, cut, table, bw, lat, source, sink, est, memory, layer)


def _candidates(raw: Any, r: _Reader) -> np.ndarray:
    """Positions 0 = c_0 < c_1 < ... < c_{M-1} = N, each a whole number up to MAX_POSITION."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise r.error("candidates", "must be a list of at least two positions (0 and N)")
    for i, v in enumerate(raw):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_POSITION:
            raise r.error(
                f"candidates[{i}]",
                f"must be a position (a whole number from 0 to {MAX_POSITION:,}), got {_show(v)}",
            )
    cand = np.array(raw, dtype=np.int64)
    if cand[0] != 0 or np.any(np.diff(cand) <= 0):
        raise r.error("candidates", "must increase strictly and start at 0 (the last one is N)")
    return cand


def _links(links: Any, devices: tuple[str, ...], r: _Reader) -> tuple[np.ndarray, np.ndarray]:
    """(bandwidth_mbps, latency_ms) per link from {"a-b": {"bandwidth_mbps": ..}, ..}."""
    names = link_names(devices)
    if not isinstance(links, dict):
        raise r.error("links", 'must be an object {"a-b": {"bandwidth_mbps": ...}}')
    for name in links:
        if name not in names:
            raise r.error(
                f"links.{_key(name)}",
                "is not a link of this chain",
                f"valid links: {', '.join(names) or '(none: one device has no links)'}",
            )
    bw, lat = np.zeros(len(names)), np.zeros(len(names))
    for i, name in enumerate(names):
        spec = r.get(links, name, f"links.{name}")
        if not isinstance(spec, dict):
            raise r.error(f"links.{name}", "must be an object with bandwidth_mbps and latency_ms")
        r.known(spec, f"links.{name}", LINK_FIELDS)
        bw[i] = r.number(
            r.get(spec, "bandwidth_mbps", f"links.{name}.bandwidth_mbps"),
            f"links.{name}.bandwidth_mbps",
            positive=True,
        )
        lat[i] = r.number(spec.get("latency_ms", 0.0), f"links.{name}.latency_ms")
    return bw, lat


def _device_tables(
    value: Any, field: str, cand: np.ndarray, devices: tuple[str, ...], r: _Reader
) -> np.ndarray:
    """{device: segment table} as a (D, M, M) array, inf where a device has no entry."""
    if not isinstance(value, dict):
        raise r.error(field, "must be an object {device: table}")
    table = np.full((len(devices), len(cand), len(cand)), np.inf)
    for k, v in value.items():
        at = f"{field}.{_key(k)}"
        table[r.device(k, devices, at)] = r.one_table(v, at, cand)
    return table


def _memory_from_dict(mem: Any, r: _Reader, cand: np.ndarray, devices: tuple[str, ...]) -> Memory:
    if not isinstance(mem, dict):
        raise r.error("memory", "must be an object")
    r.known(mem, "memory", MEMORY_FIELDS)
    limits = r.get(mem, "limit_bytes", "memory.limit_bytes")
    if not isinstance(limits, dict):
        raise r.error("memory.limit_bytes", "must be an object {device: bytes or null}")
    lim = np.full(len(devices), np.inf)
    for k, v in limits.items():
        at = f"memory.limit_bytes.{_key(k)}"
        lim[r.device(k, devices, at)] = r.number(v, at, allow_null=True)
    per_position = "node_weight_bytes" in mem or "position_activation_bytes" in mem
    if per_position and ("weight_bytes" in mem or "peak_activation_bytes" in mem):
        raise r.error(
            "memory", "gives needs both per node and per segment", "keep one of the two forms"
        )
    if per_position:
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
    check_layer_size(len(comp_raw), d, r.where)
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
    measured = inst.compute_ms  # without the estimates standing in for measurements
    if inst.stand_in is not None:
        measured = np.where(inst.stand_in, np.inf, measured)
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
        "compute_ms": {dev: table(measured[d]) for d, dev in enumerate(inst.devices)},
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
