"""Writing chosen partitions as the export document (docs/export.md), one shape for all.

The document is what a deployment needs: the model, which device runs which nodes, what
crosses each cut, and the devices as a deployment describes them (name, kind, runtime and
the runtime configuration they were measured with). How the lab reached a device (SSH
host, user, port, identity and known-hosts files, work folders) stays in the lab.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.chain import Chain, link_name
from backend.errors import OmdpError
from backend.export import build_export, check_models_folder, write_export
from backend.files import check_writable
from backend.model.analysis import ModelAnalysis
from backend.profiling.session import Session
from backend.solver.ranking import Partition
from backend.usecases.rankings import RankOptions, rank_session
from backend.usecases.sessions import session_analysis


def export_devices(chain: Chain) -> list[dict[str, Any]]:
    """The chain's devices as the export describes them: nothing of the lab's access."""
    return [
        {
            "name": d.name,
            "kind": d.kind,
            "runtime": d.runtime,
            "config": d.runtime_config().to_dict(),
        }
        for d in chain.devices
    ]


def export_links(
    chain: Chain, bandwidth_mbps: Iterable[float], latency_ms: Iterable[float]
) -> list[dict[str, Any]]:
    """The link values the partitions were priced under, in chain order."""
    return [
        {
            "name": link_name(a.name, b.name),
            "from": a.name,
            "to": b.name,
            "bandwidth_mbps": float(bw),
            "latency_ms": float(lat),
        }
        for (a, b), bw, lat in zip(
            itertools.pairwise(chain.devices), bandwidth_mbps, latency_ms, strict=True
        )
    ]


def _document(
    session: Session,
    analysis: ModelAnalysis,
    partitions: Sequence[Partition],
    bandwidth_mbps: Iterable[float],
    latency_ms: Iterable[float],
    *,
    cost_model: str,
    objective: str,
    sink: str | None,
) -> dict[str, Any]:
    chain = session.chain()
    ref = session.model()
    return build_export(
        analysis,
        partitions,
        validations=stored_validations(session),
        devices=export_devices(chain),
        links=export_links(chain, bandwidth_mbps, latency_ms),
        cost_model=cost_model,
        objective=objective,
        sink=sink,
        model_path=ref.path,
        sha256=ref.sha256,
        builtin=ref.builtin,
    )


def stored_validations(session: Session) -> dict[tuple[int, ...], list[dict[str, Any]]]:
    """The session's validations under its devices' current configurations, by partition
    positions, as the export shows them: what was run, measured beside predicted."""
    configs = session.device_configs()
    out: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    for row in session.validations():
        if any(configs.get(d) != c for d, c in row["configs"].items()):
            continue  # measured under other runtime options
        rep = row["report"]
        out.setdefault(tuple(row["positions"]), []).append(
            {
                "objective": row["objective"],
                "cost_model": row["cost_model"],
                "links": row["links"],
                "frames": row["frames"],
                "measured": row["measured"],
                "predicted": row["predicted"],
                "error_pct": row["error_pct"],
                "output_ok": row["output_ok"],
                "verdict": rep.get("verdict"),
                "latency_ms": rep.get("latency"),
                "stages": [
                    {
                        "device": st["device"],
                        "role": st["role"],
                        "measured_ms": (st["measured"] or {}).get("median"),
                        "predicted_ms": st["predicted"],
                    }
                    for st in rep.get("stages", [])
                ],
                "hops": [
                    {
                        "link": h["link"],
                        "position": h["position"],
                        "loopback": h["loopback"],
                        "measured_ms": h["measured"]["median"],
                        "predicted_ms": h["predicted_ms"],
                    }
                    for h in rep.get("hops", [])
                ],
                "created_at": row["created_at"],
            }
        )
    return out


@dataclass
class Exported:
    """What an export wrote: the document first, then any segment models."""

    written: list[Path]
    partitions: list[Partition]


def export_ranks(
    session: Session,
    options: RankOptions,
    ranks: Sequence[int],
    output: str | os.PathLike[str],
    with_models: str | os.PathLike[str] | None = None,
) -> Exported:
    """Rank the session, export the partitions at `ranks` (1 = best), and remember them
    in the session as "rank R". Every destination is checked before anything is written."""
    session.require_writable("record the exported partitions")
    out = check_writable(output, "partition.json")
    if out.exists() and os.path.samefile(out, session.path):
        raise OmdpError(f"cannot write {out}: it is the session file", "write the JSON elsewhere")
    if with_models is not None:
        check_models_folder(with_models)
    ranked = rank_session(session, dataclasses.replace(options, k=max(ranks)))
    chosen = [p for p in ranked.partitions if p.rank in ranks]
    if len(chosen) < len(ranks):
        raise OmdpError(
            f"only {len(ranked.partitions)} feasible partitions, no rank {max(ranks)}",
            "profile more segments or ask for a lower rank",
        )
    analysis = session_analysis(session)
    inst = ranked.instance  # its link values: the session's, after the options' overrides
    doc = _document(
        session,
        analysis,
        chosen,
        inst.bandwidth_mbps,
        inst.latency_ms,
        cost_model=options.cost_model,
        objective=options.objective,
        sink=options.sink,
    )
    written = write_export(doc, output, analysis, with_models)
    n = session.model().nodes
    session.save_partitions(
        [
            {
                "name": f"rank {p.rank}",
                "positions": [0, *p.cuts, n],
                "cost_ms": p.total_ms,
                "objective": options.objective,
                "cost_model": options.cost_model,
            }
            for p in chosen
        ]
    )
    return Exported(written, chosen)


def export_partition(
    session: Session,
    analysis: ModelAnalysis,
    partition: Partition,
    bandwidth_mbps: Iterable[float],
    latency_ms: Iterable[float],
    output: str | os.PathLike[str],
) -> Path:
    """One partition, as ranked under these link values, to `output`."""
    doc = _document(
        session,
        analysis,
        [partition],
        bandwidth_mbps,
        latency_ms,
        cost_model=partition.cost_model,
        objective=partition.objective,
        sink=None,
    )
    return write_export(doc, output)[0]


def default_export_path(session_path: Path, cuts: Sequence[int]) -> Path:
    """`<session>-partition-<cuts>.json` beside the session."""
    return session_path.with_name(f"{session_path.stem}-partition-{'_'.join(map(str, cuts))}.json")
