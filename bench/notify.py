"""Outgoing webhooks benchmark: deliveries to a local receiver, on a backlog and while refunds run.

Usage:  .venv/bin/python bench/notify.py [--backend postgresql|sqlite|both] [-n 100000] [-r 3000]
            [-k 32] [--profile PATH]

One simulator (Stripe, 50 ms answers), the web app, one refundwatch worker and receiver.py (a lean
HTTP server on 127.0.0.1 that verifies every signature with ``standardwebhooks`` and records when
each delivery arrived), allow-listed through REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS. Phases, on a fresh
database and a private Redis per backend:
  pipeline alone    R refunds POSTed while no worker runs, then one worker executes them, no endpoint:
                    refunds/s from first submission to last final (pipeline.py's execution figure)
  with webhooks     an endpoint subscribed to every event; R more refunds the same way. The same
                    refunds/s, as a ratio of the first (the webhooks' cost to the pipeline), and the
                    delay from a change (its ``occurred_at``, the commit of the refund's change) to its
                    arrival at the receiver, p50 and p99, for the changes made while the worker ran
                    (the refunds' `created` deliveries, queued before it started, go out first)
  live              the same two, with the worker started first and the refunds POSTed at full speed
                    (K clients) while it runs: refunds/s, and change -> arrival for every delivery
  backlog           the worker stopped; N deliveries queued at once (copies of the deliveries above,
                    same refunds and timeline entries, bodies not rendered yet, so each first send
                    renders its payload as a real one does), then the worker started: deliveries/s
                    from first to last arrival, and the delay from the start of the worker, p50/p99
Each phase prints CPU ms per refund (or per delivery) by process role, and the run ends with the
receiver's integrity check: duplicates (a message that arrived twice: the receiver always answers
200, so any is a double send), out of order (a refund's message arriving after a later one of the
same refund) and lost (deliveries not succeeded, or succeeded but never seen).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import msgspec
from redis import asyncio as redis

import _stack  # bench/: a script's own directory is on its path
import cpu
import loadgen
import pipeline
from pipeline import Env, free_port, pct, seconds
from processors import LATENCY_MS, PROCESSORS
from refundwatch.outgoing.events import EVENT_TYPES
from refundwatch.runtime import QUEUE_NAME

PROCESSOR = PROCESSORS["stripe"]
HEALTH_KEY = f"{QUEUE_NAME}:health-check"  # arq writes it on the worker's first loop
# Copies of the deliveries the "with webhooks" phase made, in id order per copy: each refund's
# messages keep their order, and every first send renders its payload from the refund's timeline.
BACKLOG_SQL = """
WITH RECURSIVE copies(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM copies WHERE k < {copies})
INSERT INTO webhook_deliveries (endpoint_id, event_type, refund_id, event_id, occurred_at, next_attempt_at)
SELECT d.endpoint_id, d.event_type, d.refund_id, d.event_id, '{now}', '{now}'
FROM copies JOIN webhook_deliveries d ON d.refund_id IS NOT NULL
ORDER BY copies.k, d.id LIMIT {n}
"""


async def db_write(env: Env, sql: str) -> None:
    url = env.vars["REFUNDWATCH_DATABASE_URL"]
    if env.backend == "sqlite":
        conn = sqlite3.connect(url.split("///", 1)[1], timeout=60)
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await pg.execute(sql)
    finally:
        await pg.close()


async def count(env: Env, sql: str) -> int:
    return int((await pipeline.db_fetch(env, sql))[0][0])


async def wait_for(env: Env, sql: str, timeout: float, what: str) -> None:
    """Until ``sql`` counts nothing left."""
    deadline = time.monotonic() + timeout
    while await count(env, sql):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not done within {timeout:.0f} s: {await _stuck(env)}")
        await asyncio.sleep(0.3)


async def _stuck(env: Env) -> str:
    """What the deliveries look like, and the end of the worker's log, for a run that stalled."""
    states = await pipeline.db_fetch(
        env, "SELECT status, attempts, count(*) FROM webhook_deliveries GROUP BY status, attempts"
    )
    log = env.workdir / "worker.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    return f"deliveries (status, attempts, count) {states}\nworker log: {tail}"


class Receiver:
    """receiver.py, driven over its control paths."""

    def __init__(self, env: Env) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = env.workdir / "arrivals.jsonl"
        here = str(Path(__file__).parent)
        env.start(
            "receiver",
            "receiver",
            "--port",
            str(self.port),
            "--out",
            str(self.out),
            extra_env={"PYTHONPATH": here},
        )
        self.seen = 0

    async def control(self, path: str, body: str = "") -> bytes:
        async with httpx2.AsyncClient(base_url=self.url, timeout=60) as client:
            return (await client.post(path, content=body)).content

    async def verified(self) -> dict[str, int]:
        counted: dict[str, int] = msgspec.json.decode(await self.control("/_count"))
        return counted

    async def arrivals(self) -> list[tuple[Any, ...]]:
        """Every record since the last call: (arrival, id, refund id, sequence, type, timestamp)."""
        await self.control("/_dump")
        lines = self.out.read_bytes().splitlines()
        new, self.seen = lines[self.seen :], len(lines)
        return [tuple(msgspec.json.decode(line)) for line in new]


async def start_worker(env: Env, profile: Path | None) -> float:
    """Start the worker and wait until its first loop ran (arq's health-check key is written): the
    live phase's refunds then meet a running worker, not its start-up. When it started (epoch)."""
    client = redis.Redis.from_url(env.vars["REFUNDWATCH_REDIS_URL"])
    try:
        await client.delete(HEALTH_KEY)  # a stopped worker's may outlive it
        env.start("worker", "refundwatch", "worker", profile=profile)
        started = time.time()
        deadline = time.monotonic() + 60
        while not await client.exists(HEALTH_KEY):
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not start within a minute")
            await asyncio.sleep(0.05)
        return started
    finally:
        await client.aclose()


async def execute(
    env: Env,
    refs: list[str],
    k: int,
    auth: dict[str, str],
    web_url: str,
    profile: Path | None,
    *,
    live: bool = False,
) -> dict[str, Any]:
    """POST ``refs`` and have one worker execute them; wait until they are all final and no delivery
    is pending: refunds/s and CPU per refund by role. Queued (``live`` false): POSTed while no worker
    runs, then the worker started on them, as pipeline.py's execution figure. Live: the worker runs
    first and the refunds are POSTed at full speed (K clients) while it executes them."""
    bodies = [{"payment_reference": r, "amount": 1000, "currency": "EUR", "reason": "return"} for r in refs]
    if not live:
        intake = await loadgen.post_all(f"{web_url}/api/v1/refunds", auth, bodies, k)
    started = await start_worker(env, profile)
    roles = pipeline.roles_of(env)  # the worker just started is one of them
    before = cpu.snapshot(roles)
    if live:
        intake = await loadgen.post_all(f"{web_url}/api/v1/refunds", auth, bodies, k)
    n = len(refs)
    await wait_for(
        env, "SELECT count(*) FROM refunds WHERE finalized_at IS NULL", max(120, n / 20), "refunds"
    )
    final_at = time.time()
    await wait_for(env, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'", 600, "deliveries")
    used = cpu.per_request(before, cpu.snapshot(roles), n)  # the deliveries' sending included
    listed = "','".join(refs)
    span = (
        await pipeline.db_fetch(
            env,
            "SELECT min(submitted_at), max(finalized_at) FROM refunds "
            f"WHERE payment_reference IN ('{listed}')",
        )
    )[0]
    env.stop("worker")
    return {
        "rps": n / (seconds(span[1]) - seconds(span[0])),
        "cpu": used,
        "started": started,
        "drained_after_final": time.time() - final_at,
        "intake_errors": intake.errors,
    }


def delays_ms(records: list[tuple[Any, ...]], since: float) -> list[float]:
    """Arrival minus the change's time, for the changes made at or after ``since`` (epoch seconds)."""
    out = []
    for arrival, _, _, _, _, stamp in records:
        occurred = dt.datetime.fromisoformat(stamp).timestamp()
        if occurred >= since:
            out.append((arrival - occurred) * 1000)
    return out


def integrity(records: list[tuple[Any, ...]]) -> tuple[int, int]:
    """(duplicates, out of order) over every arrival of the run."""
    seen: set[str] = set()
    last: dict[str, int] = defaultdict(int)
    duplicates = disorder = 0
    for _, message_id, refund_id, sequence, _, _ in sorted(records, key=lambda r: r[0]):
        if message_id in seen:
            duplicates += 1
            continue
        seen.add(message_id)
        if refund_id is not None and sequence is not None:
            if sequence < last[refund_id]:
                disorder += 1
            last[refund_id] = max(last[refund_id], sequence)
    return duplicates, disorder


async def run_backend(
    backend: str, n: int, refunds: int, k: int, pg_admin: str, profile: Path | None, keep: bool = False
) -> dict[str, Any]:
    env = await pipeline.make_env(backend, pg_admin)
    env.vars["REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    sim_port, web_port = free_port(), free_port()
    sim_url, web_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{web_port}"
    try:
        env.cli("db", "upgrade")
        (env.workdir / "c.toml").write_text(PROCESSOR.connection_toml(sim_url))
        env.cli("connections", "import", str(env.workdir / "c.toml"))
        scopes = "refunds:read,refunds:write,webhooks:write"
        key = env.cli("apikeys", "create", "--name", "bench", "--scopes", scopes)
        auth = {"Authorization": f"Bearer {key}"}
        env.start("simulator", "refundwatch.simulator", "--port", str(sim_port))
        env.start("web", "refundwatch", "serve", "--port", str(web_port), "--workers", "2")
        receiver = Receiver(env)
        await pipeline.wait_http(f"{sim_url}/_control/faults")
        await pipeline.wait_http(f"{web_url}/healthz")
        async with httpx2.AsyncClient() as c:
            for faults in PROCESSOR.faults():
                (await c.post(f"{sim_url}/_control/faults", json=faults)).raise_for_status()
        refs = await pipeline.seed(env, 4 * refunds, sim_url, PROCESSOR)
        phases = [refs[i * refunds : (i + 1) * refunds] for i in range(4)]

        alone = await execute(env, phases[0], k, auth, web_url, None)
        alone_live = await execute(env, phases[1], k, auth, web_url, None, live=True)

        async with httpx2.AsyncClient(base_url=web_url, headers=auth) as c:
            created = await c.post(
                "/api/v1/webhook-endpoints",
                json={"url": f"{receiver.url}/hooks", "events": list(EVENT_TYPES)},
            )
            created.raise_for_status()
        await receiver.control("/_secret", created.json()["secret"])
        results: list[tuple[dict[str, Any], list[tuple[Any, ...]]]] = []
        for refs_of_phase, live, name in ((phases[2], False, "pipeline"), (phases[3], True, "live")):
            py_spy = profile and profile.with_name(f"{profile.stem}-{backend}-{name}.txt")
            ran = await execute(env, refs_of_phase, k, auth, web_url, py_spy, live=live)
            results.append((ran, await receiver.arrivals()))
        (hooked, during), (hooked_live, during_live) = results

        # backlog: queued while no worker runs, then one worker started on it
        made = await count(env, "SELECT count(*) FROM webhook_deliveries WHERE refund_id IS NOT NULL")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if backend == "postgresql":
            now += "+00"
        await db_write(env, BACKLOG_SQL.format(copies=n // max(made, 1) + 1, now=now, n=n))
        worker = env.start(
            "worker",
            "refundwatch",
            "worker",
            profile=profile and profile.with_name(f"{profile.stem}-{backend}-backlog.txt"),
        )
        started = time.time()
        roles = pipeline.roles_of(env)
        before = cpu.snapshot(roles)
        peak_rss = 0.0
        deadline = time.monotonic() + max(300, n / 20)
        while await count(env, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the backlog was not sent in time: {await _stuck(env)}")
            peak_rss = max(peak_rss, pipeline.rss_mb(worker.pid))
            await asyncio.sleep(0.5)
        backlog_cpu = cpu.per_request(before, cpu.snapshot(roles), n)
        env.stop("worker")
        backlog = await receiver.arrivals()
        arrived = sorted(r[0] for r in backlog)

        everything = during + during_live + backlog
        duplicates, disorder = integrity(everything)
        not_sent = await count(env, "SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'")
        rows = await count(env, "SELECT count(*) FROM webhook_deliveries")
        rejected = (await receiver.verified())["rejected"]
        return {
            "backend": backend,
            "n": n,
            "refunds": refunds,
            "k": k,
            "alone": alone,
            "hooked": hooked,
            "hooked_deliveries": len(during),
            "hooked_delays": delays_ms(during, hooked["started"]),
            "alone_live": alone_live,
            "hooked_live": hooked_live,
            "live_deliveries": len(during_live),
            "live_delays": delays_ms(during_live, hooked_live["started"]),
            "backlog_n": len(backlog),
            "backlog_rate": (len(arrived) - 1) / (arrived[-1] - arrived[0]) if len(arrived) > 1 else 0.0,
            "backlog_delays": [(a - started) * 1000 for a in arrived],
            "backlog_cpu": backlog_cpu,
            "worker_rss_mb": peak_rss,
            "duplicates": duplicates,
            "disorder": disorder,
            "lost": not_sent + max(0, rows - not_sent - len({r[1] for r in everything})),
            "rejected": rejected,
        }
    finally:
        env.stop_all()
        if keep:
            print(f"kept: {env.workdir} {env.pg_name or ''}")
        else:
            await _stack.drop_database(pg_admin, env.pg_name)
            shutil.rmtree(env.workdir, ignore_errors=True)


def report(r: dict[str, Any]) -> None:
    alone, hooked = r["alone"], r["hooked"]
    print(
        f"\n== {r['backend']}: R={r['refunds']} refunds per pipeline phase, K={r['k']}, N={r['n']} backlog, "
        f"simulator latency {LATENCY_MS} ms, one refundwatch worker"
    )
    print(f"pipeline alone                {alone['rps']:8.0f} refunds/s")
    print(f"  CPU: {cpu.describe(alone['cpu'])}")
    delays = r["hooked_delays"]
    print(
        f"with webhooks                 {hooked['rps']:8.0f} refunds/s  ({hooked['rps'] / alone['rps']:.2f} "
        f"of alone); {r['hooked_deliveries']} deliveries, change -> arrival p50 {pct(delays, 50):.0f} ms  "
        f"p99 {pct(delays, 99):.0f} ms ({len(delays)} changes made while the worker ran); "
        f"last sent {hooked['drained_after_final']:.1f} s after the last refund was final"
    )
    print(f"  CPU: {cpu.describe(hooked['cpu'])}")
    live, hooked_live, delays = r["alone_live"], r["hooked_live"], r["live_delays"]
    print(f"live, alone                   {live['rps']:8.0f} refunds/s (POSTed while the worker runs)")
    print(f"  CPU: {cpu.describe(live['cpu'])}")
    print(
        f"live, with webhooks           {hooked_live['rps']:8.0f} refunds/s  "
        f"({hooked_live['rps'] / live['rps']:.2f} of live alone); {r['live_deliveries']} deliveries, "
        f"change -> arrival p50 {pct(delays, 50):.0f} ms  p99 {pct(delays, 99):.0f} ms; "
        f"last sent {hooked_live['drained_after_final']:.1f} s after the last refund was final"
    )
    print(f"  CPU: {cpu.describe(hooked_live['cpu'])}")
    backlog = r["backlog_delays"]
    print(
        f"backlog                       {r['backlog_rate']:8.0f} deliveries/s; worker start -> arrival "
        f"p50 {pct(backlog, 50) / 1000:.1f} s  p99 {pct(backlog, 99) / 1000:.1f} s "
        f"({r['backlog_n']} delivered)"
    )
    print(f"  CPU: {cpu.describe(r['backlog_cpu']).replace('per refund', 'per delivery')}")
    print(f"worker RSS peak (backlog)     {r['worker_rss_mb']:.0f} MB")
    print(
        f"duplicates {r['duplicates']}  out of order {r['disorder']}  lost {r['lost']}  "
        f"signatures rejected {r['rejected']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("-n", type=int, default=100_000, help="deliveries in the backlog")
    parser.add_argument("-r", "--refunds", type=int, default=3000, help="refunds per pipeline phase")
    parser.add_argument("-k", type=int, default=32)
    parser.add_argument(
        "--profile",
        type=Path,
        help="write py-spy profiles of the worker (with webhooks, and on the backlog) next to this path",
    )
    parser.add_argument("--pg-admin", default=_stack.PG_ADMIN)
    parser.add_argument("--keep", action="store_true", help="keep the database and logs of the run")
    args = parser.parse_args()
    print(cpu.machine())
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    for backend in backends:
        report(
            asyncio.run(
                run_backend(backend, args.n, args.refunds, args.k, args.pg_admin, args.profile, args.keep)
            )
        )
        print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
