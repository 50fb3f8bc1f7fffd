"""Who did something, and the names of what they did (``source:subject:action``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # user | api_key | system | processor
    id: str
    ip: str | None = None
    user_agent: str | None = None


WORKER = Actor("system", "worker")


def processor_actor(connection_name: str) -> Actor:
    return Actor("processor", connection_name)


# The actions refundwatch records. Kept in one place so the audit page can explain them.
API_PAYMENT_CREATE = "api:payment:create"
API_REFUND_CREATE = "api:refund:create"
REFUND_TRANSITION = "{source}:refund:transition"
# A signed-in person refused: a role below the action (auth.guards), or four eyes (refunds.services).
ACCESS_DENIED = "user:access:denied"
WEBHOOK_ACCEPTED = "webhook:event:accepted"
WEBHOOK_REJECTED = "webhook:event:rejected"
WEBHOOK_UNVERIFIED = "webhook:event:unverified"  # could not be checked now; the processor re-sends
CLI_CONNECTION_CREATE = "cli:connection:create"
CLI_CONNECTION_UPDATE = "cli:connection:update"
CLI_PAYMENTS_IMPORT = "cli:payments:import"
CLI_APIKEY_CREATE = "cli:apikey:create"
CLI_APIKEY_REVOKE = "cli:apikey:revoke"
ADMIN_APIKEY_CREATE = "admin:apikey:create"
ADMIN_APIKEY_REVOKE = "admin:apikey:revoke"
ADMIN_CONNECTION_ENABLE = "admin:connection:enable"
ADMIN_CONNECTION_DISABLE = "admin:connection:disable"
ADMIN_CONNECTION_UPDATE = "admin:connection:update"
ADMIN_CONNECTION_CREDENTIALS_REQUESTED = "admin:connection:credentials_requested"
ADMIN_CONNECTION_CREDENTIALS_APPROVED = "admin:connection:credentials_approved"
ADMIN_CONNECTION_CREDENTIALS_REJECTED = "admin:connection:credentials_rejected"
CLI_KEYS_ROTATE = "cli:keys:rotate"
USER_REFUNDS_EXPORT = "user:refunds:export"
USER_AUDIT_EXPORT = "user:audit:export"
USER_RECONCILIATION_EXPORT = "user:reconciliation:export"
REFUND_ALERT = "processor:refund:alert"
RECONCILIATION_IMPORT = "reconciliation:report:import"
RECONCILIATION_RESOLVE = "reconciliation:break:resolve"
# Settlement data pulled from a processor's API (reconciliation.pulling): imported, or why not.
RECONCILIATION_PULL = "reconciliation:settlement:pull"
RECONCILIATION_PULL_FAILED = "reconciliation:settlement:pull_failed"
# Outgoing webhook endpoints (outgoing.endpoints): {source} is api, admin or worker; {verb} create,
# update, delete, rotate_secret, enable, disable, resend.
WEBHOOK_ENDPOINT = "{source}:webhook_endpoint:{verb}"
# Alerts to people (refundwatch.alerts): opened (a rule's condition, or where a report contradicted
# the books) and resolved (its condition cleared, or a person resolved it).
ALERT_OPENED = "system:alert:opened"
ALERT_RESOLVED = "system:alert:resolved"
ALERT_ESCALATED = "system:alert:escalated"
