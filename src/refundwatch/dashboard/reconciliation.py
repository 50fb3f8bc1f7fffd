"""The reconciliation panel: the matched share of the processors' refund lines, open breaks and the
oldest, for all connections or the view's one (reconciliation.figures, shared with /metrics)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from refundwatch.dashboard.panels import Scope
from refundwatch.reconciliation.figures import gather
from refundwatch.runtime import Runtime


@dataclasses.dataclass(frozen=True, slots=True)
class ReconciliationPanel:
    refund_lines: int
    matched_lines: int
    matched_share: float | None
    open_breaks: int
    by_kind: list[tuple[str, int]]
    oldest_open: dt.datetime | None
    now: dt.datetime


async def reconciliation(rt: Runtime, scope: Scope) -> ReconciliationPanel:
    figures = await gather(rt, scope.connection_id)
    kinds: dict[str, int] = {}
    for (kind, _), n in figures.open_breaks.items():
        kinds[kind] = kinds.get(kind, 0) + n
    return ReconciliationPanel(
        refund_lines=figures.refund_lines,
        matched_lines=figures.matched_lines,
        matched_share=figures.matched_share,
        open_breaks=figures.open_count,
        by_kind=sorted(kinds.items(), key=lambda item: (-item[1], item[0])),
        oldest_open=figures.oldest_open,
        now=scope.now,
    )
