"""Server-rendered staff pages, all behind the staff guard (sign-in and role; auth.guards)."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from refundwatch.alerts import pages as alert_pages
from refundwatch.auth.guards import staff, staff_guard
from refundwatch.dashboard import controllers as dashboard
from refundwatch.payments import pages as payment_pages
from refundwatch.refunds import pages as refund_pages
from refundwatch.web import admin_manage, admin_pages, audit_pages, reconciliation_pages, webhook_pages


def pages_router() -> Router:
    """Every staff page: the guard runs before each one (anonymous → sign-in, role checked)."""
    return Router(
        path="/",
        route_handlers=[
            *dashboard.ROUTES,
            *refund_pages.ROUTES,
            *payment_pages.ROUTES,
            *admin_pages.ROUTES,
            *audit_pages.ROUTES,
            *reconciliation_pages.ROUTES,
            *admin_manage.ROUTES,
            *alert_pages.ROUTES,
            *webhook_pages.ROUTES,
        ],
        guards=[staff_guard],
        dependencies={"session": Provide(staff)},
        include_in_schema=False,
    )
