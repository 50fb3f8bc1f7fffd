"""Server-rendered SVG charts: no script, colours from CSS classes (so dark mode and the CSP hold), and
a text alternative on every chart (``<title>`` and ``<desc>``, plus ``summary`` for the page)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True, slots=True)
class Chart:
    svg: Markup
    summary: str
    note: str | None = None  # shown under a chart that draws no line: why there is none


MIN_POINTS = 3  # fewer known points than this make no line worth reading (one or two dots)


class Steps:
    """Slots of ``step`` from ``start`` to ``end``: the points of a sparkline."""

    def __init__(self, start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> None:
        self.start, self.step = start, step
        self.count = max(1, int((end - start) / step) + 1)

    def zeros(self) -> list[int]:
        return [0] * self.count

    def slot(self, at: dt.datetime) -> int:
        return min(self.count - 1, max(0, int((at - self.start) / self.step)))

    def describe(self) -> str:
        return duration(self.step.total_seconds() * 1000)


def duration(ms: float) -> str:
    """A short human duration: 75 ms, 2.5 s, 15 min, 2 h."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _frame(width: int, height: int, label: str, summary: str, body: str, css: str) -> Markup:
    n = secrets.token_hex(4)  # fragments rendered by different processes share one page
    return Markup(  # noqa: S704 - every text inside is escaped; the rest is numbers we made
        f'<svg class="chart {css}" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        f'aria-labelledby="chart-t{n} chart-d{n}" focusable="false">'
        f'<title id="chart-t{n}">{escape(label)}</title><desc id="chart-d{n}">{escape(summary)}</desc>'
        f"{body}</svg>"
    )


def sparkline(
    values: Sequence[float | None],
    *,
    low: float,
    high: float,
    label: str,
    interval: str | None = None,
    width: int = 120,
    height: int = 32,
) -> Chart:
    """A line over the known points; gaps where nothing happened stay gaps (not zeros). With fewer
    than MIN_POINTS known points there is no line, and the chart says why (``note``)."""
    known = [v for v in values if v is not None]
    if len(known) < MIN_POINTS:
        step_text = f" of {interval}" if interval else ""
        # (the interval still running is not drawn by every caller: "finished" keeps this true)
        if not known:
            summary = f"No line yet: no finished interval{step_text} has data; a line needs {MIN_POINTS}."
        else:
            have = "1 interval" if len(known) == 1 else f"{len(known)} intervals"
            summary = f"No line yet: data for {have}{step_text}; a line needs at least {MIN_POINTS}."
        return Chart(_frame(width, height, label, summary, "", "spark empty"), summary, summary)
    span = (high - low) or 1.0
    step = width / max(1, len(values) - 1)
    segments: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        y = height - 2 - (min(max(value, low), high) - low) / span * (height - 4)
        segments[-1].append(f"{i * step:.1f},{y:.1f}")
    body = f'<line class="base" x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}"/>'
    for seg in (s for s in segments if s):
        if len(seg) == 1:
            cx, cy = seg[0].split(",")
            body += f'<circle class="dot" cx="{cx}" cy="{cy}" r="1.5"/>'
            continue
        first_x, last_x = seg[0].split(",")[0], seg[-1].split(",")[0]
        area = f"{first_x},{height} {' '.join(seg)} {last_x},{height}"
        body += f'<polygon class="area" points="{area}"/><polyline class="line" points="{" ".join(seg)}"/>'
    summary = (
        f"From {_num(known[0])} to {_num(known[-1])}; lowest {_num(min(known))}, highest {_num(max(known))}."
    )
    return Chart(_frame(width, height, label, summary, body, "spark"), summary)


def histogram(
    counts: Sequence[int], labels: Sequence[str], *, label: str, width: int = 320, height: int = 80
) -> Chart:
    """Bars per latency bucket, trimmed to the buckets in use."""
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        summary = "No finished refunds in this window."
        return Chart(_frame(width, height, label, summary, "", "bars empty"), summary)
    first, last = used[0], used[-1]
    shown = list(range(first, last + 1))
    top = max(counts)
    bar = width / len(shown)
    body = []
    for x, i in enumerate(shown):
        h = counts[i] / top * (height - 14)
        body.append(
            f'<rect class="bar" x="{x * bar + 1:.1f}" y="{height - 12 - h:.1f}" width="{bar - 2:.1f}" '
            f'height="{h:.1f}"><title>{escape(labels[i])}: {counts[i]}</title></rect>'
        )
    body.append(f'<text class="axis" x="0" y="{height - 1}">{escape(labels[first])}</text>')
    body.append(
        f'<text class="axis" x="{width}" y="{height - 1}" text-anchor="end">{escape(labels[last])}</text>'
    )
    summary = "; ".join(f"up to {labels[i]}: {counts[i]}" for i in shown if counts[i])
    return Chart(_frame(width, height, label, summary, "".join(body), "bars"), summary)


def _num(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"
