"""CPU accounting for the benches: who spends the machine's cores, and how fast the machine is today.

Throughput alone cannot tell a slower machine from slower code, and on two shared cores every process
in the run (web, database, Redis, the load generator itself) takes from the same budget. So the
benches also print CPU milliseconds per request for each role, read from /proc, and a calibration
figure: the time of a fixed pure-Python loop, to compare runs made on different days.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
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


def snapshot(roles: Roles) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the live processes of each role."""
    used = dict.fromkeys(roles, 0.0)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        pid, session = int(proc.name), int(stat[3])
        for role, belongs in roles.items():
            if belongs(pid, session, command):
                used[role] += (int(stat[11]) + int(stat[12])) / _TICK
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
