"""Segments written as ONNX files on the lab side (`omdp extract`, `export --with-models`).

Each segment is checked by the full `onnx.checker` before anything is written, so no
command writes a model the checker would refuse, and is then written whole or not at all
through `backend.files`. Big weights are never read into memory: the checker sees them as
typed inputs, and the file gets them copied from the source model by the kernel.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

import onnx
from onnx import GraphProto, ModelProto

from backend.device import segments
from backend.device.segments import GraphIndex
from backend.errors import OmdpError
from backend.files import atomic_open
from backend.model.checks import CHECKER_ERRORS, checker_message
from backend.text import inert, shown

Piece = bytes | tuple[int, int]


def segment_pieces(index: GraphIndex, a: int, b: int) -> list[Piece]:
    """Segment [a, b) as serialised pieces (see `GraphIndex.segment_parts`), after checking
    that the file they make passes onnx.checker."""
    where = f"segment [{a}, {b})"
    if not 0 <= a <= b <= index.n:
        raise OmdpError(
            f"{where} is not within positions 0..{index.n}", "give 0 <= FROM <= TO <= N"
        )
    try:
        pieces = index.segment_parts(a, b)
    except ValueError as exc:
        raise OmdpError(
            f"cannot write {where}: {inert(str(exc))[:300]}",
            "choose other positions (see `omdp cuts MODEL`)",
        ) from None
    size = sum(_length(p) for p in pieces)
    if size > segments.PROTOBUF_LIMIT:
        raise OmdpError(
            f"{where} is {size / 2**30:.2f} GiB, over the 2 GiB a single ONNX file can hold",
            "extract a shorter range",
        )
    stub = _checker_stub(index, pieces)
    for kind, values in (("input", stub.graph.input), ("output", stub.graph.output)):
        for vi in values:
            if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape"):
                raise OmdpError(
                    f"cannot write {where}: the shape of its {kind} "
                    f"{shown(vi.name)} is unknown (shape inference cannot reach "
                    "it), so onnx.checker would refuse the file",
                    "choose positions whose tensors have known shapes (see `omdp cuts MODEL`)",
                )
    try:
        onnx.checker.check_model(stub, full_check=True)
    except CHECKER_ERRORS as exc:
        raise OmdpError(
            f"cannot write {where}: onnx.checker refuses it: {checker_message(exc)}",
            "choose other positions, or repair the model",
        ) from None
    return pieces


def _length(piece: Piece) -> int:
    return len(piece) if isinstance(piece, bytes) else piece[1] - piece[0]


def _checker_stub(index: GraphIndex, pieces: list[Piece]) -> ModelProto:
    """The segment as `pieces` describe it, with each weight left in the source file
    turned into a typed input (its header is all the checker needs)."""
    head, graph_head, *weights = pieces
    assert isinstance(head, bytes) and isinstance(graph_head, bytes)
    graph_len = sum(_length(p) for p in pieces[1:])
    framing = 1 + max(1, (graph_len.bit_length() + 6) // 7)  # graph key and length varint
    model = ModelProto.FromString(head[: len(head) - framing])
    graph = GraphProto.FromString(graph_head)
    in_file = {span: name for name, span in index.lazy.fields.items()} if index.lazy else {}
    for piece in weights:
        if isinstance(piece, bytes):
            graph.MergeFromString(piece)  # one serialised `initializer` field
        else:
            t = index.initializers[in_file[piece]]
            graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    model.graph.CopyFrom(graph)
    return model


def write_segment(index: GraphIndex, a: int, b: int, path: str | os.PathLike[str]) -> int:
    """Check segment [a, b) and write it to `path`, whole or not at all; returns bytes."""
    pieces = segment_pieces(index, a, b)
    source = index.lazy.path if index.lazy is not None else None
    with atomic_open(path) as out:
        write_pieces(out, pieces, source)
    return sum(_length(p) for p in pieces)


def write_pieces(out: BinaryIO, pieces: list[Piece], source: str | None) -> None:
    """Write checked pieces (`segment_pieces`) to an open file: bytes as they are, and
    (start, end) ranges of `source` copied in the kernel (not through memory) where the
    platform can."""
    if source is None:
        for piece in pieces:
            assert isinstance(piece, bytes)
            out.write(piece)
        return
    with open(source, "rb") as src:
        for piece in pieces:
            if isinstance(piece, bytes):
                out.write(piece)
                continue
            out.flush()
            start, end = piece
            _copy_range(src, out, start, end)


def _copy_range(src: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    offset = start
    if hasattr(os, "copy_file_range"):
        try:
            while offset < end:
                done = os.copy_file_range(src.fileno(), out.fileno(), end - offset, offset)
                if done == 0:
                    raise OSError(errno.EIO, "the source model is shorter than its index says")
                offset += done
            return
        except OSError as exc:
            if offset != start or exc.errno not in _NO_KERNEL_COPY:
                raise
    src.seek(offset)  # no copy in the kernel between these filesystems: through memory
    while offset < end:
        chunk = src.read(min(end - offset, 1 << 24))
        if not chunk:
            raise OSError(errno.EIO, "the source model is shorter than its index says")
        out.write(chunk)
        offset += len(chunk)


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


def check_not_source(output: Path, source: Path | None) -> None:
    """Refuse to write over the model being read."""
    if source is not None and output.exists() and os.path.samefile(output, source):
        raise OmdpError(
            f"cannot write {output}: it is the model being read",
            "write the segment to another file",
        )
