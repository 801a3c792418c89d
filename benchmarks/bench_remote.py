"""Profiling over SSH, each against a baseline run side by side (real SSH on 127.0.0.1).

1. One SSH exec per job, lines streamed (ours), against one exec per segment (what a
   naive remote runner does: interpreter start, imports and model load every time).
2. Preparing a job on a device that already has the agent and the model (hash hit: a few
   SFTP stats) against uploading them again.

The device is an in-process asyncssh server (tests/ssh/helpers.py): no sshd needed, and
no login shell, so the per-exec cost against a real device is higher than shown here.

Run: .venv/bin/python benchmarks/bench_remote.py
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from ssh.helpers import LoopThread, SshLab, chain_model  # noqa: E402

from backend.device.protocol import Job, Result, TimingSettings  # noqa: E402
from backend.files import file_sha256  # noqa: E402
from backend.remote.ssh_agent import SshAgentTransport  # noqa: E402

TIMING = TimingSettings(warmup=1, min_runs=5, max_runs=5, max_seconds=1.0)


async def run_job(transport: SshAgentTransport, job: Job) -> int:
    """Results of one job: every line decoded and checked against the job on the way."""
    return sum([isinstance(event, Result) async for event in transport.run(job)])


async def bench_streaming(lab: SshLab, model: Path) -> None:
    dev = lab.device("stream")
    items = list(itertools.combinations([0, 2, 4, 6, 8, 10, 12], 2))[:10]
    job = Job(
        file_sha256(model),
        items,
        {"name": "onnxruntime", "threads": 1},
        TIMING,
        model_path=str(model),
    )
    transport = SshAgentTransport(dev.target())
    await run_job(transport, replace(job, items=items[:1]))  # upload, warm
    t0 = time.perf_counter()
    assert await run_job(transport, job) == len(items)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for item in items:
        assert await run_job(transport, replace(job, items=[item])) == 1
    baseline = time.perf_counter() - t0
    await transport.close()
    print(
        f"{len(items)} segments: one exec per job {ours:.2f} s, one exec per segment "
        f"{baseline:.2f} s -> {baseline / ours:.1f}x faster"
    )


async def bench_upload(lab: SshLab, model: Path) -> None:
    dev = lab.device("upload")
    job = Job(file_sha256(model), [(0, 12)], {"name": "onnxruntime"}, TIMING, model_path=str(model))
    mib = model.stat().st_size / 2**20
    times = []
    for _ in range(3):
        shutil.rmtree(lab.tmp / "upload-work", ignore_errors=True)
        transport = SshAgentTransport(dev.target())
        t0 = time.perf_counter()
        await transport.prepare(job)
        times.append(time.perf_counter() - t0)
        await transport.close()
    full = sorted(times)[1]
    times = []
    for _ in range(3):
        transport = SshAgentTransport(dev.target())
        t0 = time.perf_counter()
        await transport.prepare(job)
        times.append(time.perf_counter() - t0)
        assert transport.uploads.files == 0
        await transport.close()
    hit = sorted(times)[1]
    print(
        f"prepare with a {mib:.0f} MiB model: upload {full:.2f} s "
        f"({mib / full:.0f} MiB/s incl. connect), hash hit {hit:.3f} s -> "
        f"{full / hit:.0f}x faster"
    )


async def main() -> None:
    loop = LoopThread()
    with tempfile.TemporaryDirectory() as tmp:
        lab = SshLab(Path(tmp), loop)
        small = Path(tmp) / "small.onnx"
        onnx.save(chain_model(), str(small))
        big = Path(tmp) / "big.onnx"  # ~ YOLOv5s-sized weights
        onnx.save(chain_model(n=7, width=1024), str(big))
        try:
            await bench_streaming(lab, small)
            await bench_upload(lab, big)
        finally:
            lab.close()
    loop.stop()


if __name__ == "__main__":
    asyncio.run(main())
