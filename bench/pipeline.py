"""Pipeline benchmark: refunds posted through the HTTP API, executed by ONE worker against the simulator.

Usage:  .venv/bin/python bench/pipeline.py [--backend postgresql|sqlite|both] [-n 5000] [-k 64]
            [--processor stripe|adyen|paypal|checkout|both|all|NAME,NAME] [--intake-only] [--profile PATH]

With more than one processor (``both`` is Stripe and Adyen, ``all`` every one, or a comma list), Stripe
runs first on each backend in the same invocation, and every other processor's execution rate is printed
as a ratio of Stripe's. A refund is executed when it is ``succeeded``: for
Adyen that includes the signed REFUND notification's round trip through refundwatch's webhook
endpoint and the worker's job that applies it (see processors.py), and for Checkout.com the signed
payment_refunded webhook's, after a balance read before each send. For PayPal, whose answer is final
as Stripe's is, it also prints the token calls the simulator answered during execution, per 1,000 refunds.

``stripe+webhooks`` is Stripe again with its webhooks on (the simulator sends each refund's signed
refund.created to refundwatch, as a real account set up per the README does). It is not the targets'
base; with it in the list the others are also printed as ratios of it.

Phases, each on a fresh database and a private Redis:
  floor      the same number of raw HTTP POSTs straight to the simulator, same concurrency (the ratio's base)
  intake     N refunds POSTed by K concurrent clients while no worker runs: POST/s, p50, p99
  execution  one worker started on the N queued refunds: refunds/s from first submission to last final
  latency    once the worker has sealed the audit chain (reported: how many entries, how long), refunds
             posted at a steady rate: accept -> final p50/p95/p99
It prints CPU ms per refund by process role for intake and execution, and a calibration loop time.
It also reports duplicates (ledger rows per refund > 1) and lost refunds (not final), and the worker's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
from redis import asyncio as redis

import _stack  # bench/: a script's own directory is on its path
import cpu
import loadgen
from processors import LATENCY_MS, PROCESSORS, SETTLE_MS, Processor

PY = _stack.PY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class Env:
    backend: str
    workdir: Path
    vars: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pg_name: str | None = None

    def cli(self, *args: str) -> str:
        return _stack.cli(self.vars, self.workdir, *args)

    def start(
        self,
        name: str,
        *args: str,
        profile: Path | None = None,
        subprocesses: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        command = [PY, "-m", *args]
        if profile is not None:  # py-spy (pip install py-spy) samples the process without slowing it much
            spy = str(Path(PY).with_name("py-spy"))
            command = [
                spy,
                "record",
                "-f",
                "raw",
                "-r",
                "200",
                "--gil",  # only the thread holding the GIL: Python CPU, not threads waiting on I/O
                *(["--subprocesses"] if subprocesses else []),
                "-o",
                str(profile),
                "--",
                *command,
            ]
        proc = subprocess.Popen(
            command,
            env={**self.vars, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        _stop(list(self.procs.values()))

    def stop(self, name: str) -> None:
        """Stop one of the run's processes (a worker between phases), as cleanly as stop_all."""
        _stop([self.procs.pop(name)])


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    # SIGINT first: every server here stops cleanly on it, and py-spy writes its profile on it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx2.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx2.HTTPError):
                if (await client.get(url, timeout=1)).status_code < 500:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def start_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(0.3)
    return f"redis://127.0.0.1:{port}/0", proc


async def make_env(backend: str, pg_admin: str) -> Env:
    workdir = Path(tempfile.mkdtemp(prefix=f"rw-bench-{backend}-"))
    db_url, pg_name = await _stack.create_database(backend, workdir, pg_admin, "refundwatch_bench")
    return bench_env(backend, workdir, db_url, pg_name)


def bench_env(backend: str, workdir: Path, db_url: str, pg_name: str | None) -> Env:
    """The processes' environment on ``db_url``, with a private Redis started for the run."""
    redis_url, redis_proc = start_redis(workdir)
    env = Env(
        backend,
        workdir,
        {
            **_stack.base_vars(db_url),
            "REFUNDWATCH_REDIS_URL": redis_url,
            # One API key drives the whole run: no per-client limit.
            "REFUNDWATCH_RATE_LIMIT_API_PER_MINUTE": "0",
            # The run's own anchors: the default (var/ under the current directory) is shared by
            # every run from here, and a fresh database's chain contradicts the last run's anchor.
            "REFUNDWATCH_AUDIT_ANCHOR": str(workdir / "audit-anchors.jsonl"),
        },
        pg_name=pg_name,
    )
    env.procs["redis"] = redis_proc
    return env


async def seed(env: Env, n: int, sim_url: str, processor: Processor) -> list[str]:
    refs = processor.references(n)
    csv = env.workdir / "payments.csv"
    lines = ["connection,payment_reference,amount,currency,captured_at,order_id,invoice_id"]
    lines += [f"{processor.connection},{r},10000,EUR,2026-11-01T10:00:00Z,," for r in refs]
    csv.write_text("\n".join(lines) + "\n")
    env.cli("payments", "import", str(csv))
    sem = asyncio.Semaphore(64)
    async with httpx2.AsyncClient(base_url=sim_url, limits=httpx2.Limits(max_connections=64)) as client:

        async def one(ref: str) -> None:
            async with sem:
                await client.post(
                    "/_control/payments",
                    json={
                        "processor": processor.name,
                        "payment_reference": ref,
                        "amount": 10000,
                        "currency": "EUR",
                    },
                )

        await asyncio.gather(*(one(r) for r in refs))
    return refs


def roles_of(env: Env) -> cpu.Roles:
    """Who spends the cores: the web server and the worker (each its own session, so granian's and
    arq's processes count), the database's backends for this run and its own processes, Redis, the
    simulator, notify.py's webhook receiver, and this script (the load generator)."""
    started = ("web", "worker", "simulator", "receiver")
    sessions = {name: env.procs[name].pid for name in started if name in env.procs}
    redis, me = env.procs["redis"].pid, os.getpid()
    roles: cpu.Roles = {name: _in_session(leader) for name, leader in sessions.items()}
    if env.pg_name:
        name = env.pg_name
        roles["postgresql"] = lambda pid, session, command: _ours_or_shared(command, name)
    roles["redis"] = lambda pid, session, command: pid == redis
    roles["load generator"] = lambda pid, session, command: pid == me
    return roles


def _in_session(leader: int) -> Callable[[int, int, str], bool]:
    return lambda pid, session, command: session == leader


def _ours_or_shared(command: str, database: str) -> bool:
    """A PostgreSQL backend of this run's database, or one of the server's own processes (WAL
    writer, checkpointer…: they work for our commits). Backends of other databases are left out."""
    if not command.startswith("postgres:"):
        return False
    is_backend = "(" in command or "[local]" in command
    return f" {database} " in command or not is_backend


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def db_fetch(env: Env, sql: str) -> list[Any]:
    url = env.vars["REFUNDWATCH_DATABASE_URL"]
    if env.backend == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            return conn.execute(sql).fetchall()
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def redis_calls(env: Env) -> dict[str, int]:
    """Commands the run's private Redis has served so far, by command (scripts: EVALSHA and each
    command inside it)."""
    client = redis.Redis.from_url(env.vars["REFUNDWATCH_REDIS_URL"])
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


async def _unsealed(env: Env) -> int:
    """Audit entries the worker has not chained yet."""
    return int((await db_fetch(env, "SELECT count(*) FROM audit_log WHERE seq IS NULL"))[0][0])


def seconds(value: Any) -> float:
    if isinstance(value, str):
        import datetime as dt

        return dt.datetime.fromisoformat(value).timestamp()
    return float(value.timestamp())


async def run_backend(
    backend: str,
    processor: Processor,
    n: int,
    k: int,
    web_workers: int,
    pg_admin: str,
    profile: Path | None = None,
    intake_only: bool = False,
) -> dict[str, Any]:
    env = await make_env(backend, pg_admin)
    sim_port, web_port = free_port(), free_port()
    sim_url, web_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{web_port}"
    try:
        env.cli("db", "upgrade")
        (env.workdir / "c.toml").write_text(processor.connection_toml(sim_url))
        env.cli("connections", "import", str(env.workdir / "c.toml"))
        key = env.cli("apikeys", "create", "--name", "bench", "--scopes", "refunds:read,refunds:write")
        env.start(
            "simulator",
            "refundwatch.simulator",
            "--port",
            str(sim_port),
            *processor.simulator_args(env.workdir, sim_url, web_url),
        )
        env.start(
            "web",
            "refundwatch",
            "serve",
            "--port",
            str(web_port),
            "--workers",
            str(web_workers),
            profile=profile and profile.with_name(f"{profile.stem}-{backend}-{processor.label}-web.txt"),
            subprocesses=True,
        )
        await wait_http(f"{sim_url}/_control/faults")
        await wait_http(f"{web_url}/healthz")
        async with httpx2.AsyncClient() as c:
            for faults in processor.faults():
                (await c.post(f"{sim_url}/_control/faults", json=faults)).raise_for_status()
        refs = await seed(env, n * 2 + 1000, sim_url, processor)
        bench_refs, floor_refs, steady_refs = refs[:n], refs[n : 2 * n], refs[2 * n :]

        # floor: raw POSTs to the simulator, encoded like the adapter's, same concurrency
        floor = await processor.floor(sim_url, floor_refs, k)

        # intake, no worker running
        auth = {"Authorization": f"Bearer {key}"}
        bodies = [
            {"payment_reference": r, "amount": 1000, "currency": "EUR", "reason": "return"}
            for r in bench_refs
        ]
        roles = roles_of(env)
        before = cpu.snapshot(roles)
        intake = await loadgen.post_all(f"{web_url}/api/v1/refunds", auth, bodies, k)
        intake_cpu = cpu.per_request(before, cpu.snapshot(roles), n)
        intake_figures = {
            "backend": backend,
            "processor": processor.label,
            "n": n,
            "k": k,
            "web_workers": web_workers,
            "floor_rps": n / floor.seconds,
            "floor_errors": floor.errors,
            "intake_rps": n / intake.seconds,
            "intake_p50": pct(intake.latencies_ms, 50),
            "intake_p99": pct(intake.latencies_ms, 99),
            "intake_errors": intake.errors,
            "intake_cpu": intake_cpu,
        }
        if intake_only:
            return intake_figures

        # execution: one worker drains the queue
        tokens_before = await processor.tokens_issued(sim_url)
        worker = env.start(
            "worker",
            "refundwatch",
            "worker",
            profile=profile and profile.with_name(f"{profile.stem}-{backend}-{processor.label}.txt"),
        )
        roles = roles_of(env)
        before, redis_before = cpu.snapshot(roles), await redis_calls(env)
        peak_rss = 0.0
        deadline = time.monotonic() + max(120, n / 50)
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, rss_mb(worker.pid))
            (open_count,) = (await db_fetch(env, "SELECT count(*) FROM refunds WHERE finalized_at IS NULL"))[
                0
            ]
            if open_count == 0:
                break
            await asyncio.sleep(0.5)
        span = (await db_fetch(env, "SELECT min(submitted_at), max(finalized_at) FROM refunds"))[0]
        exec_s = seconds(span[1]) - seconds(span[0])
        exec_cpu = cpu.per_request(before, cpu.snapshot(roles), n)
        tokens_after = await processor.tokens_issued(sim_url)
        exec_redis = {
            command: (calls - redis_before.get(command, 0)) / n
            for command, calls in (await redis_calls(env)).items()
        }

        # latency at a steady rate below capacity, once the worker has sealed the audit chain: its
        # backlog (several entries per refund) would otherwise be measured as latency
        sealing_started = time.monotonic()
        unsealed = left = await _unsealed(env)
        while left:
            if time.monotonic() - sealing_started > 300:
                raise SystemExit("the worker did not seal the audit chain within 5 minutes")
            await asyncio.sleep(0.5)
            left = await _unsealed(env)
        sealing_s = time.monotonic() - sealing_started
        rate = 100
        async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=k), timeout=60) as client:
            tasks = []
            started = time.perf_counter()
            for i, ref in enumerate(steady_refs):
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                tasks.append(
                    asyncio.create_task(
                        client.post(
                            f"{web_url}/api/v1/refunds",
                            json={
                                "payment_reference": ref,
                                "amount": 1000,
                                "currency": "EUR",
                                "reason": "return",
                            },
                            headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                        )
                    )
                )
            await asyncio.gather(*tasks)
        steady = "','".join(steady_refs)
        while (
            await db_fetch(
                env,
                f"SELECT count(*) FROM refunds WHERE finalized_at IS NULL "
                f"AND payment_reference IN ('{steady}')",
            )
        )[0][0]:
            await asyncio.sleep(0.3)
        rows = await db_fetch(
            env, f"SELECT created_at, finalized_at FROM refunds WHERE payment_reference IN ('{steady}')"
        )
        final_lat = [(seconds(f) - seconds(c)) * 1000 for c, f in rows]
        peak_rss = max(peak_rss, rss_mb(worker.pid))

        statuses = dict(await db_fetch(env, "SELECT status, count(*) FROM refunds GROUP BY status"))
        async with httpx2.AsyncClient() as c:
            ledger = (await c.get(f"{sim_url}/_control/ledger", params={"processor": processor.name})).json()
        keys = [row["idempotency_key"] for row in ledger if (row["idempotency_key"] or "").startswith("rw_")]
        duplicates = len(keys) - len(set(keys))
        total = n + len(steady_refs)
        lost = total - statuses.get("succeeded", 0)
        return {
            **intake_figures,
            "exec_cpu": exec_cpu,
            "exec_redis": exec_redis,
            "exec_rps": n / exec_s,
            # token calls the simulator answered while the worker drained the queue (None: no tokens)
            "exec_token_calls": None if tokens_after is None else tokens_after - (tokens_before or 0),
            "final_p50": pct(final_lat, 50),
            "final_p95": pct(final_lat, 95),
            "final_p99": pct(final_lat, 99),
            "worker_rss_mb": peak_rss,
            "unsealed": unsealed,
            "sealing_s": sealing_s,
            "statuses": statuses,
            "ledger_rows": len(keys),
            "duplicates": duplicates,
            "lost": lost,
        }
    finally:
        env.stop_all()
        await _stack.drop_database(pg_admin, env.pg_name)
        shutil.rmtree(env.workdir, ignore_errors=True)


def report(r: dict[str, Any]) -> None:
    settle = {
        "adyen": f", REFUND notification {SETTLE_MS} ms after receipt",
        "checkout": f", payment_refunded webhook {SETTLE_MS} ms after the 202",
    }.get(r["processor"], "")
    print(
        f"\n== {r['backend']}, {r['processor']}: N={r['n']} K={r['k']} web workers={r['web_workers']}, "
        f"simulator latency {LATENCY_MS} ms{settle}, one refundwatch worker"
    )
    print(f"floor (raw POSTs to simulator) {r['floor_rps']:8.0f} req/s   errors {r['floor_errors']}")
    print(
        f"intake                        {r['intake_rps']:8.0f} POST/s  p50 {r['intake_p50']:.1f} ms  "
        f"p99 {r['intake_p99']:.1f} ms  errors {r['intake_errors']}"
    )
    print(f"  intake CPU: {cpu.describe(r['intake_cpu'])}")
    if "exec_rps" not in r:
        return
    print(
        f"execution queued -> final     {r['exec_rps']:8.0f} refunds/s  "
        f"({r['exec_rps'] / r['floor_rps']:.2f} of floor)"
    )
    print(f"  execution CPU: {cpu.describe(r['exec_cpu'])}")
    if r.get("exec_token_calls") is not None:
        print(
            f"  token calls: {r['exec_token_calls']} during execution, "
            f"{r['exec_token_calls'] * 1000 / r['n']:.2f} per 1,000 refunds"
        )
    busiest = sorted(r["exec_redis"].items(), key=lambda item: -item[1])[:4]
    print(
        f"  execution Redis commands: {sum(r['exec_redis'].values()):.1f} per refund ("
        + ", ".join(f"{command} {calls:.1f}" for command, calls in busiest)
        + ")"
    )
    print(
        f"accept -> final (100/s)       p50 {r['final_p50']:.0f} ms  p95 {r['final_p95']:.0f} ms  "
        f"p99 {r['final_p99']:.0f} ms"
    )
    print(
        f"audit chain                   {r['unsealed']} entries left to seal after execution, "
        f"sealed in {r['sealing_s']:.1f} s (the latency phase waits for that)"
    )
    print(f"worker RSS peak               {r['worker_rss_mb']:.0f} MB")
    print(
        f"statuses {r['statuses']}  ledger rows {r['ledger_rows']}  duplicates {r['duplicates']}  "
        f"lost {r['lost']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument(
        "--processor",
        default="stripe",
        help="stripe, adyen, … ; both (stripe,adyen), all, or a comma list (stripe runs first)",
    )
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("-k", type=int, default=32)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--profile",
        type=Path,
        help="write py-spy profiles of the worker and the web processes next to this path",
    )
    parser.add_argument("--intake-only", action="store_true", help="stop after the intake phase")
    parser.add_argument("--pg-admin", default=_stack.PG_ADMIN)
    args = parser.parse_args()
    print(cpu.machine())
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    processors = chosen(args.processor)
    if not processors:
        parser.error(f"--processor: choose from {', '.join(PROCESSORS)}, both or all")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for backend in backends:
        for name in processors:
            result = asyncio.run(
                run_backend(
                    backend,
                    PROCESSORS[name],
                    args.n,
                    args.k,
                    args.web_workers,
                    args.pg_admin,
                    args.profile,
                    args.intake_only,
                )
            )
            results[backend, name] = result
            report(result)
    if "stripe" in processors and len(processors) > 1:
        compare(results, backends, [p for p in processors if p != "stripe"])
    if "stripe+webhooks" in processors and len(processors) > 1:
        others = [p for p in processors if p not in ("stripe", "stripe+webhooks")]
        compare(results, backends, others, base="stripe+webhooks")


def chosen(spec: str) -> list[str]:
    """The processors to run, Stripe first (the others are compared with it); [] when unknown."""
    every = [name for name in PROCESSORS if name != "stripe+webhooks"]
    names = {"both": ["stripe", "adyen"], "all": every}.get(spec, spec.split(","))
    if any(name not in PROCESSORS for name in names):
        return []
    return sorted(dict.fromkeys(names), key=lambda name: name != "stripe")


def compare(
    results: dict[tuple[str, str], dict[str, Any]],
    backends: list[str],
    others: list[str],
    base: str = "stripe",
) -> None:
    """Each processor's figures as ratios of Stripe's, backend by backend (same run, same machine)."""
    key = "exec_rps" if "exec_rps" in results[backends[0], base] else "intake_rps"
    target = "; target >= 0.90" if base == "stripe" else "; for comparison, not the target's base"
    print(f"\n== each / {base} ({'execution' if key == 'exec_rps' else 'intake'}{target})")
    for backend in backends:
        stripe = results[backend, base]
        for name in others:
            other = results[backend, name]
            integrity = ""
            if key == "exec_rps":
                integrity = "  duplicates/lost " + ", ".join(
                    f"{p} {r['duplicates']}/{r['lost']}" for p, r in ((base, stripe), (name, other))
                )
            if other.get("exec_token_calls") is not None:
                integrity += f"  {name} token calls/1,000 {other['exec_token_calls'] * 1000 / other['n']:.2f}"
            print(
                f"{backend:10}  {base} {stripe[key]:6.0f}/s  {name} {other[key]:6.0f}/s  "
                f"ratio {other[key] / stripe[key]:.2f}{integrity}"
            )


if __name__ == "__main__":
    main()
