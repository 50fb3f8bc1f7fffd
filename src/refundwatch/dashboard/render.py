"""One way to render a panel, whoever asks: the page, a panel request (fallback poll) or the live
broadcaster. A panel is a context builder plus ``templates/partials/dashboard/_<name>.html``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from jinja2 import Environment

from refundwatch.dashboard import panels, reconciliation, uptime
from refundwatch.dashboard.panels import Scope
from refundwatch.runtime import Runtime

Builder = Callable[[Runtime, Scope], Awaitable[Any]]

PANELS: dict[str, Builder] = {
    "success": panels.success_rate,
    "timing": panels.processing_time,
    "uptime": uptime.gateway_uptime,
    "feed": panels.feed,
    "failures": panels.failures,
    "wip": panels.work_in_progress,
    "outflow": panels.pending_outflow,
    "alerts": panels.alerts,
    "reconciliation": reconciliation.reconciliation,
}
# What makes a panel stale: a refund changing (feed, work in progress, outflow), the rollups moving,
# new health checks, breaks resolved, or alerts opened or resolved. Everything is also redrawn on a
# slow timer, as windows slide and ages grow.
ON_REFUND_CHANGE = ("feed", "wip", "outflow", "alerts")
ON_ROLLUPS = ("success", "timing", "failures")
ON_HEALTH = ("uptime",)
ON_RECONCILIATION = ("reconciliation",)  # resolved or uploaded here; CLI and worker: the slow timer
ON_ALERTS = ("alerts",)


async def panel_context(rt: Runtime, scope: Scope, name: str) -> dict[str, Any]:
    return {"p": await PANELS[name](rt, scope), "view": scope.view, "scope": scope, "names": scope.names}


async def render_panel(rt: Runtime, env: Environment, scope: Scope, name: str) -> str:
    context = await panel_context(rt, scope, name)
    return env.get_template(f"partials/dashboard/_{name}.html").render(context)


def sse_message(event: str, html: str) -> bytes:
    """One server-sent event, encoded once and forwarded as-is to every subscriber."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()
