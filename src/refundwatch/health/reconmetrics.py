"""Reconciliation on ``/metrics``: the figures of the dashboard's panel (reconciliation.figures).

Gauges, since they are states, not events: refund lines in imported settlement data and the matched
ones per connection (their ratio is also given, for the panel's one number), open breaks per kind and
connection, and how long the oldest open break has been open. Labels stay bounded: the break kinds,
the connection names (empty for breaks of an internal check, which belong to none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from uuid import UUID

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from refundwatch.reconciliation.breaks import KINDS
from refundwatch.reconciliation.figures import Figures


def reconciliation_families(figures: Figures, names: dict[UUID, str], now: dt.datetime) -> Iterable[Metric]:
    lines = GaugeMetricFamily(
        "refundwatch_reconciliation_refund_lines",
        "Refund and refund-failure lines in imported settlement data that matching has classified.",
        labels=["connection"],
    )
    matched = GaugeMetricFamily(
        "refundwatch_reconciliation_matched_refund_lines",
        "Of refundwatch_reconciliation_refund_lines, those matched to a refund with the same amount "
        "and currency.",
        labels=["connection"],
    )
    for connection_id, name in sorted(names.items(), key=lambda item: item[1]):
        counts = figures.lines.get(connection_id)
        lines.add_metric([name], counts.lines if counts else 0)
        matched.add_metric([name], counts.matched if counts else 0)
    yield from (lines, matched)
    share = figures.matched_share
    if share is not None:  # no ratio before any refund line was imported
        yield GaugeMetricFamily(
            "refundwatch_reconciliation_matched_ratio",
            "Matched refund lines / all refund lines, over every connection (the dashboard's figure).",
            value=share,
        )
    open_breaks = GaugeMetricFamily(
        "refundwatch_reconciliation_open_breaks",
        "Open reconciliation breaks by kind and connection (connection empty: an internal check's).",
        labels=["kind", "connection"],
    )
    counted: dict[tuple[str, str], int] = {(kind, ""): 0 for kind in KINDS}
    for (kind, where), n in figures.open_breaks.items():
        name = names.get(where, "") if where is not None else ""
        if kind in KINDS:  # the documented kinds only: labels stay bounded
            counted[(kind, name)] = counted.get((kind, name), 0) + n
    for (kind, name), n in sorted(counted.items()):
        open_breaks.add_metric([kind, name], n)
    yield open_breaks
    oldest = figures.oldest_open
    yield GaugeMetricFamily(
        "refundwatch_reconciliation_open_breaks_oldest_seconds",
        "Time since the oldest open reconciliation break was opened (0 when none is open).",
        value=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
    )
