"""Dashboard benchmark (issue 4 §4): each panel and the whole page on 1,000,000 refunds and 30 days of health
checks on PostgreSQL, then status change → browser over SSE with 500 viewers on one web process.

Usage:  .venv/bin/python bench/dashboard.py [--refunds 1000000] [--viewers 500] [--skip-sse] [--keep]

Sign-in is bypassed on purpose: the bench writes a viewer session straight into the private Redis with
the app's own ``SessionStore`` and sends its id as the ``rw_session`` cookie on every request. Signing in
through OIDC is not what is measured here.

Phases, on a fresh database ``rw_bench_dash_<random>`` (dropped at the end unless ``--keep``) and a
private Redis:

  seed        server-side SQL only (no API): 3 Stripe connections pointing at the simulator, 3,000
              payments, N refunds spread over 30 days with time-ordered (UUIDv7-layout) ids — ~95%
              succeeded, 3% failed (six error/processor codes), 1% reversed, a few canceled and
              rejected, and ~300 unfinished among the newest (pending_approval, queued, retrying,
              processing, manual_review; the queued and retrying ones carry a next attempt in 30 days
              so the worker of the SSE phase leaves them alone) — the refund_stats rollups the worker
              would have folded from them (every resolution of dashboard.rollups.RESOLUTIONS:
              minutes for the MINUTE_ROWS_KEPT 2 days, hours and days for 30), one health check per
              connection every 30 s for 30 days (stripe-a and stripe-c: a 25-minute outage and a few
              stray failures; stripe-b never failed) and their health_stats; then VACUUM ANALYZE.
              No refund_events: no panel reads them.
  floor       GET /healthz, the same number of requests in the same run (the ratios' base)
  panels      one web process (``refundwatch serve``, one granian worker), a keep-alive client: every
              panel for every range, for all connections and for one, R requests after W warm-ups,
              one after the other → p50/p99; the same for the whole page ``/``
  concurrent  8 viewers (own keep-alive connection each) looping over every panel for 1h, 24h and
              30d → per-panel p99; the floor likewise
  sse         the simulator (50 ms latency, webhooks to the app), a second web process for the API
              and one worker join. ``--viewers`` SSE connections to ``/dashboard/stream?range=1h`` on
              the FIRST web process (started first, so its broadcaster holds the lease and renders
              too), held by a separate client process (raw asyncio, its CPU is reported). The pipeline
              then runs at full speed: K clients POST refunds to the API process on two connections
              for ``--sse-seconds``, while 10 probe refunds/s go to the third one.
              Status change → browser: a change's time is its ``refund_events.at``; its arrival is the
              first ``feed`` event showing that refund id with that status at a probe viewer (a few
              viewers parse; the others only drain). A Redis subscriber on the views' channels notes
              when the leader published each feed, which splits the figure in two: change → published
              (notice, wait for the panel's turn, query, render) and published → browser (fan-out).
              Two views:
              - all-connections view, among the 500: every (refund, status) a probe saw. At full
                speed the feed (12 newest) shows only the refunds created just before each render,
                so most of the wait for the next render is left out.
              - one-connection view (``&connection=`` the probe connection, ``--conn-probes`` extra
                viewers): at 10/s a refund stays in that feed for ~1.2 s, so every creation shows,
                wait for the next render included; a later change shows only if the worker reaches
                the refund within that time (at full speed it runs behind, so it is mostly the
                creations). This second view doubles the leader's renders; ``--conn-probes 0``
                measures the single all-connections view alone.
              The leader's passes are reconstructed from the Redis log: publishes less than 50 ms
              apart are one pass (the gap before a publish: its render, or the fan-out before it).

``--keep`` keeps the database; ``--reuse DB --skip-panels`` measures a kept one again (its data ages:
the short ranges empty out), e.g. for the SSE phase alone. ``--profile FILE [--py-spy PATH]`` records a
py-spy profile (raw, collapsed stacks) of the SSE web process during the load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import platform
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import httpx2

from refundwatch.config import get_settings
from refundwatch.dashboard.rollups import MINUTE_ROWS_KEPT, RESOLUTIONS
from refundwatch.db.models._stats import LATENCY_BOUNDS_MS

sys.path.insert(0, str(Path(__file__).parent))
import cpu  # sibling scripts, not a package
import pipeline
from pipeline import Env, free_port, pct, wait_http

PY = sys.executable
LATENCY_MS = pipeline.LATENCY_MS
PANELS = ("success", "timing", "uptime", "feed", "wip", "outflow", "failures")
RANGES = ("15m", "1h", "24h", "7d", "30d")
CONNECTIONS = ("stripe-a", "stripe-b", "stripe-c")  # load on a and b, probes on c
FILTER = "stripe-a"  # the connection of the filtered measurements
SEED_PAYMENTS = 3000
LOAD_PAYMENTS = 1000  # per loaded connection (stripe-a, stripe-b), for the SSE phase
PROBE_PAYMENTS = 200
PROBE_RATE = 10  # probe refunds per second on stripe-c
OPEN_TAIL = 3000  # unfinished refunds are ~10% of the newest OPEN_TAIL
TARGETS = {"panel_p50": 10.0, "panel_p99": 50.0, "page_p99": 150.0, "conc_p99": 100.0}
SSE_TARGETS = {"p50": 100.0, "p99": 250.0}


# ----------------------------------------------------------------------------------------------- seeding


def u(i: str, k: int) -> str:
    """A uniform [0, 1) from a hash of (row, k): reproducible, and re-evaluated per row."""
    return f"((hashint8extended(({i})::bigint, {k}) & 2147483647)::float8 / 2147483648.0)"


def uuid7_sql(ts: str, salt: str) -> str:
    """A UUIDv7 layout as the app makes them: 48 bits of epoch ms, version 7, variant, hash bits."""
    h = f"md5(({salt})::text || 'rw')"
    return (
        f"(lpad(to_hex(floor(extract(epoch FROM {ts}) * 1000)::bigint), 12, '0') || '7' || "
        f"substr({h}, 1, 3) || substr('89ab', 1 + (({salt}) % 4)::int, 1) || substr({h}, 4, 15))::uuid"
    )


def pick(x: str, options: list[tuple[float, str]]) -> str:
    """CASE over cumulative weights: the value whose share ``x`` falls into."""
    arms, acc = [], 0.0
    for share, value in options[:-1]:
        acc += share
        arms.append(f"WHEN {x} < {acc:.6f} THEN {value}")
    return f"CASE {' '.join(arms)} ELSE {options[-1][1]} END"


FAILURES = [  # (share, error_code, processor_code) of failed refunds
    (0.40, "declined", "insufficient_funds"),
    (0.20, "declined", "expired_or_canceled_card"),
    (0.10, "declined", "lost_or_stolen_card"),
    (0.15, "amount_exceeds_refundable", "amount_too_large"),
    (0.10, "payment_not_found", "resource_missing"),
    (0.05, "processor_error", "api_error"),
]
REVERSALS = [(0.7, "declined", "charge_for_pending_refund_disputed"), (0.3, "declined", "unknown")]
OPEN = [  # (share, status) of the unfinished ones
    (0.25, "'pending_approval'"),
    (0.20, "'queued'"),
    (0.15, "'submitting'"),
    (0.25, "'processing'"),
    (0.15, "'manual_review'"),
]


def refunds_sql() -> str:
    """$1 start, $2 n, $3 span ms, $4 now, $5 payment ids, $6 connection ids, $7 references,
    $8 currencies, $9 metadata ciphertext."""
    status = (
        f"CASE WHEN i >= $2 - {OPEN_TAIL} AND {u('i', 7)} < 0.1 THEN {pick(u('i', 4), OPEN)} ELSE "
        + pick(
            u("i", 1),
            [
                (0.030, "'failed'"),
                (0.010, "'reversed'"),
                (0.002, "'canceled'"),
                (0.001, "'rejected'"),
                (0.957, "'succeeded'"),
            ],
        )
        + " END"
    )
    fail_code = pick(u("i", 4), [(s, f"'{e}'") for s, e, _ in FAILURES])
    fail_pcode = pick(u("i", 4), [(s, f"'{p}'") for s, _, p in FAILURES])
    rev_code = pick(u("i", 4), [(s, f"'{e}'") for s, e, _ in REVERSALS])
    rev_pcode = pick(u("i", 4), [(s, f"'{p}'") for s, _, p in REVERSALS])
    ms = "* interval '1 millisecond'"
    return f"""
    INSERT INTO refunds (id, payment_id, connection_id, payment_reference, amount, currency, reason, status,
        gateway_idempotency_key, gateway_refund_id, gateway_status, attempts, error_code, error_message,
        processor_code, client_scope, idempotency_key, request_fingerprint, created_by, submitted_at,
        accepted_at, finalized_at, next_attempt_at, created_at, updated_at, metadata_encrypted)
    SELECT id, ($5::uuid[])[p], ($6::uuid[])[p], ($7::text[])[p],
        CASE WHEN status = 'pending_approval' THEN 60000 ELSE 500 + floor({u("i", 6)} * 19500)::int END,
        ($8::text[])[p],
        (ARRAY['return', 'return', 'return', 'requested_by_customer', 'duplicate', 'other'])
            [1 + floor({u("i", 9)} * 6)::int],
        status, 'rw_' || replace(id::text, '-', ''),
        CASE WHEN status IN ('succeeded', 'reversed', 'failed') THEN 're_seed_' || lpad(i::text, 8, '0') END,
        CASE status WHEN 'succeeded' THEN 'succeeded' WHEN 'processing' THEN 'pending'
            WHEN 'failed' THEN 'failed' WHEN 'reversed' THEN 'failed' END,
        CASE WHEN status IN ('pending_approval', 'queued', 'canceled', 'rejected') THEN 0
            WHEN status = 'manual_review' THEN 6 WHEN status = 'submitting' THEN 2
            WHEN tail < 0.01 THEN 2 ELSE 1 END,
        err, CASE WHEN err IS NOT NULL THEN 'seeded: ' || err END, pcode,
        'api_key:seed', 'seed-' || lpad(i::text, 8, '0'), md5(i::text), 'api_key:seed',
        submitted_at, accepted_at, finalized_at,
        CASE WHEN status IN ('queued', 'submitting') THEN $4 + interval '30 days' END,
        created_at, coalesce(finalized_at, accepted_at, submitted_at, created_at), $9
    FROM (
        SELECT i, id, p, status, created_at, tail,
            CASE WHEN status NOT IN ('pending_approval', 'queued', 'canceled', 'rejected')
                THEN created_at + 3 {ms} END AS submitted_at,
            CASE WHEN status IN ('succeeded', 'reversed', 'processing')
                THEN least(created_at + accept_ms {ms}, $4) END AS accepted_at,
            CASE WHEN status IN ('succeeded', 'failed') THEN least(created_at + final_ms {ms}, $4)
                WHEN status = 'reversed'
                    THEN least(created_at + (accept_ms + 3600000 + tail * 169200000) {ms}, $4)
                WHEN status IN ('canceled', 'rejected') THEN least(created_at + interval '7 minutes', $4)
                END AS finalized_at,
            CASE WHEN status = 'failed' THEN {fail_code} WHEN status = 'reversed' THEN {rev_code}
                WHEN status = 'submitting' THEN 'gateway_unavailable'
                WHEN status = 'manual_review' THEN 'timeout' END AS err,
            CASE WHEN status = 'failed' THEN {fail_pcode}
                WHEN status = 'reversed' THEN {rev_pcode} END AS pcode
        FROM (
            SELECT i, p, created_at, {uuid7_sql("created_at", "i")} AS id, {status} AS status, tail,
                -- request → accepted: 40 ms + exponential (mean 60 ms); 1% retried (1 s to 60 s)
                base + CASE WHEN tail < 0.01 THEN 1000 + tail * 5900000 ELSE 0 END AS accept_ms,
                -- request → final: the same, and 5% settle later through processing (1 to 30 min)
                base + CASE WHEN tail < 0.01 THEN 1000 + tail * 5900000
                    WHEN tail < 0.06 THEN 60000 + (tail - 0.01) * 34800000 ELSE 0 END AS final_ms
            FROM (
                SELECT i, 1 + floor({u("i", 5)} * cardinality($5::uuid[]))::int AS p,
                    $1::timestamptz + ((i + 0.9 * {u("i", 8)}) * $3::float8 / $2) {ms} AS created_at,
                    40 + (-ln(1 - {u("i", 2)})) * 60 AS base, {u("i", 3)} AS tail
                FROM generate_series(0, $2 - 1) AS i
            ) g
        ) s
    ) t
    """


_UNITS = {60: "minute", 3600: "hour", 86400: "day"}
# The rollup resolutions the app keeps, as rows (res, date_trunc unit, how long kept or NULL: always).
RESOLUTIONS_SQL = "VALUES " + ", ".join(
    f"('{res}', '{_UNITS[int(step.total_seconds())]}', "
    + (f"interval '{int(MINUTE_ROWS_KEPT.total_seconds())} seconds')" if res == "m" else "NULL::interval)")
    for res, step in RESOLUTIONS.items()
)


def stats_sql() -> str:
    """refund_stats as dashboard.rollups.tally() would have folded them from the outbox: one row per
    counted transition, bucketed at every resolution the app keeps; $1 now."""

    def ms(col: str) -> str:
        return f"greatest(0, floor(extract(epoch FROM ({col} - created_at)) * 1000))::bigint"

    lower = ", ".join(str(b + 1) for b in LATENCY_BOUNDS_MS)  # slot = how many bounds are below ms
    hist = [
        f"count(*) FILTER (WHERE width_bucket(accept_ms, ARRAY[{lower}]) = {s}) AS a{s:02d}"
        for s in range(16)
    ] + [
        f"count(*) FILTER (WHERE width_bucket(final_ms, ARRAY[{lower}]) = {s}) AS f{s:02d}" for s in range(16)
    ]
    cols = ", ".join(f"a{s:02d}" for s in range(16)) + ", " + ", ".join(f"f{s:02d}" for s in range(16))
    return f"""
    INSERT INTO refund_stats (res, bucket, connection_id, outcome, error_code, processor_code, n,
        accept_ms_sum, final_ms_sum, {cols})
    SELECT r.res, date_trunc(r.unit, t.at), connection_id,
        outcome, ec, pc, count(*), coalesce(sum(accept_ms), 0), coalesce(sum(final_ms), 0),
        {", ".join(hist)}
    FROM (
        -- succeeded straight from submission (accepted_at = finalized_at), or settled through processing
        SELECT finalized_at AS at, connection_id, 'succeeded' AS outcome, '' AS ec, '' AS pc,
            CASE WHEN accepted_at = finalized_at THEN {ms("accepted_at")} END AS accept_ms,
            {ms("finalized_at")} AS final_ms
        FROM refunds WHERE status = 'succeeded'
        UNION ALL
        SELECT accepted_at, connection_id, 'accepted', '', '', {ms("accepted_at")}, NULL
        FROM refunds WHERE status = 'processing' OR (status = 'succeeded' AND accepted_at < finalized_at)
        UNION ALL
        SELECT finalized_at, connection_id, 'failed', error_code, processor_code, NULL, {ms("finalized_at")}
        FROM refunds WHERE status = 'failed'
        UNION ALL  -- a reversal: first a success, later the reversal
        SELECT accepted_at, connection_id, 'succeeded', '', '', {ms("accepted_at")}, {ms("accepted_at")}
        FROM refunds WHERE status = 'reversed'
        UNION ALL
        SELECT finalized_at, connection_id, 'reversed', error_code, processor_code, NULL, {ms("finalized_at")}
        FROM refunds WHERE status = 'reversed'
    ) t
    CROSS JOIN ({RESOLUTIONS_SQL}) AS r(res, unit, kept)
    WHERE r.kept IS NULL OR t.at >= $1::timestamptz - r.kept
    GROUP BY 1, 2, 3, 4, 5, 6
    """


HEALTH_SQL = f"""
INSERT INTO health_checks (connection_id, at, ok, latency_ms, error)
SELECT h.id, at, NOT (outage OR stray), CASE WHEN outage THEN 10000 ELSE latency END,
    CASE WHEN outage THEN 'timeout: no answer within 10 s'
        WHEN stray THEN 'gateway_unavailable: 503 Service Unavailable' END
FROM (
    SELECT c.id, $1::timestamptz + k * interval '30 seconds' + c.n * interval '7 seconds' AS at,
        -- one 25-minute outage on day 3 and one on day 21, stray failures; the second connection has
        -- never failed in 30 days (the common case for a healthy one)
        c.n <> 2 AND k BETWEEN (3 + 9 * (c.n - 1)) * 2880 + 1680 AND (3 + 9 * (c.n - 1)) * 2880 + 1730
            AS outage,
        c.n <> 2 AND {u("k * 3 + c.n", 11)} < 0.002 AS stray,
        35 + floor(-ln(1 - {u("k * 3 + c.n", 12)}) * 25)::int AS latency
    FROM generate_series(0, $2 - 1) AS k
    CROSS JOIN unnest($3::uuid[]) WITH ORDINALITY AS c(id, n)
) h
"""

HEALTH_STATS_SQL = f"""
INSERT INTO health_stats (res, bucket, connection_id, checks, ok_checks, latency_ms_sum, latency_ms_max)
SELECT r.res, date_trunc(r.unit, at), connection_id, count(*),
    count(*) FILTER (WHERE ok), sum(latency_ms), max(latency_ms)
FROM health_checks CROSS JOIN ({RESOLUTIONS_SQL}) AS r(res, unit, kept)
WHERE r.kept IS NULL OR at >= $1::timestamptz - r.kept
GROUP BY 1, 2, 3
"""

# $1 first captured_at, $2 connection ids (round robin), $3 reference prefix, $4 amount, $5 how many,
# $6 mixed currencies (else EUR), $7 salt for the ids
PAYMENTS_SQL = f"""
INSERT INTO payments (id, connection_id, payment_reference, amount, currency, captured_at, reserved_amount,
    refunded_amount, created_at, updated_at)
SELECT {uuid7_sql("at", "$7::bigint + p")}, ($2::uuid[])[1 + p % cardinality($2::uuid[])],
    $3::text || lpad(p::text, 6, '0'), $4::bigint, cur, at, 0, 0, at, at
FROM (
    SELECT p, $1::timestamptz + p * interval '1 second' AS at,
        CASE WHEN NOT $6::bool THEN 'EUR' WHEN p % 20 = 0 THEN 'GBP' WHEN p % 7 = 0 THEN 'USD' ELSE 'EUR' END
            AS cur
    FROM generate_series(0, $5::int - 1) AS p
) x
"""

RESERVED_SQL = """
UPDATE payments p SET reserved_amount = s.reserved, refunded_amount = s.refunded
FROM (
    SELECT payment_id,
        coalesce(sum(amount) FILTER (WHERE status NOT IN ('failed', 'canceled', 'rejected', 'reversed')), 0)
            AS reserved,
        coalesce(sum(amount) FILTER (WHERE status = 'succeeded'), 0) AS refunded
    FROM refunds GROUP BY payment_id
) s
WHERE p.id = s.payment_id
"""


def pg_url(env: Env) -> str:
    return env.vars["REFUNDWATCH_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")


def metadata_ciphertext() -> str:
    """What the app's EncryptedJSON column stores for ``{}``, with the demo/test key."""
    from refundwatch.lib.crypto import FieldCipher

    return FieldCipher(get_settings().encryption_key_list).encrypt("{}")


async def seed(env: Env, n: int, now: dt.datetime) -> dict[str, Any]:
    times: dict[str, float] = {}
    conn = await asyncpg.connect(pg_url(env), command_timeout=3600)
    try:
        await conn.execute("SET timezone = 'UTC'; SET synchronous_commit = off; SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM connections ORDER BY name")}
        conn_ids = [ids[name] for name in CONNECTIONS]
        start = now - dt.timedelta(days=30)

        async def step(name: str, sql: str, *args: Any) -> None:
            began = time.perf_counter()
            await conn.execute(sql, *args)
            times[name] = time.perf_counter() - began

        await step(
            "payments",
            PAYMENTS_SQL,
            start - dt.timedelta(days=1),
            conn_ids,
            "pi_seed_",
            1_000_000_000,
            SEED_PAYMENTS,
            True,
            1_000_000_000,
        )
        pays = await conn.fetch(
            "SELECT id, connection_id, payment_reference, currency FROM payments ORDER BY payment_reference"
        )
        await step(
            "refunds",
            refunds_sql(),
            start,
            n,
            30 * 86_400_000.0,
            now,
            [r["id"] for r in pays],
            [r["connection_id"] for r in pays],
            [r["payment_reference"] for r in pays],
            [r["currency"] for r in pays],
            metadata_ciphertext(),
        )
        await step("payment balances", RESERVED_SQL)
        await step("refund_stats", stats_sql(), now)
        await step("health_checks", HEALTH_SQL, start, 30 * 2880, conn_ids)
        await step("health_stats", HEALTH_STATS_SQL, now)
        # payments the SSE phase refunds through the API: one pool per loaded connection, and the probes'
        for salt, (name, prefix, count) in enumerate(
            (
                ("stripe-a", "pi_load_a_", LOAD_PAYMENTS),
                ("stripe-b", "pi_load_b_", LOAD_PAYMENTS),
                ("stripe-c", "pi_probe_", PROBE_PAYMENTS),
            )
        ):
            await conn.execute(
                PAYMENTS_SQL,
                now - dt.timedelta(hours=1),
                [ids[name]],
                prefix,
                100_000_000,
                count,
                False,
                2_000_000_000 + salt * 1_000_000,
            )
        began = time.perf_counter()
        for table in ("refunds", "payments", "refund_stats", "health_checks", "health_stats"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        times["vacuum analyze"] = time.perf_counter() - began
        counts = {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("refunds", "payments", "refund_stats", "health_checks", "health_stats")
        }
        statuses = dict(
            (r["status"], r["n"])
            for r in await conn.fetch(
                "SELECT status, count(*) AS n FROM refunds GROUP BY status ORDER BY 2 DESC"
            )
        )
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('refunds'))")
    finally:
        await conn.close()
    return {"times": times, "counts": counts, "statuses": statuses, "refunds_size": size}


# ------------------------------------------------------------------------------------------ environment


async def make_env(pg_admin: str, reuse: str | None) -> Env:
    workdir = Path(tempfile.mkdtemp(prefix="rw-bench-dash-"))
    name = reuse or f"rw_bench_dash_{secrets.token_hex(4)}"
    if not reuse:
        conn = await asyncpg.connect(pg_admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
    db_url = pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    env = pipeline.bench_env("postgresql", workdir, db_url, name)
    # The bench's session is written straight into Redis, without provider tokens: no role re-reads
    # within the session's lifetime (they would end it, as for any session the provider no longer backs).
    env.vars["REFUNDWATCH_ROLE_REFRESH_MINUTES"] = str(12 * 60)
    return env


def write_connections(env: Env, sim_url: str) -> Path:
    path = env.workdir / "connections.toml"
    path.write_text(
        "".join(
            f'[[connection]]\nname = "{name}"\nprocessor = "stripe"\nbase_url = "{sim_url}/stripe"\n'
            f'api_key = "sk_test_{name[-1]}_dash"\nwebhook_secret = "whsec_{name[-1]}_dash"\n'
            "health_check_interval_seconds = 30\n\n"
            for name in CONNECTIONS
        )
    )
    return path


async def make_session(env_vars: dict[str, str]) -> str:
    """A viewer session written by the app's own store (see the module docstring: OIDC is bypassed)."""
    from redis.asyncio import Redis

    from refundwatch.auth.roles import Role, User
    from refundwatch.auth.sessions import SessionStore
    from refundwatch.config import Settings
    from refundwatch.lib.crypto import FieldCipher

    keys = Settings(encryption_keys=env_vars.get("REFUNDWATCH_ENCRYPTION_KEYS", "")).encryption_key_list
    redis = Redis.from_url(env_vars["REFUNDWATCH_REDIS_URL"])
    try:
        store = SessionStore(redis, FieldCipher(keys), idle_seconds=6 * 3600, absolute_seconds=12 * 3600)
        user = User(subject="bench-viewer", name="Bench Viewer", email="bench@example.test", role=Role.VIEWER)
        return (await store.create(user, id_token="")).id
    finally:
        await redis.aclose()


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in a process group (a server and its workers)."""
    return sum(proc.seconds for proc in cpu.processes() if proc.group == pgid)


def all_cpu() -> dict[int, tuple[str, int, float]]:
    """pid → (command, process group, CPU seconds) for every process on the machine."""
    return {proc.pid: (proc.name, proc.group, proc.seconds) for proc in cpu.processes()}


def process_cpu(pid: int) -> float:
    found = cpu.process(pid)
    return found.seconds if found is not None else 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def group_rss_mb(pgid: int) -> float:
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                total += pipeline.rss_mb(int(entry))
    return total


# ----------------------------------------------------------------------------------------- measurements


def sequential(client: httpx2.Client, path: str, n: int, warm: int) -> tuple[list[float], int]:
    for _ in range(warm):
        client.get(path)
    out, errors = [], 0
    for _ in range(n):
        began = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - began) * 1000)
        errors += response.status_code != 200
    return out, errors


def panel_path(name: str, range_key: str, connection: str | None) -> str:
    query = f"range={range_key}" + (f"&connection={connection}" if connection else "")
    return f"/?{query}" if name == "page" else f"/dashboard/panels/{name}?{query}"


async def concurrent(
    base: str, headers: dict[str, str], targets: list[tuple[str, str]], viewers: int, rounds: int
) -> tuple[dict[str, list[float]], int, float]:
    """Each viewer loops ``rounds`` times over the targets (its own keep-alive connection, its own
    starting point); returns latencies per target name, errors and wall seconds."""
    found: dict[str, list[float]] = defaultdict(list)
    errors = 0

    async def viewer(i: int) -> None:
        nonlocal errors
        order = targets[i % len(targets) :] + targets[: i % len(targets)]
        async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
            for _, path in order:  # warm-up pass
                await client.get(path)
            for _ in range(rounds):
                for name, path in order:
                    began = time.perf_counter()
                    response = await client.get(path)
                    found[name].append((time.perf_counter() - began) * 1000)
                    errors += response.status_code != 200

    began = time.perf_counter()
    await asyncio.gather(*(viewer(i) for i in range(viewers)))
    return found, errors, time.perf_counter() - began


# -------------------------------------------------------------------------------------- the SSE client

FEED_ITEM = re.compile(rb'href="/refunds/([0-9a-f-]{36})"><span class="status status-([a-z_]+)"')


class Viewer(asyncio.Protocol):
    """One browser on the stream. Drains read and drop; probes decode chunks and parse feed events."""

    def __init__(self, request: bytes, probe: int | None, ready: asyncio.Future[bool]) -> None:
        self.request, self.probe, self.ready = request, probe, ready
        self.head = b""
        self.body = b""  # chunked framing still to decode (probes)
        self.sse = b""  # decoded event text still to split (probes)
        self.chunked = False
        self.headers_done = False
        self.bytes = 0
        self.closed = False
        self.seen: dict[tuple[str, str], float] = {}
        self.feed_times: list[float] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.bytes += len(data)
        if not self.headers_done:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            self.headers_done = True
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            if not self.ready.done():
                self.ready.set_result(head.startswith(b"HTTP/1.1 200"))
        if self.probe is None:
            return
        if self.chunked:
            self.body += data
            while True:
                line_end = self.body.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(self.body[:line_end].split(b";")[0] or b"0", 16)
                if len(self.body) < line_end + 2 + size + 2:
                    break
                self.sse += self.body[line_end + 2 : line_end + 2 + size]
                self.body = self.body[line_end + 2 + size + 2 :]
        else:
            self.sse += data
        *events, self.sse = self.sse.split(b"\n\n")
        for event in events:
            if event.startswith(b"event: feed\n"):
                self.feed_times.append(now)
                for refund_id, status in FEED_ITEM.findall(event):
                    self.seen.setdefault((refund_id.decode(), status.decode()), now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_result(False)


async def sse_client(cfg: dict[str, Any]) -> None:
    """The viewers, in their own process: ``ready <connected> <failed>`` on stdout once connected, then
    the results as one JSON line after a line on stdin."""
    loop = asyncio.get_running_loop()
    total, probes = cfg["viewers"], cfg["probes"]
    probe_at = {round(i * total / probes) for i in range(probes)}
    plan: list[tuple[str, int | None]] = []
    for i in range(total):
        plan.append(("/dashboard/stream?range=1h", len(plan) if i in probe_at else None))
    for _ in range(cfg["conn_probes"]):
        plan.append((f"/dashboard/stream?range=1h&connection={cfg['connection']}", len(plan)))
    viewers: list[Viewer] = []
    failed = 0
    for batch in _batched(plan, 50):
        pending = []
        for path, probe in batch:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {cfg['host']}:{cfg['port']}\r\n"
                f"Cookie: rw_session={cfg['session']}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
            ready: asyncio.Future[bool] = loop.create_future()
            viewer = Viewer(request, probe, ready)
            viewers.append(viewer)
            await loop.create_connection(lambda v=viewer: v, cfg["host"], cfg["port"])
            pending.append(ready)
        for ok in await asyncio.gather(*(asyncio.wait_for(r, 30) for r in pending), return_exceptions=True):
            failed += ok is not True
    published: dict[str, dict[tuple[str, str], float]] = {"all": {}, "conn": {}}
    log: list[tuple[float, str, str]] = []
    tap = asyncio.create_task(redis_tap(cfg, published, log))
    print(f"ready {len(viewers) - failed} {failed}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    tap.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "cpu": usage.ru_utime + usage.ru_stime,
        "bytes": sum(v.bytes for v in viewers),
        "closed": sum(v.closed for v in viewers),
        "seen": [
            [v.probe, "all" if i < total else "conn", rid, status, at]
            for i, v in enumerate(viewers)
            if v.probe is not None
            for (rid, status), at in v.seen.items()
        ],
        "feed_times": [v.feed_times for i, v in enumerate(viewers) if v.probe is not None and i < total],
        "log": log,
        "published": [
            [view, rid, status, at] for view, seen in published.items() for (rid, status), at in seen.items()
        ],
    }
    print(json.dumps(result), flush=True)


async def redis_tap(
    cfg: dict[str, Any], published: dict[str, dict[tuple[str, str], float]], log: list[tuple[float, str, str]]
) -> None:
    """When the broadcaster published each panel (``log``) and each feed pair (``published``): the
    channels plugin's Redis channels, as the web processes receive them (named after the view)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(cfg["redis"])
    pubsub = redis.pubsub()
    views = {b"dashboard.1h.*": "all", f"dashboard.1h.{cfg['connection']}".encode(): "conn"}
    await pubsub.subscribe(*views)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            now = time.time()
            event = message["data"].split(b"\n", 1)[0].removeprefix(b"event: ").decode()
            log.append((now, views[message["channel"]], event))
            if event != "feed":
                continue
            seen = published[views[message["channel"]]]
            for refund_id, status in FEED_ITEM.findall(message["data"]):
                seen.setdefault((refund_id.decode(), status.decode()), now)
    finally:
        await pubsub.aclose()
        await redis.aclose()


def _batched(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


# ------------------------------------------------------------------------------------------- the phases


async def register_payments(sim_url: str, refs: list[str], amount: int) -> None:
    sem = asyncio.Semaphore(32)
    async with httpx2.AsyncClient(base_url=sim_url, limits=httpx2.Limits(max_connections=32)) as client:

        async def one(ref: str) -> None:
            async with sem:
                response = await client.post(
                    "/_control/payments",
                    json={
                        "processor": "stripe",
                        "payment_reference": ref,
                        "amount": amount,
                        "currency": "EUR",
                    },
                )
                response.raise_for_status()

        await asyncio.gather(*(one(r) for r in refs))


async def pipeline_load(
    api_url: str, key: str, k: int, seconds: float
) -> tuple[int, int, int, list[float], float, float]:
    """K clients POST refunds on stripe-a/b as fast as they are answered, and PROBE_RATE/s go to
    stripe-c, for ``seconds``. Returns (posted, probes, errors, latencies ms, wall start, wall end)."""
    auth = {"Authorization": f"Bearer {key}"}
    refs = [f"pi_load_{c}_{p:06d}" for p in range(LOAD_PAYMENTS) for c in "ab"]
    counter = itertools.count()
    posted = probes = errors = 0
    latencies: list[float] = []
    began_wall = time.time()
    stop_at = time.monotonic() + seconds
    async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=k + 16), timeout=60) as client:

        async def post(ref: str) -> int:
            body = {"payment_reference": ref, "amount": 100, "currency": "EUR", "reason": "return"}
            response = await client.post(
                f"{api_url}/api/v1/refunds", json=body, headers={**auth, "Idempotency-Key": uuid.uuid4().hex}
            )
            return response.status_code

        async def loader() -> None:
            nonlocal posted, errors
            while time.monotonic() < stop_at:
                began = time.perf_counter()
                status = await post(refs[next(counter) % len(refs)])
                latencies.append((time.perf_counter() - began) * 1000)
                posted += 1
                errors += status >= 300

        async def prober() -> None:
            nonlocal probes, errors
            tasks = []
            started = time.monotonic()
            i = 0
            while time.monotonic() < stop_at:
                await asyncio.sleep(max(0.0, started + i / PROBE_RATE - time.monotonic()))
                tasks.append(asyncio.create_task(post(f"pi_probe_{i % PROBE_PAYMENTS:06d}")))
                i += 1
            for status in await asyncio.gather(*tasks):
                probes += 1
                errors += status >= 300

        await asyncio.gather(*(loader() for _ in range(k)), prober())
    return posted, probes, errors, latencies, began_wall, time.time()


async def sse_phase(
    env: Env, args: argparse.Namespace, web_url: str, web_port: int, session: str
) -> dict[str, Any]:
    sim_port, api_port = free_port(), free_port()
    sim_url, api_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{api_port}"
    conns = write_connections(env, sim_url)
    env.cli("connections", "import", str(conns))  # the simulator's port is new: base_url follows
    key = env.cli("apikeys", "create", "--name", "bench-dash", "--scopes", "refunds:read,refunds:write")
    env.start(
        "simulator",
        "refundwatch.simulator",
        "--port",
        str(sim_port),
        "--connections",
        str(conns),
        "--webhook-url",
        f"{api_url}/webhooks/{{connection}}",
    )
    await wait_http(f"{sim_url}/_control/faults")
    async with httpx2.AsyncClient() as client:
        await client.post(f"{sim_url}/_control/faults", json={"latency_ms": LATENCY_MS, "jitter_ms": 0})
    await register_payments(
        sim_url, [f"pi_load_{c}_{p:06d}" for c in "ab" for p in range(LOAD_PAYMENTS)], 100_000_000
    )
    await register_payments(sim_url, [f"pi_probe_{p:06d}" for p in range(PROBE_PAYMENTS)], 100_000_000)
    # The API gets its own web process, started after the dashboard's, whose broadcaster keeps the lease.
    env.start("web-api", "refundwatch", "serve", "--port", str(api_port), "--workers", "1")
    await wait_http(f"{api_url}/healthz")
    worker = env.start("worker", "refundwatch", "worker")
    await asyncio.sleep(3)

    client = subprocess.Popen(
        [
            PY,
            __file__,
            "--sse-client",
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": web_port,
                    "session": session,
                    "viewers": args.viewers,
                    "probes": args.probes,
                    "conn_probes": args.conn_probes,
                    "connection": CONNECTIONS[2],
                    "redis": env.vars["REFUNDWATCH_REDIS_URL"],
                }
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    env.procs["sse-client"] = client
    assert client.stdout is not None
    assert client.stdin is not None
    ready = await asyncio.get_running_loop().run_in_executor(None, client.stdout.readline)
    _, connected, refused = ready.split()
    web = env.procs["web"].pid
    procs = {
        "web (SSE)": web,
        "web (API)": env.procs["web-api"].pid,
        "worker": worker.pid,
        "simulator": env.procs["simulator"].pid,
        "SSE client": client.pid,
        "Redis": env.procs["redis"].pid,
    }
    await asyncio.sleep(2)
    idle_cpu0, idle_t0 = group_cpu(web), time.monotonic()
    await asyncio.sleep(5)
    idle_pct = (group_cpu(web) - idle_cpu0) / (time.monotonic() - idle_t0) * 100

    db = await asyncpg.connect(pg_url(env))
    backends = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    pg0 = {r["pid"]: process_cpu(r["pid"]) for r in await db.fetch(backends)}
    cpu0 = {name: group_cpu(pid) for name, pid in procs.items()}
    bench0 = resource.getrusage(resource.RUSAGE_SELF)
    busy0, total0 = machine_busy()
    everyone0 = all_cpu()
    spy = None
    if args.profile:  # py-spy on the SSE web process (and its granian worker) for the load
        spy = subprocess.Popen(
            [
                *(args.py_spy, "record", "--pid", str(web), "--subprocesses", "--nonblocking", "-r", "100"),
                *("-f", "raw", "-d", str(int(args.sse_seconds)), "-o", str(args.profile)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    t0 = time.monotonic()
    posted, probes, errors, post_lat, wall0, wall1 = await pipeline_load(
        api_url, key, args.k, args.sse_seconds
    )
    wall = time.monotonic() - t0
    if spy is not None:
        await asyncio.get_running_loop().run_in_executor(None, spy.wait)
    cpu = {name: (group_cpu(pid) - cpu0[name]) / wall * 100 for name, pid in procs.items()}
    pg1 = {r["pid"]: process_cpu(r["pid"]) for r in await db.fetch(backends)}
    cpu["PostgreSQL (this database)"] = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items()) / wall * 100
    bench1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu["bench (load generator)"] = (
        (bench1.ru_utime + bench1.ru_stime - bench0.ru_utime - bench0.ru_stime) / wall * 100
    )
    busy1, total1 = machine_busy()
    everyone1 = all_cpu()
    ours = set(procs.values()) | {os.getpid()}
    foreign: Counter[str] = Counter()
    for pid, (command, group, used) in everyone1.items():
        if group not in ours and pid not in pg1 and pid != os.getpid():
            before = everyone0.get(pid)
            foreign[command] += (used - (before[2] if before and before[0] == command else 0.0)) / wall * 100
    web_rss = group_rss_mb(web)
    try:
        executed = await db.fetchval(
            "SELECT count(*) FROM refunds WHERE finalized_at BETWEEN to_timestamp($1) AND to_timestamp($2)",
            wall0,
            wall1,
        )
        # let the probes' refunds finish (the worker drains the backlog) so their last changes arrive
        c_id = await db.fetchval("SELECT id FROM connections WHERE name = $1", CONNECTIONS[2])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and await db.fetchval(
            "SELECT count(*) FROM refunds WHERE connection_id = $1 AND finalized_at IS NULL "
            "AND created_at >= to_timestamp($2)",
            c_id,
            wall0,
        ):
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        client.stdin.write("stop\n")
        client.stdin.flush()
        result = json.loads(await asyncio.get_running_loop().run_in_executor(None, client.stdout.readline))
        seen = result["seen"]
        published = {(view, rid, status): at for view, rid, status, at in result["published"]}
        ids = list({row[2] for row in seen} | {rid for _view, rid, _status in published})
        changed = {
            (str(r["refund_id"]), r["status"]): r["at"].timestamp()
            for r in await db.fetch(
                "SELECT refund_id, status, min(at) AS at FROM refund_events "
                "WHERE refund_id = ANY($1::uuid[]) GROUP BY refund_id, status",
                ids,
            )
        }
        probe_changes = await db.fetch(
            "SELECT e.refund_id, e.status, min(e.at) AS at FROM refund_events e "
            "JOIN refunds r ON r.id = e.refund_id WHERE r.connection_id = $1 "
            "AND r.created_at >= to_timestamp($2) GROUP BY e.refund_id, e.status",
            c_id,
            wall0,
        )
    finally:
        await db.close()

    def during(rid: str, status: str) -> float | None:
        at = changed.get((rid, status))
        return at if at is not None and wall0 <= at <= wall1 else None

    # per view: change → browser, and its two parts: change → published (the leader noticed, waited
    # for the panel's turn, queried and rendered) and published → browser (the fan-out)
    lat: dict[str, dict[str, list[float]]] = {
        view: {"total": [], "render": [], "fanout": []} for view in ("all", "conn")
    }
    distinct: dict[str, set[tuple[str, str]]] = {"all": set(), "conn": set()}
    statuses: dict[str, list[float]] = defaultdict(list)
    for _probe, view, rid, status, at in seen:
        changed_at = during(rid, status)
        if changed_at is None:
            continue
        lat[view]["total"].append((at - changed_at) * 1000)
        distinct[view].add((rid, status))
        if (view, rid, status) in published:
            lat[view]["fanout"].append((at - published[(view, rid, status)]) * 1000)
        if view == "conn":
            statuses[status].append((at - changed_at) * 1000)
    for (view, rid, status), at in published.items():
        changed_at = during(rid, status)
        if changed_at is not None:
            lat[view]["render"].append((at - changed_at) * 1000)
    in_window = [r for r in probe_changes if wall0 <= r["at"].timestamp() <= wall1]
    observed = {(rid, status) for _p, view, rid, status, _at in seen if view == "conn"}
    missed = sum((str(r["refund_id"]), r["status"]) not in observed for r in in_window)
    feed_gaps = [
        b - a
        for times in result["feed_times"]
        for a, b in itertools.pairwise(times)
        if a >= wall0 and b <= wall1
    ]
    # The leader renders the due panels of every watched view one after the other: a publish less
    # than 50 ms after the previous one belongs to the same pass, and the gap is that panel's turn
    # (queries, template, PUBLISH).
    log = [entry for entry in result["log"] if wall0 <= entry[0] <= wall1]
    renders: dict[str, list[float]] = defaultdict(list)
    passes: list[float] = []
    pass_start = None
    for (t_prev, _, _), (t, _view, event) in itertools.pairwise(log):
        if t - t_prev < 0.05:
            renders[event].append((t - t_prev) * 1000)
            pass_start = t_prev if pass_start is None else pass_start
        elif pass_start is not None:
            passes.append((t_prev - pass_start) * 1000)
            pass_start = None
    published_per_s = {event: n / wall for event, n in Counter(e for _t, _v, e in log).items()}
    return {
        "viewers": int(connected),
        "refused": int(refused),
        "closed": result["closed"],
        "idle_pct": idle_pct,
        "posted": posted,
        "probes": probes,
        "errors": errors,
        "post_p50": pct(post_lat, 50),
        "post_p99": pct(post_lat, 99),
        "seconds": wall,
        "executed": executed,
        "cpu": cpu,
        "client_cpu_s": result["cpu"],
        "busy_pct": (busy1 - busy0) / (total1 - total0) * 100,
        "foreign": foreign.most_common(4),
        "web_rss_mb": web_rss,
        "mb_per_viewer_s": result["bytes"] / max(1, int(connected)) / wall / 1e6,
        "lat": lat,
        "distinct": {view: len(found) for view, found in distinct.items()},
        "by_status": statuses,
        "probe_changes": len(in_window),
        "missed": missed,
        "renders": renders,
        "passes": passes,
        "published_per_s": published_per_s,
        "feed_gap_p50": pct(feed_gaps, 50) * 1000 if feed_gaps else float("nan"),
        "feed_gap_p99": pct(feed_gaps, 99) * 1000 if feed_gaps else float("nan"),
    }


async def http_phase(args: argparse.Namespace, web_url: str, headers: dict[str, str]) -> dict[str, Any]:
    results: dict[str, Any] = {"seq": {}, "errors": 0}
    with httpx2.Client(base_url=web_url, headers=headers, timeout=60) as client:
        check = client.get("/")
        if check.status_code != 200:
            raise SystemExit(f"GET / answered {check.status_code}: is the session accepted?")
        results["floor"], _ = sequential(client, "/healthz", args.requests, args.warmup)
        for range_key in args.ranges:
            for connection in (None, FILTER):
                for name in (*PANELS, "page"):
                    values, errors = sequential(
                        client, panel_path(name, range_key, connection), args.requests, args.warmup
                    )
                    results["seq"][(name, range_key, connection)] = values
                    results["errors"] += errors
        results["floor_after"], _ = sequential(client, "/healthz", args.requests, args.warmup)
    targets = [(name, panel_path(name, r, None)) for r in ("1h", "24h", "30d") for name in PANELS]
    results["conc"], conc_errors, results["conc_seconds"] = await concurrent(
        web_url, headers, targets, args.concurrent, args.rounds
    )
    results["errors"] += conc_errors
    floor_targets = [("healthz", "/healthz")] * len(targets)
    results["conc_floor"], _, _ = await concurrent(
        web_url, headers, floor_targets, args.concurrent, args.rounds
    )
    return results


async def run(args: argparse.Namespace) -> None:
    now = dt.datetime.now(dt.UTC)
    env = await make_env(args.pg_admin, args.reuse)
    web_port = free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    keep = args.keep or args.reuse is not None
    try:
        seeded: dict[str, Any] | None = None
        if not args.reuse:
            env.cli("db", "upgrade")
            env.cli("connections", "import", str(write_connections(env, "http://127.0.0.1:9")))
            began = time.perf_counter()
            seeded = await seed(env, args.refunds, now)
            seeded["total"] = time.perf_counter() - began
            report_seed(args.refunds, seeded)
        env.start("web", "refundwatch", "serve", "--port", str(web_port), "--workers", "1")
        await wait_http(f"{web_url}/healthz")
        session = await make_session(env.vars)
        headers = {"Cookie": f"rw_session={session}"}
        if not args.skip_panels:
            report_http(args, await http_phase(args, web_url, headers))
        if not args.skip_sse:
            report_sse(args, await sse_phase(env, args, web_url, web_port, session))
    finally:
        env.stop_all()
        if not keep and env.pg_name:
            conn = await asyncpg.connect(args.pg_admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{env.pg_name}" WITH (FORCE)')
            await conn.close()
        elif env.pg_name:
            print(f"\nkept database {env.pg_name} (--reuse {env.pg_name} measures it again without seeding)")
        shutil.rmtree(env.workdir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- report


def header(args: argparse.Namespace) -> None:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "?",
    )  # fmt: skip
    pg = subprocess.run(
        ["psql", args.pg_admin, "-Atc", "SHOW server_version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load = os.getloadavg()
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%h"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src", "templates"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"machine: {platform.node()} ({cpu}), {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {pg.split()[0] if pg else '?'}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; app at commit "
        f"{commit or '?'}{' + uncommitted changes in src/ or templates/' if dirty else ''}"
    )
    if load[0] > 2.5:
        print("WARNING: the machine is busy (load average > 2.5): figures will be noisy")


def report_seed(n: int, s: dict[str, Any]) -> None:
    times = ", ".join(f"{k} {v:.1f} s" for k, v in s["times"].items())
    counts = ", ".join(f"{k} {v:,}" for k, v in s["counts"].items())
    mix = ", ".join(f"{k} {v:,}" for k, v in s["statuses"].items())
    print(f"\nseed: {n:,} refunds in {s['total']:.1f} s ({times})")
    print(f"rows: {counts}; refunds table + indexes {s['refunds_size']}")
    print(f"statuses: {mix}")


def cell(values: list[float]) -> str:
    return f"{pct(values, 50):.1f} / {pct(values, 99):.1f}"


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report_http(args: argparse.Namespace, r: dict[str, Any]) -> None:
    floor = r["floor"] + r["floor_after"]
    print(
        f"\nfloor GET /healthz, sequential, {len(floor)} requests (before and after the panels): "
        f"p50 {pct(floor, 50):.2f} ms, p99 {pct(floor, 99):.2f} ms"
    )
    print(
        f"\nSequential, one keep-alive client, {args.requests} requests after {args.warmup} warm-ups each: "
        f"p50 / p99 ms (all connections | one connection)\n"
    )
    cols = [(rk, c) for rk in args.ranges for c in (None, FILTER)]
    print("| panel | " + " | ".join(f"{rk} {'one' if c else 'all'}" for rk, c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name in (*PANELS, "page"):
        print(f"| {name} | " + " | ".join(cell(r["seq"][(name, rk, c)]) for rk, c in cols) + " |")
    floor_p50 = pct(floor, 50)
    worst = {
        name: max(((pct(r["seq"][(name, rk, c)], 50), rk, c) for rk, c in cols), key=lambda x: x[0])
        for name in (*PANELS, "page")
    }
    print(
        "\nworst p50 per panel / floor p50: "
        + ", ".join(
            f"{n} {v[0] / floor_p50:.0f}x ({v[1]} {'one' if v[2] else 'all'})" for n, v in worst.items()
        )
    )
    conc, conc_floor = r["conc"], r["conc_floor"]["healthz"]
    print(
        f"\n{args.concurrent} concurrent viewers, each {args.rounds} rounds over every panel for 1h, 24h "
        f"and 30d (all connections): {sum(map(len, conc.values())) / r['conc_seconds']:.0f} requests/s; "
        f"p50 / p99 ms\n"
    )
    print("| panel | requests | p50 / p99 |")
    print("|---|---|---|")
    for name in PANELS:
        print(f"| {name} | {len(conc[name])} | {cell(conc[name])} |")
    print(f"| floor /healthz | {len(conc_floor)} | {cell(conc_floor)} |")
    panel_cells = [(r["seq"][(n, rk, c)], n, rk, c) for n in PANELS for rk, c in cols]
    p50_worst = max(panel_cells, key=lambda x: pct(x[0], 50))
    p99_worst = max(panel_cells, key=lambda x: pct(x[0], 99))
    page_worst = max(((r["seq"][("page", rk, c)], rk, c) for rk, c in cols), key=lambda x: pct(x[0], 99))
    conc_worst = max(PANELS, key=lambda n: pct(conc[n], 99))

    def where(name: str, rk: str, c: str | None) -> str:
        return f"{name} {rk} {'one connection' if c else 'all'}"

    rows = [
        ("each panel p50 ≤ 10 ms", pct(p50_worst[0], 50), where(*p50_worst[1:]), TARGETS["panel_p50"]),
        ("each panel p99 ≤ 50 ms", pct(p99_worst[0], 99), where(*p99_worst[1:]), TARGETS["panel_p99"]),
        (
            "full page p99 ≤ 150 ms",
            pct(page_worst[0], 99),
            where("page", *page_worst[1:]),
            TARGETS["page_p99"],
        ),
        (
            f"{args.concurrent} viewers: panel p99 ≤ 100 ms",
            pct(conc[conc_worst], 99),
            conc_worst,
            TARGETS["conc_p99"],
        ),
    ]
    print("\n| target | figure (worst case) | |")
    print("|---|---|---|")
    for target, value, at, limit in rows:
        print(f"| {target} | {value:.1f} ms ({at}) | {mark(value <= limit)} |")
    if r["errors"]:
        print(f"\nnon-200 answers: {r['errors']}")


def report_sse(args: argparse.Namespace, s: dict[str, Any]) -> None:
    print(
        f"\nSSE, one web process: {s['viewers']} viewers connected = {args.viewers} on "
        f"/dashboard/stream?range=1h ({args.probes} of them parse) + {args.conn_probes} on "
        f"&connection={CONNECTIONS[2]}; refused {s['refused']}, dropped {s['closed']}"
    )
    print(
        f"pipeline for {s['seconds']:.0f} s: {s['posted'] / s['seconds']:.0f} POST/s by {args.k} clients "
        f"(p50 {s['post_p50']:.0f} ms, p99 {s['post_p99']:.0f} ms) + {s['probes']} probe refunds, "
        f"{s['executed'] / s['seconds']:.0f} refunds/s finalized, non-2xx {s['errors']}; "
        f"simulator {LATENCY_MS} ms"
    )
    cpu = ", ".join(f"{k} {v:.0f}%" for k, v in s["cpu"].items())
    others = s["busy_pct"] * (os.cpu_count() or 1) - sum(s["cpu"].values())
    foreign = ", ".join(f"{name} {v:.0f}%" for name, v in s["foreign"])
    print(
        f"CPU (% of one core) during the load: {cpu}; anything else on the machine {others:.0f}% "
        f"(busiest processes still running at the end: {foreign}); machine busy {s['busy_pct']:.0f}% of "
        f"{os.cpu_count()} cores; SSE client "
        f"total {s['client_cpu_s']:.1f} s"
    )
    print(
        f"web (SSE) process: {s['idle_pct']:.0f}% CPU with the viewers connected and no load, RSS "
        f"{s['web_rss_mb']:.0f} MB; each viewer receives {s['mb_per_viewer_s'] * 1000:.0f} kB/s; "
        f"feed events at a probe every p50 {s['feed_gap_p50']:.0f} ms, p99 {s['feed_gap_p99']:.0f} ms "
        f"(live_feed_interval_ms {get_settings().live_feed_interval_ms})"
    )
    print(
        "\n| status change → browser, during the load | changes (samples at probes) | p50 / p99 "
        "| change → published | published → browser | target p50 ≤ 100 ms, p99 ≤ 250 ms |"
    )
    print("|---|---|---|---|---|---|")
    for view, label in (
        ("conn", "every change, one-connection view (probe refunds, 10/s)"),
        ("all", f"changes shown, all-connections view (the {args.viewers})"),
    ):
        lat = s["lat"][view]
        total = lat["total"]
        if not total:
            continue
        ok = pct(total, 50) <= SSE_TARGETS["p50"] and pct(total, 99) <= SSE_TARGETS["p99"]
        print(
            f"| {label} | {s['distinct'][view]} ({len(total)}) "
            f"| {pct(total, 50):.0f} / {pct(total, 99):.0f} ms "
            f"| {pct(lat['render'], 50):.0f} / {pct(lat['render'], 99):.0f} ms "
            f"| {pct(lat['fanout'], 50):.0f} / {pct(lat['fanout'], 99):.0f} ms | {mark(ok)} |"
        )
    turns = ", ".join(
        f"{k} {s['published_per_s'].get(k, 0):.1f}/s, {pct(v, 50):.0f} / {pct(v, 99):.0f} ms"
        for k, v in sorted(s["renders"].items())
    )
    print(
        f"\nthe leader's passes (every watched view): p50 {pct(s['passes'], 50):.0f} ms, "
        f"p99 {pct(s['passes'], 99):.0f} ms long; per panel, publishes/s and p50 / p99 of the gap before "
        f"it in a pass: {turns}"
    )
    by = ", ".join(
        f"{k} {len(v)}: p50 {pct(v, 50):.0f} / p99 {pct(v, 99):.0f} ms" for k, v in s["by_status"].items()
    )
    if not args.conn_probes:
        return
    print(
        f"\none-connection view by status (samples): {by}. Transitions of the probe refunds during the load: "
        f"{s['probe_changes']}, never shown: {s['missed']} (the feed lists the 12 newest refunds: a refund "
        f"whose turn at the worker comes after 12 newer ones has left it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--refunds", type=int, default=1_000_000)
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--probes", type=int, default=8, help="viewers among --viewers that parse events")
    parser.add_argument("--conn-probes", type=int, default=4, help="extra parsing viewers on one connection")
    parser.add_argument("--skip-sse", action="store_true")
    parser.add_argument("--skip-panels", action="store_true", help="only the SSE phase")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--reuse", metavar="DB", help="measure an existing seeded database (data ages!)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--ranges", default=",".join(RANGES))
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("-k", type=int, default=32, help="concurrent API clients in the SSE phase")
    parser.add_argument("--sse-seconds", type=float, default=30)
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy (raw, collapsed stacks) of the SSE web process during the load"
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(PY).with_name("py-spy")))
    parser.add_argument("--sse-client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sse_client:
        asyncio.run(sse_client(json.loads(args.sse_client)))
        return
    args.ranges = [r for r in args.ranges.split(",") if r]
    header(args)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
