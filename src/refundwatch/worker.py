"""The arq worker: refund execution, webhooks, sync, sweeping, health checks, audit sealing, rollups,
reconciliation, settlement pulls, alerts, and (a background task beside arq's jobs) outgoing webhooks.

arq is only the delivery mechanism; the database is the source of truth (STYLE: arq is in maintenance
mode). Every job can run twice safely: job id = refund id, the processor idempotency key lives on the
refund, and transitions happen under row locks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any
from uuid import UUID

from arq import Retry, cron, func
from arq.connections import RedisSettings
from sqlalchemy import text

from refundwatch.alerts import rules as alert_rules
from refundwatch.alerts import sending as alert_sending
from refundwatch.audit import checkpoint
from refundwatch.audit.anchors import anchor_periodically
from refundwatch.audit.keys import AuditKeys
from refundwatch.audit.services import seal
from refundwatch.config import get_settings
from refundwatch.dashboard import rollups
from refundwatch.dashboard.signals import ROLLUPS, signals
from refundwatch.health.checks import run_due_checks
from refundwatch.jobs import Worker, enqueue
from refundwatch.logs import configure_logging
from refundwatch.outgoing import retention
from refundwatch.outgoing.dispatcher import Dispatcher
from refundwatch.outgoing.notices import on_endpoint_disabled
from refundwatch.reconciliation.pulling import PULL_JOB
from refundwatch.refunds import execution, syncing
from refundwatch.refunds.breaker import Breaker
from refundwatch.refunds.outcome_log import FinalOutcome, log_outcomes
from refundwatch.refunds.outcomes import RetryLater
from refundwatch.refunds.services import enqueue_execution
from refundwatch.runtime import QUEUE_NAME, Runtime, redis_settings
from refundwatch.webhooks import rejections
from refundwatch.webhooks import services as webhooks

log = logging.getLogger("refundwatch.worker")
SYNC_JOB = "sync_refund"
_EVERY_SECOND = set(range(60))


def _rt(ctx: dict[str, Any]) -> Runtime:
    runtime: Runtime = ctx["rt"]
    return runtime


RECONCILE_TIMEOUT = 1800  # seconds: matching a large import is done in committed batches


async def execute_refund(ctx: dict[str, Any], refund_id: str) -> str:
    outcome = await execution.execute_refund(_rt(ctx), UUID(refund_id))
    if isinstance(outcome, RetryLater):
        raise Retry(defer=outcome.delay)
    return outcome


async def sync_refund(ctx: dict[str, Any], refund_id: str) -> str:
    return await execution.sync_refund(_rt(ctx), UUID(refund_id))


async def process_webhook_event(ctx: dict[str, Any], event_id: str) -> str:
    return await webhooks.process_event(_rt(ctx), UUID(event_id))


async def sweep(ctx: dict[str, Any], *, grace_seconds: int | None = None) -> str:
    """Re-enqueue what should be moving: a lost job message never loses a refund."""
    rt = _rt(ctx)
    grace = rt.settings.sweep_grace_seconds if grace_seconds is None else grace_seconds
    refunds = await execution.stranded(rt, grace_seconds=grace)
    for refund_id in refunds:
        await enqueue_execution(rt, refund_id)
    events = await webhooks.unprocessed(rt, grace_seconds=grace)
    for event_id in events:
        await webhooks.enqueue_processing(rt, event_id)
    return f"swept {len(refunds)} refunds, {len(events)} webhook events"


async def sweep_cron(ctx: dict[str, Any]) -> str:
    return await sweep(ctx)


async def schedule_syncs(ctx: dict[str, Any]) -> int:
    rt = _rt(ctx)
    ids = await syncing.claim_due_syncs(
        rt, interval_seconds=rt.settings.sync_interval_seconds, batch=rt.settings.sync_batch_size
    )
    for refund_id in ids:
        await enqueue(rt.require_redis(), SYNC_JOB, str(refund_id), job_id=f"sync:{refund_id}")
    return len(ids)


async def health_checks(ctx: dict[str, Any]) -> int:
    return await run_due_checks(_rt(ctx))


async def seal_audit(ctx: dict[str, Any]) -> int:
    return await seal(_rt(ctx).db)


async def verify_audit(ctx: dict[str, Any]) -> int:
    """Recheck newly sealed entries; ``/audit`` shows how far the chain is verified (audit.checkpoint)."""
    rt = _rt(ctx)
    found = await checkpoint.advance(rt.db, AuditKeys.from_settings(rt.settings), rt.require_redis())
    return found.seq


async def flush_webhook_rejections(ctx: dict[str, Any]) -> int:
    """One audit entry per connection and minute of rejected webhooks (webhooks.rejections)."""
    return await rejections.flush(_rt(ctx))


async def anchor_audit(ctx: dict[str, Any]) -> str | None:
    rt = _rt(ctx)
    return await anchor_periodically(rt.db, rt.settings, rt.require_redis())


async def fold_rollups(ctx: dict[str, Any]) -> int:
    """Count new outcomes into the dashboard rollups (dashboard.rollups), then tell the dashboards."""
    rt, folded = _rt(ctx), 0
    while True:
        outcomes: list[FinalOutcome] = []
        batch = await rollups.fold(rt.db, outcomes=outcomes)
        await log_outcomes(rt, outcomes)
        if batch == 0:
            break
        folded += batch
    if folded:
        signals.notice(ROLLUPS)
    return folded


async def reconcile(ctx: dict[str, Any]) -> str:
    """Match new settlement lines, run the internal checks, open missing_settlement breaks."""
    from refundwatch.reconciliation.checks import check

    summary = await check(_rt(ctx), scheduled=True)
    return f"{summary.lines} lines matched: {summary.matched} matched, {sum(summary.breaks.values())} breaks"


async def pull_settlement(ctx: dict[str, Any], connection_id: str, ref: str) -> str:
    """Pull the settlement data a processor announced (``payout.paid``), import it, match it."""
    from refundwatch.reconciliation.pulling import pull

    return str(await pull(_rt(ctx), UUID(connection_id), ref))


async def pull_settlements(ctx: dict[str, Any]) -> str:
    """The schedule behind the webhooks: every enabled connection's settlement data not yet pulled."""
    from refundwatch.reconciliation.pulling import pull_due

    return "; ".join(await pull_due(_rt(ctx))) or "no settlement pull due"


async def evaluate_alerts(ctx: dict[str, Any]) -> str:
    """Check the alert rules (alerts.rules); each alert opens and resolves once, whichever worker sees it."""
    return str(await alert_rules.evaluate(_rt(ctx)))


async def send_alerts(ctx: dict[str, Any]) -> int:
    """Send the alert messages queued since (alerts.sending): after commit, once per target."""
    return await alert_sending.deliver_due(_rt(ctx))


async def prune_rollups(ctx: dict[str, Any]) -> None:
    await rollups.prune(_rt(ctx).db)


async def prune_webhook_deliveries(ctx: dict[str, Any]) -> int:
    """Finished outgoing deliveries past REFUNDWATCH_WEBHOOK_RETENTION_DAYS (outgoing.retention)."""
    return await retention.prune(_rt(ctx))


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    configure_logging(settings)
    # Jobs mostly wait on the processor, not the database: a modest pool serves many jobs in flight.
    rt = Runtime.build(settings, pool_size=min(settings.worker_max_jobs, 16))
    rt.connections.cap_call_timeouts(settings.job_timeout_seconds)  # a call ends inside its job
    rt.redis = ctx["redis"]
    rt.breaker = Breaker(threshold=settings.circuit_failures, open_seconds=settings.circuit_open_seconds)
    await rt.open(redis=False, http=True)
    # A database that refuses the worker (no such database or role) ends it here, in one line
    # (cli.friendly), before the background loops start and log the same failure with tracebacks.
    async with rt.db.read_session() as session:
        await session.execute(text("SELECT 1"))
    signals.attach(ctx["redis"])
    ctx["rt"] = rt
    ctx["outgoing"] = Dispatcher(rt).start()  # outgoing webhooks: sends after commit, in the background
    on_endpoint_disabled(alert_rules.on_endpoint_disabled)  # a disabled endpoint alerts at once
    gc.freeze()  # start-up objects stay for good: keep them out of the collector's full passes
    # Start-up sweep: pick up whatever a crashed worker left queued or submitting, right away.
    log.info("start-up sweep: %s", await sweep(ctx, grace_seconds=0))


async def shutdown(ctx: dict[str, Any]) -> None:
    rt: Runtime | None = ctx.get("rt")
    dispatcher: Dispatcher | None = ctx.get("outgoing")
    if dispatcher is not None:
        await dispatcher.stop()
    await signals.detach()
    if rt is not None:
        rt.redis = None  # arq owns and closes its pool
        await rt.close()


def worker_settings() -> dict[str, Any]:
    settings = get_settings()
    timeout = settings.job_timeout_seconds
    sweep_seconds = set(range(0, 60, max(1, min(settings.sweep_interval_seconds, 59))))
    sync_seconds = set(range(0, 60, max(1, min(settings.sync_interval_seconds, 59))))
    reconcile_minutes = set(range(0, 60, max(1, min(settings.reconcile_interval_minutes, 60))))
    pull_minutes = set(range(0, 60, max(1, min(settings.reconcile_pull_minutes, 60))))
    # Alerts keep their own timeouts: a send may take up to its timeout, whatever the refund jobs' is.
    alert_timeout = max(timeout, int(settings.alert_send_timeout_seconds) + 30)
    alert_crons = [cron(send_alerts, second=_EVERY_SECOND, timeout=alert_timeout, unique=True)]
    if settings.alert_interval_seconds:  # 0: not checked here (alerts raised where things happen still go)
        every = set(range(0, 60, settings.alert_interval_seconds))
        alert_crons.append(cron(evaluate_alerts, second=every, timeout=alert_timeout, unique=True))
    return {
        "functions": [
            # keep_result=0: no result key, so the same job id can be enqueued again for a retry.
            func(execute_refund, name="execute_refund", keep_result=0, max_tries=10_000, timeout=timeout),
            func(sync_refund, name=SYNC_JOB, keep_result=0, max_tries=3, timeout=timeout),
            func(
                process_webhook_event, name=webhooks.PROCESS_JOB, keep_result=0, max_tries=20, timeout=timeout
            ),
            # A failed pull is audited and left to the schedule: no arq retries.
            func(pull_settlement, name=PULL_JOB, keep_result=0, max_tries=1, timeout=RECONCILE_TIMEOUT),
        ],
        "cron_jobs": [
            cron(sweep_cron, second=sweep_seconds, run_at_startup=False, timeout=timeout),
            cron(schedule_syncs, second=sync_seconds, timeout=timeout),
            cron(health_checks, second=_EVERY_SECOND, timeout=timeout, unique=True),
            cron(seal_audit, second=_EVERY_SECOND, timeout=timeout, unique=True),
            cron(anchor_audit, second=_EVERY_SECOND, timeout=timeout, unique=True),
            cron(verify_audit, second=set(range(0, 60, 5)), timeout=timeout, unique=True),
            cron(fold_rollups, second=_EVERY_SECOND, timeout=timeout, unique=True),
            cron(flush_webhook_rejections, second=set(range(0, 60, 5)), timeout=timeout, unique=True),
            cron(prune_rollups, minute=7, second=0, timeout=timeout, unique=True),
            cron(prune_webhook_deliveries, minute=17, second=0, timeout=timeout, unique=True),
            *alert_crons,
            # Whole-table checks: their own, longer timeout.
            cron(reconcile, minute=reconcile_minutes, second=30, timeout=RECONCILE_TIMEOUT, unique=True),
            cron(pull_settlements, minute=pull_minutes, second=40, timeout=RECONCILE_TIMEOUT, unique=True),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": QUEUE_NAME,
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": settings.worker_poll_delay,
        # arq reads at most this many jobs per poll; too low caps throughput (STYLE.md, library traps).
        "queue_read_limit": max(settings.worker_max_jobs * 2, 100),
        "job_timeout": timeout,
        "keep_result": 0,
        "health_check_interval": 10,
        "handle_signals": True,
    }


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop, as granian gives the web processes. The worker's CPU per refund is mostly I/O
    plumbing (the processor call, the database, Redis); asyncio's pure-Python transports spent a
    sixth of it in socket writes alone."""
    try:
        import uvloop
    except ImportError:  # not on Windows (pyproject): the standard loop works, only slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker() -> None:
    settings = worker_settings()
    redis: RedisSettings = settings.pop("redis_settings")
    asyncio.set_event_loop(_event_loop())  # arq's Worker runs on the current loop
    worker = Worker(redis_settings=redis, **settings)
    worker.run()
