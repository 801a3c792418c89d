"""Measuring chosen cells again: the noisy ones, the throttled ones, a device, a segment,
or one cell.

The chosen measurements move into the session's history (`Session.retire`: samples
kept, nothing deleted), so the next run's plan finds them missing and measures them
again — the same run the CLI (`omdp profile --remeasure`) and the TUI (`r` on the
Profile screen) start. A dry run chooses and says, on an in-memory copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.chain import Chain
from backend.errors import OmdpError
from backend.profiling import noise
from backend.profiling.plan import PlanItem
from backend.profiling.session import Session

KINDS = ("noisy", "throttled", "device", "segment", "cell")


@dataclass(frozen=True)
class Target:
    """What to measure again: `kind` is one of KINDS."""

    kind: str
    device: str | None = None
    segment: tuple[int, int] | None = None

    def describe(self) -> str:
        if self.kind == "noisy":
            return "every noisy measurement"
        if self.kind == "throttled":
            return "every measurement timed while its device throttled"
        seg = f"[{self.segment[0]}, {self.segment[1]})" if self.segment else ""
        if self.kind == "device":
            return f"every measurement on {self.device}"
        if self.kind == "segment":
            return f"segment {seg} on every device"
        return f"segment {seg} on {self.device}"

    def nothing(self) -> str:
        """Why this target found nothing to measure again, as a sentence."""
        seg = f"[{self.segment[0]}, {self.segment[1]})" if self.segment else ""
        if self.kind == "noisy":
            return "no measurement is noisy"
        if self.kind == "throttled":
            return "no measurement was timed while its device throttled"
        if self.kind == "device":
            return f"nothing is measured on {self.device} yet"
        if self.kind == "segment":
            return f"segment {seg} is not measured on any device yet"
        return f"segment {seg} is not measured on {self.device} yet"


def parse_target(text: str, chain: Chain, n: int) -> Target:
    """'noisy', 'throttled', a device name, 'a:b' (a segment on every device) or
    'DEVICE@a:b'."""
    spec = text.strip()
    fix = f"give noisy, throttled, a device ({', '.join(chain.names)}), a:b, or DEVICE@a:b"
    if not spec:
        raise OmdpError("--remeasure is empty", fix)
    if spec in ("noisy", "throttled") and spec not in chain.names:
        return Target(spec)
    device, at, seg = spec.rpartition("@")
    if not at:
        device, seg = "", spec
    if device and device not in chain.names:
        raise OmdpError(f"--remeasure {spec}: no device '{device}' in the chain", fix)
    if ":" not in seg:
        if seg in chain.names and not device:
            return Target("device", seg)
        raise OmdpError(f"--remeasure {spec} is not noisy, throttled, a device or a segment", fix)
    a_text, _, b_text = seg.partition(":")
    try:
        a, b = int(a_text), int(b_text)
    except ValueError:
        raise OmdpError(f"--remeasure {spec}: '{seg}' is not a segment a:b", fix) from None
    if not 0 <= a < b <= n:
        raise OmdpError(
            f"--remeasure {spec}: segment [{a}, {b}) is not inside the model's 0..{n}",
            "give 0 ≤ a < b ≤ the number of nodes",
        )
    return Target("cell", device, (a, b)) if device else Target("segment", None, (a, b))


def choose(session: Session, plan: list[PlanItem], target: Target) -> list[PlanItem]:
    """The plan items `target` names that have a measurement to replace."""
    frame = session.results_frame()
    measured = {
        (r["device"], int(r["start"]), int(r["end"]))
        for r in frame.to_dict("records")
        if r["status"] in ("ok", "error")
    }
    flagged: set[tuple[str, int, int]] = set()
    if target.kind == "noisy":
        flagged = noise.noisy_keys(session, frame)
    elif target.kind == "throttled":
        flagged = set(noise.throttled(session, frame))

    def wanted(it: PlanItem) -> bool:
        key = (it.device, it.start, it.end)
        if key not in measured:
            return False
        if target.kind in ("noisy", "throttled"):
            return key in flagged
        if target.kind == "device":
            return it.device == target.device
        if target.kind == "segment":
            return (it.start, it.end) == target.segment
        return it.device == target.device and (it.start, it.end) == target.segment

    return [it for it in plan if wanted(it)]


def remeasure(session: Session, plan: list[PlanItem], target: Target) -> list[PlanItem]:
    """Move the chosen measurements into the history; the next run measures them again.
    Returns them (empty: nothing to re-measure — said by the caller)."""
    items = choose(session, plan, target)
    if items:
        session.retire([(it.device, it.start, it.end) for it in items], target.kind)
    return items
