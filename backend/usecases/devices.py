"""Reaching the chain's devices: does each one answer, and what do the links carry.

A check runs the engine's probe (`backend.remote.checks`); for a local device it also starts
the agent the way a run does (`backend.remote.local.LocalTransport`) and returns its
hello: what it would profile with. Links are measured one at a time
(`backend.remote.links`) and stored beside the values the operator typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.chain import Chain, DeviceSpec
from backend.device.linkhelper import LinkSettings
from backend.device.protocol import ProtocolError
from backend.profiling.session import Session
from backend.remote.checks import check_local, check_ssh
from backend.remote.links import ChainLinks, measure_chain
from backend.remote.local import LocalTransport
from backend.remote.models import model_cache_dir
from backend.remote.target import LocalTarget, SshTarget, target_from_spec

HELLO_TIMEOUT_S = 60.0
RUNTIME_PACKAGES = ("onnxruntime", "openvino")


@dataclass
class DeviceAnswer:
    """Whether a device answered, and one line on what it has or what went wrong."""

    ok: bool
    detail: str


async def check_device(device: DeviceSpec, source: str | None = None) -> DeviceAnswer:
    """Reach one device with the engine's probe; for a local one also start the agent
    and report its hello. `source` names where the device was defined (for errors)."""
    target = target_from_spec(device, source)
    if isinstance(target, SshTarget):
        check = await check_ssh(target, device.runtime)
    else:
        check = await check_local(target, device.runtime)
    if not check.ok:
        return DeviceAnswer(False, "; ".join(check.problems) or "not reachable")
    if isinstance(target, SshTarget):
        f = check.facts
        return DeviceAnswer(
            True,
            f"python {f.get('python', '?')} · {f.get('cores', '?')} cores "
            f"· {(f.get('packages') or {}).get(device.runtime, '?')}",
        )
    return await agent_hello()


async def agent_hello(
    cache_dir: Path | None = None, timeout: float = HELLO_TIMEOUT_S
) -> DeviceAnswer:
    """Start the local agent the way a run does, with no job: it says hello and exits."""
    transport = LocalTransport(cache_dir or model_cache_dir())
    try:
        hello = await transport.hello(timeout)
    except TimeoutError:
        return DeviceAnswer(False, f"the agent did not answer within {timeout:.0f} s")
    except OSError as exc:
        return DeviceAnswer(False, f"agent did not start: {exc}")
    except ProtocolError as exc:
        return DeviceAnswer(False, f"agent did not start: {exc}")
    v, h = hello.versions, hello.host
    runtimes = ", ".join(f"{k} {v[k]}" for k in RUNTIME_PACKAGES if v.get(k))
    return DeviceAnswer(
        True,
        f"{runtimes or 'no runtime'} · {h.get('cores', '?')} cores · "
        f"agent {hello.agent} (pid {hello.pid}) said hello",
    )


def chain_targets(chain: Chain) -> list[SshTarget | LocalTarget]:
    """Where to reach each device of the chain (ssh fields checked, errors at the chain's
    source)."""
    return [target_from_spec(d, chain.source) for d in chain.devices]


async def measure_links(
    targets: list[SshTarget | LocalTarget], *, max_bytes: int, lab_links: bool
) -> ChainLinks:
    """Measure each link of the chain (and lab → each ssh device with `lab_links`), one
    at a time; a link that fails is one line in `failures`, the others are still measured."""
    return await measure_chain(targets, LinkSettings(max_bytes=max_bytes), lab_links=lab_links)


def store_link_measurements(session: Session, found: ChainLinks) -> list[str]:
    """Put each measured chain link beside the typed values of the session's link between
    the same two devices; one line per measured link the session does not have."""
    chain = session.chain()
    index = {(lk.src, lk.dst): i for i, lk in enumerate(chain.links)}
    missing = []
    for m in found.chain:
        i = index.get((m.src, m.dst))
        if i is None:
            missing.append(
                f"link {m.src}-{m.dst}: not in session {session.path} (its chain: "
                f"{' -> '.join(chain.names)}); not stored"
            )
        else:
            session.set_link_measurement(i, m.bandwidth_mbps, m.latency_ms)
    return missing
