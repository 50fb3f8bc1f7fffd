"""CPU accounting for the benches: who spends the machine's cores, and how fast the machine is today.

Throughput alone cannot tell a slower machine from slower code, and on two shared cores every process
in the run (web, database, Redis, the load generator itself) takes from the same budget. So the
benches also print CPU milliseconds per request for each role, read from /proc, and a calibration
figure: the time of a fixed pure-Python loop, to compare runs made on different days.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")

# role -> does this process (pid, session id, command line) belong to it?
Roles = dict[str, Callable[[int, int, str], bool]]


def calibrate() -> float:
    """Milliseconds for 5 million iterations of a plain Python loop, best of three."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(5_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def machine() -> str:
    """The line a bench starts with: the machine, the time, how fast it is and how busy, the commit."""
    here = Path(__file__).parent
    commit = subprocess.run(
        ["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--", "../src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M %Z')}; "
        f"calibration loop {calibrate():.0f} ms (lower is faster), load {os.getloadavg()[0]:.2f}; "
        f"app at {commit or '?'}{' + uncommitted changes in src/' if dirty else ''}"
    )


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    pid: int
    name: str  # the short command name from /proc/<pid>/stat
    group: int  # process group
    session: int
    seconds: float  # CPU used so far, user + system


def process(pid: int) -> ProcessCpu | None:
    """What /proc/<pid>/stat says of a process; None once it is gone."""
    try:
        head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
    except OSError:
        return None
    fields = tail.split()
    seconds = (int(fields[11]) + int(fields[12])) / _TICK
    return ProcessCpu(pid, head.split("(", 1)[1], int(fields[2]), int(fields[3]), seconds)


def processes() -> Iterator[ProcessCpu]:
    """Every live process on the machine."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := process(int(entry))) is not None:
            yield found


def snapshot(roles: Roles) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the live processes of each role."""
    used = dict.fromkeys(roles, 0.0)
    for proc in processes():
        try:
            command = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # gone meanwhile
        for role, belongs in roles.items():
            if belongs(proc.pid, proc.session, command.decode(errors="replace")):
                used[role] += proc.seconds
                break
    return used


def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """CPU milliseconds per request for each role between two snapshots."""
    return {role: (after[role] - before[role]) * 1000 / max(requests, 1) for role in after}


def describe(costs: dict[str, float]) -> str:
    """'web 1.31, postgresql 0.39, … = 1.93 ms per refund; 2 cores: ceiling ~1,036/s'."""
    total = sum(costs.values())
    parts = ", ".join(f"{role} {ms:.2f}" for role, ms in costs.items())
    ceiling = (os.cpu_count() or 1) * 1000 / total if total else float("nan")
    return f"{parts} = {total:.2f} ms CPU per refund; {os.cpu_count()} cores: ceiling ~{ceiling:,.0f}/s"
