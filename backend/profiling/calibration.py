"""How fast each device measures, learnt from measurements: the plan's time estimate.

A plan's duration depends on three things per device: its speed (GFLOP/s), how many
timed runs a segment takes before its CI meets the target (often the minimum, far below
the budget), and the fixed cost per segment (loading it). Guessing them made the estimate
3–9× too long; they are read instead from the session's own measurements, else from the
same device's earlier sessions (kept per device in the user's state folder, keyed by how
the device is reached and configured, so a renamed device is still recognised).
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from backend.chain import Chain, DeviceSpec
from backend.files import atomic_write
from backend.profiling import recent

FILE = "device-rates.json"
MAX_BYTES = 1 << 20


# A run shorter than this mostly times the runtime's fixed cost per call, not the device's
# speed: a tiny model would teach a speed a hundred times too low for the next big one.
WORK_MS = 1.0


@dataclass(frozen=True)
class DeviceRate:
    gflops: float  # summed FLOPs over summed median time (of runs of WORK_MS or more)
    runs: float  # median timed runs per segment (samples kept)
    overhead_s: float  # median load time per segment
    speed_seen: bool = True  # some run lasted WORK_MS: `gflops` is the device's speed


def from_rows(
    rows: Sequence[Mapping], flops_of: Callable[[int, int], int]
) -> dict[str, DeviceRate]:
    """Per device, from measurement rows (device, start, end, median_ms, samples, load_ms).
    The speed comes from the runs of WORK_MS or more where there are some (else from all,
    and `speed_seen` is False: right for this session, not for another model's)."""
    flops: dict[tuple[str, bool], float] = {}
    ms: dict[tuple[str, bool], float] = {}
    runs: dict[str, list[float]] = {}
    loads: dict[str, list[float]] = {}
    for r in rows:
        med = r.get("median_ms")
        if r.get("status", "ok") != "ok" or not isinstance(med, int | float) or not med > 0:
            continue
        device = r["device"]
        runs.setdefault(device, []).append(float(r.get("samples") or 0))
        load = r.get("load_ms")
        if isinstance(load, int | float) and load == load and load >= 0:
            loads.setdefault(device, []).append(float(load) / 1000)
        f = flops_of(int(r["start"]), int(r["end"]))
        if f > 0:
            key = (device, med >= WORK_MS)
            flops[key] = flops.get(key, 0.0) + f
            ms[key] = ms.get(key, 0.0) + med
    out = {}
    for device in runs:
        seen = ms.get((device, True), 0.0) > 0
        key = (device, seen)
        if ms.get(key, 0.0) > 0:
            out[device] = DeviceRate(
                flops[key] / ms[key] / 1e6,
                statistics.median(runs[device]),
                statistics.median(loads.get(device) or [0.0]),
                seen,
            )
    return out


def identity(device: DeviceSpec) -> str:
    """The same machine and configuration, whatever the device is called."""
    where = (
        f"{device.user or ''}@{device.host}:{device.port or 22}"
        if device.kind == "ssh"
        else "local"
    )
    cpus = ",".join(map(str, device.cpus or []))
    return f"{where}|{device.runtime_config().key()}|cpus={cpus}"


def _known() -> dict[str, Any]:
    """What earlier sessions kept in the state folder ({} when missing or unreadable)."""
    try:
        with open(recent.state_dir() / FILE, "rb") as f:
            known = json.loads(f.read(MAX_BYTES))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _keep(known: dict[str, Any]) -> None:
    """Write it back (best effort: a state folder that cannot be written loses nothing)."""
    path = recent.state_dir() / FILE
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(known, indent=1) + "\n")


def remembered(chain: Chain) -> dict[str, DeviceRate]:
    """Rates learnt in earlier sessions for this chain's devices (by identity)."""
    known = _known()
    out: dict[str, DeviceRate] = {}
    for device in chain.devices:
        entry = known.get(identity(device))
        with contextlib.suppress(TypeError, ValueError):
            rate = DeviceRate(**entry) if isinstance(entry, dict) else None
            if rate and rate.gflops > 0 and rate.runs >= 0 and rate.overhead_s >= 0:
                out[device.name] = rate
    return out


def remember(chain: Chain, rates: Mapping[str, DeviceRate]) -> None:
    """Keep these devices' rates for later sessions (best effort, never fails); a rate
    whose speed was not seen (only runs under WORK_MS) does not replace a known one."""
    rates = {name: rate for name, rate in rates.items() if rate.speed_seen}
    if not rates:
        return
    known = _known()
    for device in chain.devices:
        if device.name in rates:
            known[identity(device)] = asdict(rates[device.name])
    _keep(known)


PACE_RANGE = (0.5, 4.0)  # a run's pace beyond this is an accident, not the chain


def _chain_key(chain: Chain) -> str:
    return "pace:" + " → ".join(identity(d) for d in chain.devices)


def pace(chain: Chain) -> float:
    """Real run time over the time the rates predict, learnt from this chain's last run
    (1.0 when unknown)."""
    value = _known().get(_chain_key(chain))
    if isinstance(value, int | float) and PACE_RANGE[0] <= value <= PACE_RANGE[1]:
        return float(value)
    return 1.0


def remember_pace(chain: Chain, value: float) -> None:
    """Keep the chain's last pace (clamped to PACE_RANGE; best effort)."""
    known = _known()
    known[_chain_key(chain)] = min(PACE_RANGE[1], max(PACE_RANGE[0], float(value)))
    _keep(known)
