"""GET /metrics against the real stack, parsed with the official Prometheus parser: refund counters and
processing-time histograms equal to the database rollups, the gateway gauge following a real outage,
work in progress, accepted and rejected webhooks, counters that never go down, and the same answer
from another web process."""

from __future__ import annotations

import contextlib
import itertools
import re
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.dialects import sqlite as sqlite_dialect

from _services import free_port
from stack import METRICS_TOKEN, PYTHON, Proc, Stack, db_rows, second_web, wait_http, wait_until

CONNECTION = "stripe-test"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HIST_COLUMNS = 16
# ``route`` is a route template, never a raw path (see the route-template test below).
LABELS = {
    "connection",
    "outcome",
    "error_code",
    "interval",
    "le",
    "state",
    "result",
    "status",
    "currency",
    "kind",  # reconciliation break kinds (CONTRACT §4's nine)
} | {
    "method",
    "route",
}
UUID_LIKE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}", re.I)
MONOTONIC = ("counter", "histogram")

Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Scrape:
    types: dict[str, str]  # family → type
    samples: dict[Key, float]
    kinds: dict[Key, str]  # sample → its family's type

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels: str) -> float:
        found = self.get(name, **labels)
        assert found is not None, f"no sample {name}{labels}"
        return found

    def matching(self, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        wanted = set(labels.items())
        return {
            labelset: v for (n, labelset), v in self.samples.items() if n == name and wanted <= set(labelset)
        }


SCRAPES: list[tuple[str, Scrape]] = []  # every scrape of this module, in order, per backend


def scrape(stack: Stack, base: str | None = None) -> Scrape:
    response = stack.metrics(base)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(stack, response.text, record=base is None)


def parse(stack: Stack, text: str, *, record: bool = True) -> Scrape:
    result = Scrape({}, {}, {})
    for family in text_string_to_metric_families(text):  # raises on anything not valid exposition
        assert family.name not in result.types, f"{family.name} twice"
        result.types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in result.samples, f"duplicate series {key}"
            result.samples[key] = sample.value
            result.kinds[key] = family.type
    if record:
        SCRAPES.append((stack.backend, result))
    return result


def outbox_drained(stack: Stack) -> bool:
    return bool(db_rows(stack, "SELECT COUNT(*) FROM rollup_outbox")[0][0] == 0)


def hour_stats(stack: Stack) -> dict[tuple[str, str], int]:
    rows = db_rows(
        stack,
        "SELECT outcome, error_code, SUM(n) FROM refund_stats WHERE res = 'h' GROUP BY outcome, error_code",
    )
    return {(outcome, code or ""): int(n) for outcome, code, n in rows}


def refund_counters(result: Scrape) -> dict[tuple[str, str], int]:
    found = {}
    for labels, v in result.matching("refundwatch_refunds_total", connection=CONNECTION).items():
        as_dict = dict(labels)
        if v:
            found[(as_dict["outcome"], as_dict["error_code"])] = int(v)
    return found


@pytest.fixture(scope="module")
def outcomes(stack: Stack) -> dict[str, list[str]]:
    """Three refunds that succeed and one the processor refuses (it knows a smaller payment)."""
    ids: dict[str, list[str]] = {"succeeded": [], "failed": []}
    for _ in range(3):
        ids["succeeded"].append(stack.refund(stack.payment(5_000), 1_000).json()["id"])
    ids["failed"].append(stack.refund(stack.payment(5_000, simulator_amount=500), 1_000).json()["id"])
    for status, refund_ids in ids.items():
        for refund_id in refund_ids:
            stack.wait_status(refund_id, status)
    wait_until(lambda: outbox_drained(stack), timeout=15, what="the worker folds the outcomes")
    return ids


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Bearer", id="empty-token"),
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param(f"Bearer {METRICS_TOKEN}x", id="token-plus-one"),
        pytest.param(f"Bearer {METRICS_TOKEN[:-1]}", id="token-minus-one"),
        pytest.param(f"Basic {METRICS_TOKEN}", id="wrong-scheme"),
        pytest.param(METRICS_TOKEN, id="no-scheme"),
    ],
)
def test_metrics_need_the_token_when_one_is_set(stack: Stack, authorization: str | None) -> None:
    """/metrics publishes the money in flight: with REFUNDWATCH_METRICS_TOKEN set, anything but that
    bearer token gets 401 JSON with WWW-Authenticate and no metric at all."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx2.get(f"{stack.web_url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 401, response.text[:300]
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["code"] in ("unauthenticated", "invalid_token"), body
    assert body["message"], body
    assert "refundwatch_" not in response.text
    assert stack.metrics().status_code == 200
    lower = httpx2.get(
        f"{stack.web_url}/metrics", headers={"Authorization": f"bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 7235)


def test_without_a_token_start_up_warns_that_metrics_are_open(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "REFUNDWATCH_METRICS_TOKEN"}
    port = free_port()
    log = stack.workdir / "web-open-metrics.log"
    proc = Proc("web-open", ["refundwatch", "serve", "--port", str(port)], env, log).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        assert httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=30).status_code == 200
        assert "REFUNDWATCH_METRICS_TOKEN is not set: GET /metrics is open" in log.read_text()
    finally:
        proc.stop()
    assert "REFUNDWATCH_METRICS_TOKEN is not set" not in (stack.workdir / "web.log").read_text()


def test_metrics_are_valid_exposition_with_low_cardinality_labels(stack: Stack) -> None:
    result = scrape(stack)
    expected = {
        "refundwatch_refunds": "counter",
        "refundwatch_refund_processing_seconds": "histogram",
        "refundwatch_gateway_state": "gauge",
        "refundwatch_health_checks": "counter",
        "refundwatch_health_check_seconds": "counter",
        "refundwatch_refunds_in_progress": "gauge",
        "refundwatch_refunds_in_progress_oldest_seconds": "gauge",
        "refundwatch_job_queue_depth": "gauge",
        "refundwatch_webhooks_accepted": "counter",
        "refundwatch_webhooks_rejected": "counter",
        "refundwatch_webhooks_rate_limited": "counter",
        "refundwatch_redis_up": "gauge",
        "refundwatch_reconciliation_refund_lines": "gauge",
        "refundwatch_reconciliation_matched_refund_lines": "gauge",
        "refundwatch_reconciliation_open_breaks": "gauge",
        "refundwatch_reconciliation_open_breaks_oldest_seconds": "gauge",
    }
    for name, kind in expected.items():
        assert result.types.get(name) == kind, (name, result.types.get(name))
    assert result.value("refundwatch_redis_up") == 1
    for (name, labels), _v in result.samples.items():
        assert name.startswith("refundwatch_"), name
        for label, value in labels:
            assert label in LABELS, (name, label)
            assert not UUID_LIKE.search(value), (name, label, value)
    # the old per-status gauge (a GROUP BY over every refund on each scrape) is gone
    assert "refundwatch_refunds{" not in stack.metrics().text
    # each connection has its series before anything happens, so rate() works from the first refund
    assert (
        result.get("refundwatch_refunds_total", connection=CONNECTION, outcome="succeeded", error_code="")
        is not None
    )
    assert result.get("refundwatch_webhooks_rejected_total", connection=CONNECTION) is not None


def test_refund_counters_equal_the_rollups_and_the_refunds(
    stack: Stack, outcomes: dict[str, list[str]]
) -> None:
    result = scrape(stack)
    counters = refund_counters(result)
    assert counters == hour_stats(stack), "the counters are the all-time sums of the hour rollups"
    succeeded = db_rows(stack, "SELECT COUNT(*) FROM refunds WHERE status = 'succeeded'")[0][0]
    failed = db_rows(
        stack,
        "SELECT COUNT(*) FROM refunds WHERE status = 'failed' AND error_code = 'amount_exceeds_refundable'",
    )[0][0]
    assert succeeded >= 3
    assert failed == 1
    assert counters[("succeeded", "")] == succeeded
    assert counters[("failed", "amount_exceeds_refundable")] == failed
    assert not any(code for (outcome, code) in counters if outcome in ("accepted", "succeeded"))


def test_histograms_are_cumulative_and_count_every_outcome(
    stack: Stack, outcomes: dict[str, list[str]]
) -> None:
    result = scrape(stack)
    counters = refund_counters(result)
    for interval in ("accepted", "final"):
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for labels, v in result.matching(
                "refundwatch_refund_processing_seconds_bucket", connection=CONNECTION, interval=interval
            ).items()
        )
        assert len(buckets) == HIST_COLUMNS
        assert buckets[-1][0] == float("inf")
        values = [v for _le, v in buckets]
        assert values == sorted(values), f"{interval} buckets are cumulative"
        count = result.value(
            "refundwatch_refund_processing_seconds_count", connection=CONNECTION, interval=interval
        )
        assert values[-1] == count
    final_count = result.value(
        "refundwatch_refund_processing_seconds_count", connection=CONNECTION, interval="final"
    )
    outcomes_total = sum(n for (outcome, _code), n in counters.items() if outcome != "accepted")
    assert final_count == outcomes_total >= 4
    accept_columns = " + ".join(f"a{i:02d}" for i in range(HIST_COLUMNS))
    accepted_db, accept_ms, final_ms = db_rows(
        stack,
        f"SELECT SUM({accept_columns}), SUM(accept_ms_sum), SUM(final_ms_sum) FROM refund_stats "
        "WHERE res = 'h'",
    )[0]
    assert (
        result.value(
            "refundwatch_refund_processing_seconds_count", connection=CONNECTION, interval="accepted"
        )
        == accepted_db
        >= 3
    )
    assert result.value(
        "refundwatch_refund_processing_seconds_sum", connection=CONNECTION, interval="accepted"
    ) == pytest.approx(float(accept_ms) / 1000)
    assert result.value(
        "refundwatch_refund_processing_seconds_sum", connection=CONNECTION, interval="final"
    ) == pytest.approx(float(final_ms) / 1000)


def gateway_up(stack: Stack) -> float | None:
    return scrape(stack).get("refundwatch_gateway_up", connection=CONNECTION)


def test_gateway_up_follows_the_health_checks_through_an_outage(stack: Stack) -> None:
    wait_until(lambda: gateway_up(stack) == 1, timeout=20, interval=0.3, what="a healthy check")
    result = scrape(stack)
    state = {dict(k)["state"]: v for k, v in result.matching("refundwatch_gateway_state").items()}
    assert sum(state.values()) == 1
    assert state["up"] == 1 or state["degraded"] == 1
    assert result.value("refundwatch_health_check_latency_seconds", connection=CONNECTION) >= 0
    assert (
        result.value("refundwatch_health_check_timestamp_seconds", connection=CONNECTION) > time.time() - 60
    )
    ok_checks = result.value("refundwatch_health_checks_total", connection=CONNECTION, result="ok")
    assert ok_checks >= 1
    stored = db_rows(stack, "SELECT SUM(ok_checks) FROM health_stats WHERE res = 'h'")[0][0]
    assert ok_checks <= stored, "read from the hour rollups (checks keep coming in meanwhile)"
    stack.faults(outage=True)
    try:
        # Live calls that got through in the last minute (the outcomes) keep a failed health check at
        # "degraded", as on the dashboard; a live call failing too makes it "down".
        refund_id = stack.refund(stack.payment(2_000), 500).json()["id"]
        wait_until(lambda: gateway_up(stack) == 0, timeout=20, interval=0.3, what="the outage seen")
        down = scrape(stack)
        assert down.value("refundwatch_gateway_state", connection=CONNECTION, state="down") == 1
        assert down.value("refundwatch_gateway_state", connection=CONNECTION, state="up") == 0
        wait_until(  # the failed live calls may be seen before the first failed check is stored
            lambda: (
                scrape(stack).value("refundwatch_health_checks_total", connection=CONNECTION, result="failed")
                >= 1
            ),
            timeout=15,
            interval=0.3,
            what="a failed health check counted",
        )
    finally:
        stack.faults()
    stack.wait_status(refund_id, "succeeded", "manual_review")
    # The failed calls stay in the last minute's live calls, but a good health check after the last of
    # them means the processor answers again: up (degraded until the minute is over), as on the dashboard.
    wait_until(lambda: gateway_up(stack) == 1, timeout=20, interval=0.3, what="back up after the outage")


def test_work_in_progress_pending_outflow_and_accepted_webhooks(
    stack: Stack, outcomes: dict[str, list[str]]
) -> None:
    big = stack.refund(stack.payment(100_000), 60_000)  # above the approval threshold
    assert big.status_code == 201, big.text
    assert big.json()["status"] == "pending_approval"
    stack.faults(pending_rate=1.0, settle_ms=4000)
    try:
        slow_id = stack.refund(stack.payment(5_000), 1_500).json()["id"]
        stack.wait_status(slow_id, "processing")
        result = scrape(stack)
        in_db = dict(
            db_rows(
                stack,
                "SELECT status, COUNT(*) FROM refunds WHERE status IN "
                "('pending_approval', 'queued', 'submitting', 'processing', 'manual_review') GROUP BY status",
            )
        )
        assert result.value("refundwatch_refunds_in_progress", status="pending_approval") == 1
        assert (
            result.value("refundwatch_refunds_in_progress", status="processing") == in_db["processing"] == 1
        )
        for status in ("queued", "submitting", "manual_review"):  # the outage may have left one for review
            assert result.value("refundwatch_refunds_in_progress", status=status) == in_db.get(status, 0)
        assert result.value("refundwatch_refunds_in_progress_oldest_seconds", status="pending_approval") >= 0
        # approved money only: the refund waiting for approval is not in it
        amount, count = db_rows(
            stack,
            "SELECT SUM(amount), COUNT(*) FROM refunds WHERE currency = 'EUR' AND status IN "
            "('queued', 'submitting', 'processing', 'manual_review')",
        )[0]
        assert amount >= 1_500
        assert result.value("refundwatch_pending_outflow_minor_units", currency="EUR") == amount
        assert result.value("refundwatch_pending_outflow_refunds", currency="EUR") == count
        # the simulator settles the pending refund and tells refundwatch with a webhook
        stack.wait_status(slow_id, "succeeded", timeout=30)
    finally:
        stack.faults(settle_ms=2000)
    wait_until(
        lambda: db_rows(stack, "SELECT COUNT(*) FROM webhook_events")[0][0] >= 1,
        timeout=20,
        what="a webhook stored",
    )
    wait_until(lambda: accepted_matches_database(stack), timeout=10, what="accepted webhooks counted")
    after = scrape(stack)
    assert after.value("refundwatch_refunds_in_progress", status="processing") == 0
    left = db_rows(
        stack,
        "SELECT SUM(amount) FROM refunds "
        "WHERE status IN ('queued', 'submitting', 'processing', 'manual_review')",
    )[0][0]
    assert after.get("refundwatch_pending_outflow_minor_units", currency="EUR") == (
        None if left is None else float(left)
    )
    ids = [r[0] for r in db_rows(stack, "SELECT id FROM webhook_events")]
    assert all(as_uuid(i).version == 7 for i in ids), "the watermark relies on time-ordered ids"


def as_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(str(value))


def accepted_in_db(stack: Stack) -> int:
    return int(
        db_rows(
            stack,
            "SELECT COUNT(*) FROM webhook_events w JOIN connections c ON c.id = w.connection_id "
            "WHERE c.name = ?",
            CONNECTION,
        )[0][0]
    )


def accepted_matches_database(stack: Stack) -> bool:
    expected = accepted_in_db(stack)
    return (
        expected > 0
        and scrape(stack).value("refundwatch_webhooks_accepted_total", connection=CONNECTION) == expected
    )


def test_rejected_webhooks_are_counted(stack: Stack) -> None:
    before = scrape(stack).value("refundwatch_webhooks_rejected_total", connection=CONNECTION)
    response = httpx2.post(
        f"{stack.web_url}/webhooks/{CONNECTION}",
        content=b'{"id": "evt_forged", "type": "refund.updated"}',
        headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=" + "0" * 64},
        timeout=30,
    )
    assert response.status_code in (400, 401), response.text
    after = scrape(stack).value("refundwatch_webhooks_rejected_total", connection=CONNECTION)
    assert after == before + 1


def run_gather(stack: Stack, *, lag_seconds: float) -> str:
    """One scrape in a process of its own, with the webhook watermark's lag shortened."""
    code = f"""
import asyncio, datetime as dt, sys
from refundwatch.health import metrics
from refundwatch.runtime import Runtime

metrics.WATERMARK_LAG = dt.timedelta(seconds={lag_seconds})

async def main():
    rt = await Runtime.build().open(http=False)
    try:
        sys.stdout.write(metrics.render(metrics.families(await metrics.gather(rt))).decode())
    finally:
        await rt.close()

asyncio.run(main())
"""
    done = subprocess.run(
        [PYTHON, "-c", code], env=stack.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_accepted_webhooks_stay_exact_when_the_watermark_moves(stack: Stack) -> None:
    """Events below the watermark are counted in Redis, those above it in the database: moved by one
    process, the total another process reports is the same, and new events keep counting."""
    import redis

    from refundwatch.health.metrics import ACCEPTED_WEBHOOKS_KEY

    expected = accepted_in_db(stack)
    assert expected > 0, "the work-in-progress test stored webhooks"
    moved = parse(stack, run_gather(stack, lag_seconds=0), record=False)
    assert moved.value("refundwatch_webhooks_accepted_total", connection=CONNECTION) == expected
    client = redis.Redis.from_url(stack.redis_url)
    try:
        held = client.hgetall(ACCEPTED_WEBHOOKS_KEY)
        assert b"upto" in held
        assert sum(int(v) for k, v in held.items() if k != b"upto") == expected, "all below the watermark"
        assert scrape(stack).value("refundwatch_webhooks_accepted_total", connection=CONNECTION) == expected
        # a new event, above the watermark
        stack.faults(pending_rate=1.0, settle_ms=500)
        try:
            refund_id = stack.refund(stack.payment(3_000), 1_000).json()["id"]
            stack.wait_status(refund_id, "succeeded", timeout=30)
        finally:
            stack.faults(settle_ms=2000)
        wait_until(lambda: accepted_in_db(stack) > expected, timeout=20, what="another webhook stored")
        wait_until(lambda: accepted_matches_database(stack), timeout=10, what="the new event counted")
        # the key lost (Redis flushed): the next scrape counts everything once, and goes on from there
        client.delete(ACCEPTED_WEBHOOKS_KEY)
        assert accepted_matches_database(stack)
        assert client.hget(ACCEPTED_WEBHOOKS_KEY, "upto") is not None
    finally:
        client.close()


def test_every_web_process_reports_the_same_counters(stack: Stack, outcomes: dict[str, list[str]]) -> None:
    wait_until(lambda: outbox_drained(stack), timeout=15, what="nothing left to fold")
    with second_web(stack) as other:
        here, there = scrape(stack), scrape(stack, other)
    for name in (
        "refundwatch_refunds_total",
        "refundwatch_refund_processing_seconds_bucket",
        "refundwatch_refund_processing_seconds_sum",
        "refundwatch_webhooks_accepted_total",
        "refundwatch_webhooks_rejected_total",
    ):
        assert here.matching(name) == there.matching(name), name


def test_counters_never_go_down_between_scrapes(stack: Stack, outcomes: dict[str, list[str]]) -> None:
    first = scrape(stack)
    stack.wait_status(stack.refund(stack.payment(4_000), 400).json()["id"], "succeeded")
    wait_until(lambda: outbox_drained(stack), timeout=15, what="the new outcome folded")
    last = scrape(stack)
    assert (
        last.value("refundwatch_refunds_total", connection=CONNECTION, outcome="succeeded", error_code="")
        == first.value("refundwatch_refunds_total", connection=CONNECTION, outcome="succeeded", error_code="")
        + 1
    )
    scrapes = [s for backend, s in SCRAPES if backend == stack.backend]
    assert len(scrapes) >= 10
    for earlier, later in itertools.pairwise(scrapes):
        for key, value in earlier.samples.items():
            if earlier.kinds[key] not in MONOTONIC or key[0].endswith("_created"):
                continue
            assert key in later.samples, f"{key} disappeared"
            assert later.samples[key] >= value, f"{key} went down: {value} → {later.samples[key]}"


def test_each_scrape_reads_through_indexes(stack: Stack) -> None:
    """SQLite's plan for each query: index searches, never a scan of refunds or webhook events."""
    if stack.backend != "sqlite":
        pytest.skip("the plans are checked on SQLite")
    from refundwatch.health import metrics
    from refundwatch.reconciliation import figures

    connection_id = as_uuid(db_rows(stack, "SELECT id FROM connections WHERE name = ?", CONNECTION)[0][0])
    watermark = uuid.UUID(int=int((time.time() - 60) * 1000) << 80)
    queries = {
        "refund_stats": metrics.refund_totals_query(),
        "health_stats": metrics.health_totals_query(),
        "health_checks": metrics.last_checks_query([connection_id]),
        "refunds": metrics.unfinished_query(),
        "webhook_events": metrics.accepted_webhooks_query(watermark, watermark),
        "settlement_lines": figures.lines_query(),
        "reconciliation_breaks": figures.open_breaks_query(),
    }
    path = stack.database_url.split(":///", 1)[1]
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        for table, query in queries.items():
            compiled = query.compile(
                dialect=sqlite_dialect.dialect(), compile_kwargs={"render_postcompile": True}
            )
            params = [as_param(compiled.params[name]) for name in compiled.positiontup or ()]
            plan = " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {compiled}", params))
            assert f"SEARCH {table} USING" in plan, (table, plan)
            assert f"SCAN {table}" not in plan, (table, plan)  # not even a whole index


def as_param(value: Any) -> Any:
    return value.bytes if isinstance(value, uuid.UUID) else value


def test_web_requests_are_counted_by_route_template_across_processes(stack: Stack) -> None:
    """Labels are route templates (never raw paths, which would be one series per refund)."""
    refund_id = stack.refund(stack.payment(1_000), 100).json()["id"]
    with stack.api() as client:
        for _ in range(3):
            assert client.get(f"/api/v1/refunds/{refund_id}").status_code == 200

    def requests_for_route() -> float:
        text = stack.metrics().text
        for family in text_string_to_metric_families(text):
            if family.name == "refundwatch_http_requests":
                return sum(
                    s.value
                    for s in family.samples
                    if s.labels.get("route") == "/api/v1/refunds/{refund_id}" and s.labels["status"] == "200"
                )
        return 0.0

    wait_until(lambda: requests_for_route() >= 3, timeout=10, what="requests counted (sent once a second)")
    text = stack.metrics().text
    assert refund_id not in text, "no raw paths in labels"
    histogram = next(
        f
        for f in text_string_to_metric_families(text)
        if f.name == "refundwatch_http_request_duration_seconds"
    )
    buckets = [
        s for s in histogram.samples if s.name.endswith("_bucket") and s.labels["route"] == "/api/v1/refunds"
    ]
    assert buckets, "POST /api/v1/refunds is timed"
    values = [s.value for s in buckets if s.labels["method"] == "POST"]
    assert values == sorted(values), "cumulative buckets"
