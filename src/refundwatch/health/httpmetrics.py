"""Web requests for /metrics: counts by method, route template and status, and a duration histogram.

Every web process adds what it served to one Redis hash (dashboard.signals, at most once a second), so
any process answers for all of them, like the other metrics. Fields: ``"<method> <route> <status>"`` is
the count, ``"… sum"`` the seconds, ``"… le <bound>"`` the requests in that bucket (not cumulative).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from refundwatch.dashboard.signals import HTTP_BOUNDS, UNTIMED_ROUTES


def http_families(raw: dict[bytes, bytes]) -> Iterable[Metric]:
    counts: dict[tuple[str, str, str], int] = {}
    sums: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(HTTP_BOUNDS))
    for field_raw, value_raw in raw.items():
        parts = field_raw.decode().split(" ")
        if len(parts) < 3:
            continue
        method, route, status, rest = parts[0], parts[1], parts[2], parts[3:]
        if not rest:
            counts[method, route, status] = int(float(value_raw))
        elif rest == ["sum"]:
            sums[method, route] += float(value_raw)
        elif len(rest) == 2 and rest[0] == "le" and float(rest[1]) in HTTP_BOUNDS:
            buckets[method, route][HTTP_BOUNDS.index(float(rest[1]))] += int(float(value_raw))
    requests = CounterMetricFamily(
        "refundwatch_http_requests",
        "HTTP requests served, by method, route template and status.",
        labels=["method", "route", "status"],
    )
    for (method, route, status), n in sorted(counts.items()):
        requests.add_metric([method, route, status], n)
    yield requests
    duration = HistogramMetricFamily(
        "refundwatch_http_request_duration_seconds",
        "Time to serve a request, by method and route template (not the live event stream).",
        labels=["method", "route"],
    )
    timed = {(m, r) for (m, r, _s) in counts if r not in UNTIMED_ROUTES}
    les = [str(bound) for bound in HTTP_BOUNDS] + ["+Inf"]
    for method, route in sorted(timed):
        total = sum(n for (m, r, _s), n in counts.items() if (m, r) == (method, route))
        slower = total - sum(buckets[method, route])  # beyond the last bound: only in +Inf
        cumulative = cumulative_buckets(les, [*buckets[method, route], slower])
        duration.add_metric([method, route], cumulative, sum_value=sums[method, route])
    yield duration


def cumulative_buckets(les: Sequence[str], counts: Sequence[float]) -> list[tuple[str, float]]:
    """Per-bucket counts → Prometheus's cumulative ``le`` buckets (the last ``le`` is ``+Inf``)."""
    result, running = [], 0.0
    for le, count in zip(les, counts, strict=True):
        running += count
        result.append((le, running))
    return result
