"""Roles, what each may do, and how the identity provider's groups map onto them.

Roles are cumulative: an initiator can do what a viewer can, an approver what an initiator can, an
admin everything. A person gets the highest role any of their groups maps to.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from refundwatch.lib.exceptions import BadInput


class Role(enum.IntEnum):
    VIEWER = 1
    INITIATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Action(enum.StrEnum):
    VIEW = "view"  # dashboard, refunds, timelines
    CREATE = "create"  # start a refund (up to the role's amount limit)
    CANCEL = "cancel"
    RETRY = "retry"
    APPROVE = "approve"  # approve or reject a refund waiting for a second person
    ADMINISTER = "administer"  # connections, API keys, the audit log


MINIMUM_ROLE: dict[Action, Role] = {
    Action.VIEW: Role.VIEWER,
    Action.CREATE: Role.INITIATOR,
    Action.CANCEL: Role.INITIATOR,
    Action.RETRY: Role.INITIATOR,
    Action.APPROVE: Role.APPROVER,
    Action.ADMINISTER: Role.ADMIN,
}


def allowed(role: Role | None, action: Action) -> bool:
    return role is not None and role >= MINIMUM_ROLE[action]


def parse_role_map(raw: str) -> dict[str, Role]:
    """``group=role,...`` (REFUNDWATCH_ROLE_MAP); a group may appear once."""
    mapping: dict[str, Role] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        group, sep, role = (s.strip() for s in item.rpartition("="))
        if not sep or not group or role.upper() not in Role.__members__:
            raise BadInput(f"REFUNDWATCH_ROLE_MAP: {item!r} is not group=viewer|initiator|approver|admin")
        if group in mapping:
            raise BadInput(f"REFUNDWATCH_ROLE_MAP: group {group!r} appears twice")
        mapping[group] = Role[role.upper()]
    return mapping


def parse_role_limits(raw: str) -> dict[Role, int]:
    """``role=amount,...`` in minor units (REFUNDWATCH_ROLE_LIMITS); a role not named has no limit."""
    limits: dict[Role, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        role, sep, amount = (s.strip() for s in item.partition("="))
        # ASCII digits: isdigit() also takes "²", which int() refuses (a traceback at start-up).
        if not sep or role.upper() not in Role.__members__ or not (amount.isascii() and amount.isdigit()):
            raise BadInput(f"REFUNDWATCH_ROLE_LIMITS: {item!r} is not role=amount (minor units)")
        limits[Role[role.upper()]] = int(amount)
    return limits


def groups_of(claims: Mapping[str, Any], claim: str) -> list[str] | None:
    """The group names in ``claim`` (a list, or one string); None when the claim is missing."""
    value = claims.get(claim)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


def role_for(groups: Iterable[str], role_map: Mapping[str, Role]) -> Role | None:
    roles = [role_map[g] for g in groups if g in role_map]
    return max(roles) if roles else None


def name_from(claims: Mapping[str, Any]) -> str:
    """How pages name a person: the ID token's ``name``, else ``preferred_username``, else the e-mail
    (the subject only when the provider sends none of them)."""
    for claim in ("name", "preferred_username", "email"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return value.strip()[:128]
    return str(claims["sub"])[:128]


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in person, as the session holds them."""

    subject: str  # the provider's stable `sub`
    name: str
    email: str | None
    role: Role | None
    groups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Stable identity for four-eyes checks and idempotency scope: never the display name."""
        return f"user:{self.subject}"

    def can(self, action: Action | str) -> bool:
        return allowed(self.role, Action(action))

    @property
    def display(self) -> str:
        """How pages show this person: the name from their ID token (``refunds.people``)."""
        return self.name or self.email or self.subject

    @property
    def audit_label(self) -> str:
        """The first part of this person's actor id in the audit log, ``"<e-mail> (<subject>)"``: a
        machine id that filters and exports match on, so it stays what it always was."""
        return self.email or self.name or self.subject
