"""Segments mode: the lab cuts a job's segments for a device that cannot (no onnx, or an
onnx too old to prepare the model exactly as the lab does).

The cutting is the device package's own (`segments.prepare`, `segment_bytes`), so a
segment is byte for byte what an agent in model mode would have cut; each is put in the
lab's model cache under its content hash, from where transports upload it once. Inputs
are described by name, shape and type, so the agent makes the same seeded values.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from backend.device import segments
from backend.device.protocol import Hello, Job, Part, ProtocolError, TensorInfo, decode
from backend.device.runtimes import tensor_spec
from backend.errors import OmdpError
from backend.remote.models import put_model


def cut_parts(model_path: str | os.PathLike[str], job: Job, cache: Path) -> list[Part]:
    """One Part per distinct segment of the job, its file written to `cache` (0600, by
    hash; an existing verified file is kept). Each part's `path` is that file."""
    model, lazy = segments.load_lazy(str(model_path))
    index = segments.prepare(model, job.input_shapes, lazy)
    cuts = index.all_crossings()
    parts = []
    for a, b in dict.fromkeys(job.items):
        data = index.segment_bytes(a, b, inputs=cuts[a], outputs=cuts[b])
        path, sha = put_model(data, cache)
        inputs = []
        for name in cuts[a]:
            spec = tensor_spec(index.value_info[name])
            inputs.append(TensorInfo(name, list(spec.shape), spec.elem_type))
        parts.append(Part((a, b), sha, inputs, str(path)))
    return parts


def hello_mode(line: str) -> str | None:
    """The mode a hello line announces (None: not a valid hello; the conversation will
    say what is wrong with it)."""
    try:
        event = decode(line)
    except ProtocolError:
        return None
    return event.mode if isinstance(event, Hello) else None


async def segments_job(job: Job, cache: Path) -> Job:
    """The job with its segments cut here and put in `cache` (segments mode)."""
    if not job.model_path:
        raise OmdpError(
            "the device runs segments the lab cuts, but the job names no model file",
            "profile from a session whose model file is at hand",
        )
    try:
        parts = await asyncio.to_thread(cut_parts, job.model_path, job, cache)
    except (OSError, ValueError) as exc:
        raise OmdpError(
            f"cannot cut the segments for a device without onnx: {exc}", "check the model file"
        ) from None
    return replace(job, parts=parts)
