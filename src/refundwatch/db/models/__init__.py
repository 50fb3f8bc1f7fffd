"""All tables; importing this module registers them on the shared metadata (Alembic reads it)."""

from advanced_alchemy.base import orm_registry

from refundwatch.db.models._alert import Alert, AlertDelivery
from refundwatch.db.models._apikey import ApiKey
from refundwatch.db.models._audit import AuditEntry
from refundwatch.db.models._connection import Connection, ConnectionChange, HealthCheck
from refundwatch.db.models._outgoing import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from refundwatch.db.models._payment import Payment
from refundwatch.db.models._refund import Refund, RefundAttempt, RefundEvent
from refundwatch.db.models._settlement import ReconciliationBreak, SettlementEntry, SettlementFile
from refundwatch.db.models._stats import HealthStat, RefundStat, RollupOutbox
from refundwatch.db.models._webhook import WebhookEvent

metadata = orm_registry.metadata

__all__ = [
    "Alert",
    "AlertDelivery",
    "ApiKey",
    "AuditEntry",
    "Connection",
    "ConnectionChange",
    "HealthCheck",
    "HealthStat",
    "Payment",
    "ReconciliationBreak",
    "Refund",
    "RefundAttempt",
    "RefundEvent",
    "RefundStat",
    "RollupOutbox",
    "SettlementEntry",
    "SettlementFile",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "metadata",
]
