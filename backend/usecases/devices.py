"""Reaching the chain's devices: does each one answer, and what do the links carry.

A check runs the engine's probe (`backend.remote.checks`); for a local device it also starts
the agent the way a run does (`backend.remote.local.LocalTransport`) and returns its
hello: what it would profile with. Links are measured one at a time
(`backend.remote.links`) and stored beside the values the operator typed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from backend.chain import Chain, DeviceSpec
from backend.device.linkhelper import LinkSettings
from backend.device.protocol import ProtocolError
from backend.errors import OmdpError
from backend.profiling.session import Session
from backend.remote.checks import DeviceCheck, Wants, check_all, check_local, check_ssh
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
        check = await check_ssh(target, device_wants(device))
    else:
        check = await check_local(target, device_wants(device))
    if not check.ok:
        return DeviceAnswer(False, "; ".join(check.problems) or "not reachable")
    if isinstance(target, SshTarget):
        f = check.facts
        risks = f.get("flag_risks") or []
        return DeviceAnswer(
            True,
            f"python {f.get('python', '?')} · {f.get('cores', '?')} cores "
            f"· {device.runtime} {(f.get('packages') or {}).get(device.runtime, '?')} "
            f"· {f.get('mode', '?')} mode" + (f" · may be flagged: {risks[0]}" if risks else ""),
        )
    return await agent_hello(python=target.python)


async def agent_hello(
    cache_dir: Path | None = None, timeout: float = HELLO_TIMEOUT_S, python: str | None = None
) -> DeviceAnswer:
    """Start the local agent the way a run does, with no job: it says hello and exits."""
    transport = LocalTransport(cache_dir or model_cache_dir(), python=python or sys.executable)
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
        f"{runtimes or 'no runtime'} · {h.get('cores', '?')} cores · {hello.mode} mode · "
        f"agent {hello.agent} (pid {hello.pid}) said hello",
    )


@dataclass(frozen=True)
class ModelVersions:
    """The ONNX opset (default domain) and IR version a model needs from a runtime."""

    opset: int
    ir: int


def model_versions(model: str) -> ModelVersions:
    """The opset and IR version of a built-in model, an ONNX file, or a session's model
    (its weights are not read)."""
    from backend.device.segments import load_lazy
    from backend.model import zoo
    from backend.usecases.sessions import builtin_models, peek_model

    if model in builtin_models():
        proto = zoo.build(model)
    else:
        path = Path(model)
        if path.suffix == ".omdp":
            ref = peek_model(path)
            if ref.builtin:
                return model_versions(ref.builtin)
            if not ref.path:
                raise OmdpError(f"session {model} names no model file", "give --model FILE")
            path = Path(ref.path)
        try:
            proto, _ = load_lazy(str(path))
        except (OSError, ValueError) as exc:
            raise OmdpError(
                f"cannot read the model {path}: {exc}",
                "give an ONNX file, a session, or a built-in model "
                f"({', '.join(builtin_models())})",
            ) from None
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    return ModelVersions(opsets.get("ai.onnx", 0), proto.ir_version)


def device_wants(device: DeviceSpec, model: ModelVersions | None = None) -> Wants:
    """What running `device`'s jobs will ask of it."""
    return Wants(
        device.runtime,
        tuple(device.providers or ()),
        device.ov_device,
        model.opset if model else None,
        model.ir if model else None,
    )


async def check_chain(
    chain: Chain, timeout: float, model: ModelVersions | None = None
) -> list[DeviceCheck]:
    """Probe every device of the chain at once (`omdp devices check`): what it has, the
    mode its agent will use, its providers / devices, CPU state, and problems with fixes
    (a provider it lacks, a model opset its runtime cannot read, ...)."""
    targets = [(target_from_spec(d, chain.source), device_wants(d, model)) for d in chain.devices]
    return await check_all(targets, timeout)


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
