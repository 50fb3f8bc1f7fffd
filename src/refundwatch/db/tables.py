"""The tables as SQLAlchemy Core ``Table`` objects, for the hot paths written in Core (refunds.cas,
refunds.intake, webhooks.storing) rather than through the ORM unit of work."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from refundwatch.db.models import (
    Alert,
    AlertDelivery,
    AuditEntry,
    HealthStat,
    Payment,
    Refund,
    RefundAttempt,
    RefundEvent,
    RefundStat,
    RollupOutbox,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

REFUNDS = cast(Table, Refund.__table__)
EVENTS = cast(Table, RefundEvent.__table__)
AUDIT = cast(Table, AuditEntry.__table__)
PAYMENTS = cast(Table, Payment.__table__)
OUTBOX = cast(Table, RollupOutbox.__table__)
STATS = cast(Table, RefundStat.__table__)
HEALTH_STATS = cast(Table, HealthStat.__table__)
WEBHOOK_EVENTS = cast(Table, WebhookEvent.__table__)
ATTEMPTS = cast(Table, RefundAttempt.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)
DELIVERY_ATTEMPTS = cast(Table, WebhookAttempt.__table__)
ALERTS = cast(Table, Alert.__table__)
ALERT_DELIVERIES = cast(Table, AlertDelivery.__table__)
