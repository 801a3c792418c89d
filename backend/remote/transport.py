"""The one shape of an agent transport: how the profiler runs a job on one device.

`LocalTransport` (backend/remote/local.py) runs the agent as a subprocess here,
`SshAgentTransport` (backend/remote/ssh_agent.py) over SSH with upload and resume; the
profiler (backend/profiling/jobs.py) sees only this protocol. A transport reads the
agent's lines with a bound on their length and decodes each one strictly against the job
(backend/device/protocol.py), so what it returns is typed and checked.
"""

from __future__ import annotations

from typing import Protocol

from backend.device.protocol import Event, Job


class AgentTransport(Protocol):
    """Runs one job on one device's agent and yields its checked events."""

    description: str  # who this is, for messages: "local agent pid 123", "ssh agent on …"

    async def start(self, job: Job) -> None:
        """Start the agent with `job` (for SSH: connect and upload what is missing first).
        Raises OSError or OmdpError when the device cannot be used."""
        ...

    async def next_event(self) -> Event | None:
        """The next event, checked against the job; None once the agent is gone. Raises
        ProtocolError for a line that breaks the protocol, OSError or OmdpError when the
        device is lost for good."""
        ...

    async def control(self, command: str) -> None:
        """Pass "pause", "resume" or "stop" to the agent."""
        ...

    def stop(self) -> None:
        """Ask the agent to stop between runs (what it measured is kept)."""
        ...

    def kill(self) -> None:
        """End the agent and its whole process group now, wherever it runs."""
        ...

    async def finish(self, timeout: float) -> int | None:
        """Close the agent's input, give it `timeout` s to exit, kill it if it does not;
        its exit status (None if it had to be killed)."""
        ...

    def stderr_tail(self) -> str:
        """The agent's last log lines (inert)."""
        ...
