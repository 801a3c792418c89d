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

from backend.device import nodes, segments
from backend.device.protocol import Hello, Job, Part, ProtocolError, TensorInfo, decode
from backend.device.runtimes import tensor_spec
from backend.errors import OmdpError
from backend.remote.models import put_model


def cut_parts(model_path: str | os.PathLike[str], job: Job, cache: Path) -> Job:
    """The job with one Part per distinct segment (and, when it asks for per-node times,
    the whole model with its nodes renamed for profiling and each tensor's producer),
    each file written to `cache` (0600, by hash; a verified file is kept) and named by
    the part's `path`."""
    model, lazy = segments.load_lazy(str(model_path))
    index = segments.prepare(model, job.input_shapes, lazy)
    cuts = index.all_crossings()

    def part(a: int, b: int, data: bytes) -> Part:
        path, sha = put_model(data, cache)
        inputs = []
        for name in cuts[a]:
            spec = tensor_spec(index.value_info[name])
            inputs.append(TensorInfo(name, list(spec.shape), spec.elem_type))
        return Part((a, b), sha, inputs, str(path))

    parts = [
        part(a, b, index.segment_bytes(a, b, inputs=cuts[a], outputs=cuts[b]))
        for a, b in dict.fromkeys(job.items)
    ]
    if job.node_times_runs <= 0:
        return replace(job, parts=parts)
    n = index.n
    positions = index.segment_nodes(0, n, cuts[n])
    whole = nodes.renamed_for_profiling(index.extract(0, n), positions)
    producers = {o: p for p, node in enumerate(index.nodes) for o in node.output if o}
    return replace(
        job,
        parts=parts,
        profile_part=part(0, n, whole.SerializeToString()),
        producers=producers,
    )


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
        return await asyncio.to_thread(cut_parts, job.model_path, job, cache)
    except (OSError, ValueError) as exc:
        raise OmdpError(
            f"cannot cut the segments for a device without onnx: {exc}", "check the model file"
        ) from None
