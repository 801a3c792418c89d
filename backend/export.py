"""Chosen partitions as a versioned JSON document (schema in docs/export.md).

The document says everything a deployment needs without this tool: which model (by hash),
which device runs which nodes, what crosses each cut (names, shapes, dtypes, bytes), the
predicted times under both cost models, and the link conditions they assume.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend import __version__
from backend.errors import OmdpError
from backend.files import atomic_open, atomic_write, check_writable, os_error
from backend.model.analysis import ModelAnalysis
from backend.model.segment_files import Piece, segment_pieces, write_pieces
from backend.solver.ranking import Partition

SCHEMA = "omdp.partition"
SCHEMA_VERSION = 1


def build_export(
    analysis: ModelAnalysis,
    partitions: Sequence[Partition],
    *,
    devices: Sequence[dict[str, Any]],
    links: Sequence[dict[str, Any]],
    cost_model: str,
    objective: str,
    sink: str | None = None,
    model_path: str | None = None,
    sha256: str | None = None,
    builtin: str | None = None,
    validations: Mapping[tuple[int, ...], Sequence[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The export document for `partitions` (already ranked) of `analysis`'s model.
    `validations`: chained runs stored for a partition (by its positions p_0..p_D), added
    to it when there are any."""
    if not partitions:
        raise OmdpError("there is no partition to export", "rank partitions first")
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "omdp", "version": __version__},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "path": model_path
            if model_path is not None
            else (str(analysis.path) if analysis.path else None),
            "builtin": builtin,
            "sha256": sha256 or analysis.sha256,
            "nodes": analysis.n,
            "inputs": [t.as_dict() for t in analysis.inputs],
            "outputs": [t.as_dict() for t in analysis.outputs],
            "input_shapes": analysis.input_shapes,
        },
        "devices": [dict(d) for d in devices],
        "links": [dict(lk) for lk in links],
        "assumptions": {"cost_model": cost_model, "objective": objective, "sink": sink},
        "partitions": [_partition(analysis, p, validations or {}) for p in partitions],
    }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _partition(
    a: ModelAnalysis, p: Partition, validations: Mapping[tuple[int, ...], Sequence[dict[str, Any]]]
) -> dict[str, Any]:
    segments = []
    for s in p.stages:
        own = [i for i in range(s.start, s.end) if not a.nodes[i].static]
        segments.append(
            {
                "device": s.device,
                "start": s.start,
                "end": s.end,
                "nodes": len(own),
                "first_node": a.nodes[own[0]].name if own else None,
                "last_node": a.nodes[own[-1]].name if own else None,
                "compute_ms": _finite(s.compute_ms),
                "measured_ms": _finite(s.measured_ms),
                "estimated_ms": _finite(s.estimated_ms),
            }
        )
    cuts = []
    for t in p.transfers:
        cut = a.cuts[t.position]
        cuts.append(
            {
                "position": t.position,
                "link": t.link,
                "from": t.src,
                "to": t.dst,
                "after_node": a.nodes[t.position - 1].name if t.position > 0 else None,
                "before_node": a.nodes[t.position].name if t.position < a.n else None,
                "tensors": [a.tensors[name].as_dict() for name in cut.tensors],
                "bytes": cut.bytes,
                "transfer_ms": _finite(t.ms),
            }
        )
    out = {
        "rank": p.rank,
        "total_ms": _finite(p.total_ms),
        "latency_ms": _finite(p.latency_ms),
        "bottleneck": p.bottleneck,
        "predicted": {
            "measured_ms": _finite(p.measured_total_ms),
            "estimated_ms": _finite(p.estimated_total_ms),
        },
        "segments": segments,
        "cuts": cuts,
    }
    runs = validations.get((0, *p.cuts, a.n))
    if runs:
        out["validations"] = [dict(v) for v in runs]
    return out


def write_export(
    doc: dict[str, Any],
    path: str | os.PathLike,
    analysis: ModelAnalysis | None = None,
    with_models: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the document (validated first) and, with `with_models`, each non-empty
    segment of each partition as `<dir>/rank<R>_<device>_<start>_<end>.onnx`.

    Every destination is checked and every segment passes onnx.checker before the first
    byte is written; each file is written whole, and if one fails, the files this call
    wrote (and the folder it made) are removed again.
    """
    validate(doc, str(path))
    out = check_writable(path, "partition.json")
    planned: list[tuple[Path, list[Piece]]] = []
    folder = None
    if with_models is not None:
        if analysis is None:
            raise OmdpError("segment models need the model itself", "open the model first")
        folder = check_models_folder(with_models)
        for part in doc["partitions"]:
            for seg in part["segments"]:
                if seg["start"] == seg["end"]:
                    continue
                name = (
                    f"rank{part['rank']}_{_file_part(seg['device'])}_{seg['start']}_"
                    f"{seg['end']}.onnx"
                )
                planned.append(
                    (folder / name, segment_pieces(analysis.index, seg["start"], seg["end"]))
                )
                seg["file"] = str(folder / name)
        if out in {file for file, _ in planned}:
            raise OmdpError(
                f"cannot write {out}: a segment model has the same name",
                "write the JSON outside the models folder",
            )
    made = _make_folders(folder) if folder is not None else []
    written: list[Path] = []
    try:
        for file, pieces in planned:
            source = analysis.index.lazy.path if analysis and analysis.index.lazy else None
            with atomic_open(file) as f:
                write_pieces(f, pieces, source)
            written.append(file)
        atomic_write(out, json.dumps(doc, indent=2) + "\n")
    except BaseException:
        for file in written:
            with contextlib.suppress(OSError):
                file.unlink()
        for made_folder in reversed(made):
            with contextlib.suppress(OSError):
                made_folder.rmdir()
        raise
    return [out, *written]


def check_models_folder(path: str | os.PathLike) -> Path:
    """The folder for `--with-models`: an existing, writable folder, or one that can be
    made inside a writable folder."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OmdpError(
            f"--with-models {folder} is a file, not a folder",
            "give a folder for the segment models (it is made if missing)",
        )
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OmdpError(
            f"cannot make folder {folder}: {existing} is not a folder", "check the path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OmdpError(
            f"cannot write segment models in {folder}: {existing} is read-only",
            "choose a folder you can write to",
        )
    return folder


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; return the ones made, outermost first."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    for p in missing:
        try:
            p.mkdir()
        except OSError as exc:
            raise os_error(exc, p, "make folder") from None
    return missing


def _file_part(name: str) -> str:
    """A device name as part of a file name: path separators and oddities replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "_"


def read_export(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an exported document."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise OmdpError(f"no such file: {p}", "check the path") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OmdpError(f"{p} is not JSON ({exc})", "give a file written by `omdp export`") from exc
    validate(doc, str(p))
    return doc


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise OmdpError(f"{where}: {what}", "re-export it with `omdp export`")


def validate(doc: Any, where: str = "export") -> None:
    """Check the document against the schema: fields, types, and that each partition's
    segments tile 0..N in chain order with cuts inside the model."""
    _need(isinstance(doc, dict), where, "not a JSON object")
    _need(doc.get("schema") == SCHEMA, where, f"'schema' is not '{SCHEMA}'")
    version = doc.get("schema_version")
    _need(isinstance(version, int), where, "'schema_version' is missing")
    if version > SCHEMA_VERSION:
        raise OmdpError(
            f"{where}: schema version {version} is newer than this tool's ({SCHEMA_VERSION})",
            "upgrade omdp",
        )
    for key, kind in (
        ("tool", dict),
        ("created", str),
        ("model", dict),
        ("devices", list),
        ("links", list),
        ("assumptions", dict),
        ("partitions", list),
    ):
        _need(isinstance(doc.get(key), kind), where, f"'{key}' is missing or not a {kind.__name__}")
    model = doc["model"]
    n = model.get("nodes")
    _need(isinstance(n, int) and n >= 0, where, "'model.nodes' is not a count")
    _need(
        isinstance(model.get("sha256"), str) and len(model["sha256"]) == 64,
        where,
        "'model.sha256' is not a sha256 hex digest",
    )
    names = [d.get("name") for d in doc["devices"] if isinstance(d, dict)]
    _need(
        len(names) == len(doc["devices"]) and all(isinstance(x, str) for x in names),
        where,
        "each device needs a 'name'",
    )
    _need(len(doc["partitions"]) > 0, where, "no partitions")
    for k, part in enumerate(doc["partitions"]):
        at = f"{where}: partitions[{k}]"
        _need(isinstance(part, dict), at, "not an object")
        segs = part.get("segments")
        _need(
            isinstance(segs, list) and len(segs) == len(names), at, "needs one segment per device"
        )
        position = 0
        for seg, device in zip(segs, names, strict=True):
            _need(seg.get("device") == device, at, f"segment for '{device}' out of chain order")
            start, end = seg.get("start"), seg.get("end")
            _need(
                start == position and isinstance(end, int) and start <= end <= n,
                at,
                f"segment of '{device}' is [{start}, {end}), expected to start at {position}",
            )
            position = end
        _need(position == n, at, f"segments end at {position}, not at the model's end {n}")
        for cut in part.get("cuts", []):
            _need(
                isinstance(cut.get("position"), int) and 0 <= cut["position"] <= n,
                at,
                "a cut lies outside the model",
            )
            _need(isinstance(cut.get("tensors"), list), at, "a cut has no tensor list")
        runs = part.get("validations", [])
        _need(
            isinstance(runs, list) and all(isinstance(v, dict) for v in runs),
            at,
            "'validations' is not a list of objects",
        )
