"""What a device's stack can run, judged on the lab from the versions its probe reports:
the mode its agent will use, stacks older than the oldest supported, and ONNX opsets or
IR versions newer than its onnxruntime reads (which fail only when the job loads).
"""

from __future__ import annotations

import re

from backend.device.probe import OLDEST_SUPPORTED

# onnxruntime release -> (newest ONNX opset, newest IR version) it runs, from its
# versioning table; a release newer than the last row is assumed to run what the lab makes.
ORT_LIMITS: dict[tuple[int, int], tuple[int, int]] = {
    (1, 10): (15, 8),
    (1, 11): (15, 8),
    (1, 12): (17, 8),
    (1, 13): (17, 8),
    (1, 14): (18, 8),
    (1, 15): (19, 9),
    (1, 16): (19, 9),
    (1, 17): (20, 9),
    (1, 18): (21, 10),
    (1, 19): (21, 10),
    (1, 20): (21, 10),
}
MODEL_MODE_ONNX = (1, 13)  # onnx.reference, which the agent's model preparation needs


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """(major, minor, ...) of a version text ("1.12.1", "2022.3.0-9052-…"); None if none."""
    if not text:
        return None
    m = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if m is None:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def agent_mode(onnx_version: str | None) -> tuple[str, str]:
    """The mode the agent will use with this onnx, and why in words."""
    if onnx_version == "?":  # installed under a distribution name the probe does not know
        return "model", "onnx of unknown version: the agent says at start if it cannot cut"
    v = version_tuple(onnx_version)
    if v is None:
        return "segments", "no onnx: the lab cuts each segment and uploads it once"
    if v[:2] < MODEL_MODE_ONNX:
        return "segments", (
            f"onnx {onnx_version} is older than {'.'.join(map(str, MODEL_MODE_ONNX))}: the lab "
            "cuts each segment and uploads it once"
        )
    return "model", "the agent cuts the segments from the model, uploaded once"


def too_old(packages: dict[str, str | None]) -> list[str]:
    """Each package older than the oldest supported stack, with its minimum (an old
    Python is not a note but a problem: the agent cannot run)."""
    found = packages
    lines = []
    for name, oldest in OLDEST_SUPPORTED.items():
        if name == "python":
            continue
        v = version_tuple(found.get(name))
        if v is not None and v[: len(oldest)] < oldest:
            lines.append(f"{name} {found[name]} < {'.'.join(map(str, oldest))}")
    return lines


def ort_limits(version: str | None) -> tuple[int, int] | None:
    """(newest opset, newest IR) this onnxruntime runs; None when not limited (or unknown)."""
    v = version_tuple(version)
    if v is None or len(v) < 2:
        return None
    release = (v[0], v[1])
    if release > max(ORT_LIMITS):
        return None
    return ORT_LIMITS.get(release) or ORT_LIMITS[min(ORT_LIMITS)]


def ort_upgrade_for(opset: int, ir: int) -> str | None:
    """The oldest onnxruntime in the table that runs this opset and IR version."""
    for release, (max_opset, max_ir) in sorted(ORT_LIMITS.items()):
        if opset <= max_opset and ir <= max_ir:
            return ".".join(map(str, release))
    return None


def opset_problem(version: str | None, opset: int, ir: int) -> str | None:
    """Why this onnxruntime cannot read a model of that opset and IR version, with the
    fix on the model's side (None: it can, or its limits are not known)."""
    limits = ort_limits(version)
    if limits is None or (opset <= limits[0] and ir <= limits[1]):
        return None
    return (
        f"the model is opset {opset}, IR {ir}; onnxruntime {version} there runs up to opset "
        f"{limits[0]}, IR {limits[1]} — export the model at opset <= {limits[0]} "
        f"(IR <= {limits[1]})"
    )
