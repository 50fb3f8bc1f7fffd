"""Reconciliation benchmark: import N settlement lines, and match lines against refunds (issue 14).

Usage:  .venv/bin/python bench/reconcile.py [--backend postgresql|sqlite|both] [-n 1000000]
            [--match-n 20000]

Per backend, on a fresh database with one Stripe connection:
  floor    the same report file read with ``csv`` and inserted raw (one text column per line) in batches
           of 2,000 through the same driver and engine: the plain bulk load the import is compared with
  import   ``reconciliation.importing.import_report`` on N lines of Stripe's itemized report (parse,
           normalise, store raw and normalised, in committed batches), in a child process: seconds,
           lines/s, the ratio to the floor, and the child's peak RSS
  match    ``--match-n`` refunds seeded as succeeded, a report of their lines imported, then
           ``matching.match_lines``: lines/s, and N at that rate
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
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

import cpu  # bench/: a script's own directory is on its path

PY = sys.executable
CONNECTION = "stripe-bench"
COLUMNS = [
    "automatic_payout_id",
    "reporting_category",
    "balance_transaction_id",
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "source_id",
    "charge_id",
    "payment_intent_id",
    "refund_metadata[refundwatch_refund_id]",
]


def write_report(path: Path, refunds: list[tuple[str, str, int]] | None, n: int) -> None:
    """Stripe's itemized report: one refund line each (``refunds``: (refund id, re_ id, amount))."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(n):
            ours, gateway, amount = refunds[i] if refunds else ("", f"re_bench{i:010d}", 100 + i % 9_900)
            gross = f"-{amount // 100}.{amount % 100:02d}"
            writer.writerow(
                [
                    f"po_bench{i // 50_000:04d}",
                    "refund",
                    f"txn_bench{i:010d}",
                    "2026-12-06 10:00:00",
                    "eur",
                    gross,
                    "0.00",
                    gross,
                    gateway,
                    f"ch_bench{i:010d}",
                    f"pi_bench{i:010d}",
                    ours,
                ]
            )


# The child processes: each prints one JSON line (its figures and its own peak RSS).
_CHILD = r"""
import asyncio, json, resource, sys, time
from pathlib import Path
from refundwatch.audit.actions import Actor
from refundwatch.runtime import Runtime

async def main(step: str, arg: str) -> dict:
    rt = Runtime.build()
    try:
        started = time.perf_counter()
        if step == "floor":
            from bench_floor import load
            lines = await load(rt, Path(arg))
        elif step == "import":
            from refundwatch.reconciliation.importing import import_report
            lines = (await import_report(rt, "stripe-bench", Path(arg), Actor("system", "bench"))).lines
        elif step == "seed":
            from bench_seed import seed
            lines = await seed(rt, int(arg), Path(sys.argv[3]))
        else:
            from refundwatch.reconciliation.matching import match_lines
            lines = (await match_lines(rt)).lines
        seconds = time.perf_counter() - started
    finally:
        await rt.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"lines": lines, "seconds": seconds, "rss_mb": peak_mb}

print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
"""

_FLOOR = r'''
"""The plain bulk load: the file's lines as raw text, in batches, through the same engine."""
import csv
from pathlib import Path
from sqlalchemy import text

async def load(rt, path: Path) -> int:
    async with rt.db.write_connection() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS bench_plain (line TEXT NOT NULL)"))
    count, batch = 0, []
    statement = text("INSERT INTO bench_plain (line) VALUES (:line)")
    with path.open(newline="") as stream:
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
"""Succeeded refunds with their processor refund ids, written as refundwatch stores them (ORM)."""
import datetime as dt, uuid
from pathlib import Path
from refundwatch.db.models import Payment, Refund

async def seed(rt, n: int, listing: Path) -> int:
    conn = await rt.connections.by_name("stripe-bench")
    now = dt.datetime.now(dt.UTC)
    rows = []
    for start in range(0, n, 2000):
        async with rt.db.session() as session:
            numbers = range(start, min(n, start + 2000))
            payments = [
                Payment(
                    connection_id=conn.id, payment_reference=f"pi_seed{i:010d}", amount=10_000,
                    currency="EUR", captured_at=now, refunded_amount=100 + i % 9_900,
                    reserved_amount=100 + i % 9_900,
                )
                for i in numbers
            ]
            session.add_all(payments)
            await session.flush()
            refunds = [
                Refund(
                    payment_id=payment.id, connection_id=conn.id, amount=payment.refunded_amount,
                    currency="EUR", payment_reference=payment.payment_reference, reason="return",
                    metadata_={}, status="succeeded", gateway_idempotency_key=f"rw_seed{i}",
                    gateway_refund_id=f"re_seed{i:010d}", client_scope="client:bench",
                    idempotency_key=f"seed-{i}", request_fingerprint="0" * 64, created_by="bench",
                    finalized_at=now,
                )
                for i, payment in zip(numbers, payments)
            ]
            session.add_all(refunds)
            await session.flush()
            rows += [f"{r.id},{r.gateway_refund_id},{r.amount}" for r in refunds]
            await session.commit()
    listing.write_text("\n".join(rows))
    return n
'''


def child(workdir: Path, env: dict[str, str], *args: str) -> dict[str, float]:
    out = subprocess.run(
        [PY, "-c", _CHILD, *args],
        env={**env, "PYTHONPATH": str(workdir)},
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    if out.returncode:
        raise SystemExit(f"{args[0]} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cli(env: dict[str, str], workdir: Path, *args: str) -> None:
    out = subprocess.run(
        [PY, "-m", "refundwatch", *args], env=env, capture_output=True, text=True, check=False, cwd=workdir
    )
    if out.returncode:
        raise SystemExit(f"refundwatch {' '.join(args)}: {out.stderr.strip()}")


async def run_backend(backend: str, n: int, match_n: int, pg_admin: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"rw-bench-reconcile-{backend}-"))
    pg_name = None
    if backend == "sqlite":
        db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    else:
        pg_name = f"refundwatch_bench_reconcile_{os.getpid()}"
        conn = await asyncpg.connect(pg_admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')
        await conn.execute(f'CREATE DATABASE "{pg_name}"')
        await conn.close()
        db_url = pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{pg_name}"
    env = {
        **os.environ,
        "REFUNDWATCH_MODE": "test",
        "REFUNDWATCH_DATABASE_URL": db_url,
        "REFUNDWATCH_LOG_LEVEL": "WARNING",
    }
    (workdir / "bench_floor.py").write_text(_FLOOR)
    (workdir / "bench_seed.py").write_text(_SEED)
    try:
        cli(env, workdir, "db", "upgrade")
        (workdir / "connections.toml").write_text(
            f'[[connection]]\nname = "{CONNECTION}"\nprocessor = "stripe"\n'
            'base_url = "http://127.0.0.1:9/stripe"\napi_key = "sk_test_bench"\n'
            'webhook_secret = "whsec_bench"\n'
        )
        cli(env, workdir, "connections", "import", str(workdir / "connections.toml"))
        # Matching first, on a database holding only the seeded refunds and their report.
        listing = workdir / "seeded.txt"
        seeded = child(workdir, env, "seed", str(match_n), str(listing))
        refunds = []
        for row in listing.read_text().splitlines():
            ours, gateway, amount = row.split(",")
            refunds.append((ours, gateway, int(amount)))
        ours_report = workdir / "payout_reconciliation_seeded.csv"
        write_report(ours_report, refunds, match_n)
        child(workdir, env, "import", str(ours_report))
        matched = child(workdir, env, "match", "-")
        rate = matched["lines"] / matched["seconds"]
        # Then the large report: imported only (its refunds are unknown here, so it is not matched).
        report = workdir / "payout_reconciliation_bench.csv"
        write_report(report, None, n)
        size_mb = report.stat().st_size / 1e6
        floor = child(workdir, env, "floor", str(report))
        imported = child(workdir, env, "import", str(report))
        ratio = imported["seconds"] / floor["seconds"]
        print(f"== {backend}: {n:,} lines ({size_mb:.0f} MB Stripe itemized report)")
        print(
            f"floor (csv + raw insert, batches of 2,000)  {floor['seconds']:7.1f} s  "
            f"{n / floor['seconds']:9,.0f} lines/s"
        )
        print(
            f"import (parse, normalise, store)            {imported['seconds']:7.1f} s  "
            f"{n / imported['seconds']:9,.0f} lines/s  {ratio:.2f}x the floor  "
            f"peak RSS {imported['rss_mb']:.0f} MB"
        )
        print(
            f"match ({seeded['lines']:,.0f} refunds, their {matched['lines']:,.0f} lines)      "
            f"{matched['seconds']:7.1f} s  {rate:9,.0f} lines/s  peak RSS {matched['rss_mb']:.0f} MB"
        )
        print(f"import + match of {n:,} lines at these rates: {imported['seconds'] + n / rate:,.0f} s")
    finally:
        if pg_name:
            conn = await asyncpg.connect(pg_admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await conn.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--match-n", type=int, default=20_000)
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    load1, _, _ = os.getloadavg()
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; calibration loop {cpu.calibrate():.0f} ms; "
        f"load {load1:.2f}"
    )
    for backend in ("postgresql", "sqlite") if args.backend == "both" else (args.backend,):
        asyncio.run(run_backend(backend, args.n, args.match_n, args.pg_admin))


if __name__ == "__main__":
    main()
