"""Reconciliation benchmark: import N settlement lines and match them against N refunds (issue 14).

Usage:  .venv/bin/python bench/reconcile.py [--backend postgresql|sqlite|both] [-n 1000000]

Per backend, on a fresh database with one Stripe connection:
  seed     N succeeded refunds (and their payments) written straight in SQL, then a Stripe itemized
           report of their N refund lines, in the simulator's columns (not timed)
  floor    the same report file read with ``csv`` and inserted raw (one text column per line) in batches
           of 2,000 through the same driver and engine: the plain bulk load the import is compared with
  import   ``reconciliation.importing.import_report`` on that report (parse, normalise, store raw and
           normalised), in a child process: seconds, lines/s, the ratio to the floor, its peak RSS
  match    ``matching.match_lines`` on the imported lines, in a child process: seconds, lines/s, peak RSS
Targets (issue 14): import and match 1,000,000 lines in <= 60 s on PostgreSQL, <= 120 s on SQLite, peak
memory <= 300 MB. Nothing here is a timed assertion; it prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import _stack  # bench/: a script's own directory is on its path
import cpu
from refundwatch.simulator.stripe.settlement import COLUMNS

CONNECTION = "stripe-bench"
TARGET_S = {"postgresql": 60, "sqlite": 120}
TARGET_MB = 300


def write_report(path: Path, refunds: list[tuple[str, str, int]]) -> None:
    """Stripe's itemized report in the simulator's columns: one refund line per (refund id, re_ id,
    amount)."""
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
        writer.writeheader()
        for i, (ours, gateway, amount) in enumerate(refunds):
            gross = f"-{amount // 100}.{amount % 100:02d}"
            writer.writerow(
                {
                    "automatic_payout_id": f"po_bench{i // 50_000:04d}",
                    "automatic_payout_effective_at_utc": "2026-12-08 00:00:00",
                    "balance_transaction_id": f"txn_bench{i:010d}",
                    "created_utc": f"2026-12-06 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
                    "available_on_utc": "2026-12-08 00:00:00",
                    "currency": "eur",
                    "gross": gross,
                    "fee": "0.00",
                    "net": gross,
                    "reporting_category": "refund",
                    "source_id": gateway,
                    "description": "REFUND FOR CHARGE",
                    "charge_id": f"ch_bench{i:010d}",
                    "payment_intent_id": f"pi_seed{i:010d}",
                    COLUMNS[-1]: ours,  # refund_metadata[refundwatch_refund_id]
                }
            )


# The child processes: each prints one JSON line (its figures and its own peak RSS).
_CHILD = r"""
import asyncio, json, os, resource, sys, time
from pathlib import Path
from sqlalchemy import text
from refundwatch.audit.actions import Actor
from refundwatch.runtime import Runtime

async def main(step: str, arg: str) -> dict:
    rt = Runtime.build()
    try:
        if step == "floor":
            from bench_floor import load as work
        elif step == "seed":
            from bench_seed import seed as work
        elif step == "import":
            from refundwatch.reconciliation.importing import import_report
            async def work(rt, arg):
                done = await import_report(rt, "stripe-bench", Path(arg), Actor("system", "bench"))
                return done.lines, done.matched
        else:
            from refundwatch.reconciliation.matching import match_lines
            async def work(rt, arg):
                done = await match_lines(rt)
                return done.lines, done.matched
        started, cpu = time.perf_counter(), time.process_time()
        lines = await work(rt, arg)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        lines, matched = lines if isinstance(lines, tuple) else (lines, 0)
        db_cpu = await database_cpu(rt)
    finally:
        await rt.close()
    return {
        "lines": lines, "matched": matched, "seconds": seconds, "rss_mb": peak_mb(), "cpu": cpu,
        "db_cpu": db_cpu,
    }

async def database_cpu(rt) -> float:
    # The CPU seconds of this database's PostgreSQL backends (this step's pool; the database is the
    # run's own), read from /proc: the server runs here. On a shared machine CPU is steadier than wall.
    if rt.db.is_sqlite:
        return 0.0
    async with rt.db.read_engine.connect() as conn:
        pids = (await conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ))).scalars().all()
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total

def peak_mb() -> float:
    # VmHWM: this process image's own peak. ru_maxrss would carry the parent's size over from the fork.
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
"""

_FLOOR = r'''
"""The plain bulk load: the file's lines as raw text, in batches, through the same engine."""
import csv
from pathlib import Path
from sqlalchemy import text

async def load(rt, arg: str) -> int:
    async with rt.db.write_connection() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS bench_plain (line TEXT NOT NULL)"))
    count, batch = 0, []
    statement = text("INSERT INTO bench_plain (line) VALUES (:line)")
    with Path(arg).open(newline="") as stream:
        reader = csv.reader(stream)
        next(reader)
        for row in reader:
            batch.append({"line": ",".join(row)})
            if len(batch) >= 2000:
                async with rt.db.write_connection() as conn:
                    await conn.execute(statement, batch)
                count += len(batch)
                batch = []
    if batch:
        async with rt.db.write_connection() as conn:
            await conn.execute(statement, batch)
        count += len(batch)
    return count
'''

_SEED = r'''
"""N succeeded refunds with their processor refund ids and payments, generated by the database itself
(a million rows through the ORM would take longer than the run). The listing (id, re_ id, amount) is
written next to the database for the report."""
import datetime as dt
from pathlib import Path
from sqlalchemy import bindparam, select, text
from refundwatch.db.models import Payment, Refund

PAYMENT = Payment.__table__
REFUND = Refund.__table__
PG = {
    "with": "",
    "numbers": "generate_series(0, :n - 1) AS s(i)",
    "id": "gen_random_uuid()",
    "pad": "lpad(i::text, 10, '0')",
}
SQLITE = {
    "with": "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :n) ",
    "numbers": "s",
    "id": "randomblob(16)",
    "pad": "printf('%010d', i)",
}

async def seed(rt, arg: str) -> int:
    n = int(arg)
    conn = await rt.connections.by_name("stripe-bench")
    sql = SQLITE if rt.db.is_sqlite else PG
    payments = text(
        f"{sql['with']}INSERT INTO payments (id, connection_id, payment_reference, amount, currency, "
        "captured_at, reserved_amount, refunded_amount, created_at, updated_at) "
        f"SELECT {sql['id']}, :conn, 'pi_seed' || {sql['pad']}, 10000, 'EUR', :now, 100 + i % 9900, "
        f"100 + i % 9900, :now, :now FROM {sql['numbers']}"
    )
    refunds = text(
        "INSERT INTO refunds (id, payment_id, connection_id, payment_reference, amount, currency, reason, "
        "metadata_encrypted, status, gateway_idempotency_key, gateway_refund_id, attempts, client_scope, "
        "idempotency_key, request_fingerprint, created_by, finalized_at, lookup_before_send, created_at, "
        f"updated_at) SELECT {sql['id']}, id, connection_id, payment_reference, refunded_amount, 'EUR', "
        "'return', :metadata, 'succeeded', 'rw_' || payment_reference, 're_' || payment_reference, 0, "
        "'client:bench', payment_reference, :fingerprint, 'bench', :now, false, :now, :now FROM payments "
        "WHERE connection_id = :conn"
    )
    now = dt.datetime.now(dt.UTC)
    types = (
        bindparam("conn", type_=PAYMENT.c.connection_id.type),
        bindparam("now", type_=PAYMENT.c.captured_at.type),
        bindparam("metadata", type_=REFUND.c.metadata_encrypted.type),
    )
    async with rt.db.write_connection() as c:
        await c.execute(payments.bindparams(*types[:2]), {"n": n, "conn": conn.id, "now": now})
        await c.execute(
            refunds.bindparams(*types),
            {"conn": conn.id, "now": now, "metadata": {}, "fingerprint": "0" * 64},
        )
        if not rt.db.is_sqlite:  # as a database that grew over time would have them
            await c.execute(text("ANALYZE payments"))
            await c.execute(text("ANALYZE refunds"))
    query = select(REFUND.c.id, REFUND.c.gateway_refund_id, REFUND.c.amount).order_by(
        REFUND.c.gateway_refund_id
    )
    with Path("seeded.txt").open("w") as out:
        for row in await rt.db.fetch_all(query):
            out.write(f"{row.id},{row.gateway_refund_id},{row.amount}\n")
    return n
'''


def _cpu(step: dict[str, float]) -> str:
    """A step's CPU seconds: its Python process, and its PostgreSQL backends."""
    found = f"CPU: Python {step['cpu']:.1f} s"
    return found + (f", PostgreSQL {step['db_cpu']:.1f} s" if step["db_cpu"] else "")


def child(workdir: Path, env: dict[str, str], *args: str) -> dict[str, float]:
    command = [_stack.PY, "-c", _CHILD, *args]
    if os.environ.get("BENCH_PYSPY") and args[0] in os.environ["BENCH_PYSPY"].split(","):
        # e.g. BENCH_PYSPY=match: that step sampled by py-spy, its collapsed stacks written in /tmp
        stacks = f"/tmp/bench-reconcile-{args[0]}-{os.getpid()}.txt"
        spy = str(Path(_stack.PY).parent / "py-spy")
        command = [spy, "record", "-r", "200", "-f", "raw", "-o", stacks, "--", *command]
    out = subprocess.run(
        command,
        env={**env, "PYTHONPATH": str(workdir)},
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    if out.returncode:
        raise SystemExit(f"{args[0]} failed: {out.stderr.strip()[-2000:]}")
    last = [row for row in out.stdout.splitlines() if row.startswith("{")][-1]  # py-spy prints too
    result: dict[str, float] = json.loads(last)
    return result


async def run_backend(backend: str, n: int, pg_admin: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"rw-bench-reconcile-{backend}-"))
    db_url, pg_name = await _stack.create_database(backend, workdir, pg_admin, "refundwatch_bench_reconcile")
    env = _stack.base_vars(db_url)
    (workdir / "bench_floor.py").write_text(_FLOOR)
    (workdir / "bench_seed.py").write_text(_SEED)
    try:
        _stack.cli(env, workdir, "db", "upgrade")
        (workdir / "connections.toml").write_text(
            f'[[connection]]\nname = "{CONNECTION}"\nprocessor = "stripe"\n'
            'base_url = "http://127.0.0.1:9/stripe"\napi_key = "sk_test_bench"\n'
            'webhook_secret = "whsec_bench"\n'
        )
        _stack.cli(env, workdir, "connections", "import", str(workdir / "connections.toml"))
        child(workdir, env, "seed", str(n))
        refunds = []
        with (workdir / "seeded.txt").open() as listing:
            for row in listing:
                ours, gateway, amount = row.rstrip("\n").split(",")
                refunds.append((ours, gateway, int(amount)))
        report = workdir / "payout_reconciliation_bench.csv"
        write_report(report, refunds)
        del refunds
        size_mb = report.stat().st_size / 1e6
        floor = child(workdir, env, "floor", str(report))
        imported = child(workdir, env, "import", str(report))
        matched = child(workdir, env, "match", "-")
        # On PostgreSQL the import stores the lines that agree with their refund already matched;
        # matching decides the rest. Every line must end matched either way.
        if imported["lines"] != n or imported["matched"] + matched["matched"] != n:
            raise SystemExit(
                f"imported {imported['lines']:.0f} lines of {n}, {imported['matched']:.0f} matched as "
                f"stored and {matched['matched']:.0f} by matching"
            )
        ratio = imported["seconds"] / floor["seconds"]
        total = imported["seconds"] + matched["seconds"]
        peak = max(imported["rss_mb"], matched["rss_mb"])
        print(f"== {backend}: {n:,} lines ({size_mb:.0f} MB Stripe itemized report) against {n:,} refunds")
        print(
            f"floor (csv + raw insert, batches of 2,000)  {floor['seconds']:7.1f} s  "
            f"{n / floor['seconds']:9,.0f} lines/s  {_cpu(floor)}"
        )
        print(
            f"import (parse, normalise, store)            {imported['seconds']:7.1f} s  "
            f"{n / imported['seconds']:9,.0f} lines/s  {ratio:.2f}x the floor  "
            f"peak RSS {imported['rss_mb']:.0f} MB  ({imported['matched']:,.0f} stored matched)  "
            f"{_cpu(imported)}"
        )
        print(
            f"match                                       {matched['seconds']:7.1f} s  "
            f"{n / matched['seconds']:9,.0f} lines/s  peak RSS {matched['rss_mb']:.0f} MB  "
            f"({matched['lines']:,.0f} lines left to match)  {_cpu(matched)}"
        )
        print(
            f"import + match                              {total:7.1f} s  "
            f"(target {TARGET_S[backend]} s at 1,000,000 lines; peak RSS {peak:.0f} MB, "
            f"target {TARGET_MB} MB)"
        )
    finally:
        await _stack.drop_database(pg_admin, pg_name)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--pg-admin", default=_stack.PG_ADMIN)
    args = parser.parse_args()
    load1, _, _ = os.getloadavg()
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; calibration loop {cpu.calibrate():.0f} ms; "
        f"load {load1:.2f}"
    )
    for backend in ("postgresql", "sqlite") if args.backend == "both" else (args.backend,):
        asyncio.run(run_backend(backend, args.n, args.pg_admin))


if __name__ == "__main__":
    main()
