"""The refund state machine: one pure, total transition table (no I/O here).

Every (status, trigger) pair has an entry. Processor-driven triggers (from the worker, webhooks or
sync) only ever move a refund forward, so a late or duplicate event is ignored instead of moving it
back. People's commands (approve, cancel, retry, ...) are refused when they do not apply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    REVERSED = "reversed"
    MANUAL_REVIEW = "manual_review"


class Trigger(enum.StrEnum):
    # people and API clients
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    RETRY = "retry"
    # the worker and the processor
    SUBMIT = "submit"  # a call is about to be sent (or re-sent with the same key)
    ACCEPTED = "accepted"  # processor took it; outcome still to come
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"
    NEEDS_REVIEW = "needs_review"  # retries exhausted or ambiguous answer


class Source(enum.StrEnum):
    API = "api"
    USER = "user"
    WORKER = "worker"
    WEBHOOK = "webhook"
    SYNC = "sync"


FINAL = frozenset({Status.REJECTED, Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.REVERSED})
# Statuses in which the refund's amount no longer counts against the payment's refundable balance.
RELEASED = frozenset({Status.REJECTED, Status.FAILED, Status.CANCELED, Status.REVERSED})
COMMANDS = frozenset({Trigger.APPROVE, Trigger.REJECT, Trigger.CANCEL, Trigger.RETRY})


class Outcome(enum.Enum):
    IGNORE = "ignore"  # a late or duplicate processor event: nothing changes
    REFUSE = "refuse"  # a command that does not apply in this status


S, T = Status, Trigger
_MOVES: dict[tuple[Status, Trigger], Status] = {
    (S.PENDING_APPROVAL, T.APPROVE): S.QUEUED,
    (S.PENDING_APPROVAL, T.REJECT): S.REJECTED,
    (S.PENDING_APPROVAL, T.CANCEL): S.CANCELED,
    (S.QUEUED, T.CANCEL): S.CANCELED,
    (S.QUEUED, T.SUBMIT): S.SUBMITTING,
    (S.SUBMITTING, T.SUBMIT): S.SUBMITTING,  # re-send with the same key after an unknown outcome
    (S.SUBMITTING, T.ACCEPTED): S.PROCESSING,
    (S.SUBMITTING, T.SUCCEEDED): S.SUCCEEDED,
    (S.SUBMITTING, T.FAILED): S.FAILED,
    (S.SUBMITTING, T.NEEDS_REVIEW): S.MANUAL_REVIEW,
    (S.PROCESSING, T.SUCCEEDED): S.SUCCEEDED,
    (S.PROCESSING, T.FAILED): S.FAILED,
    (S.PROCESSING, T.REVERSED): S.FAILED,  # never reached success, so it simply failed
    (S.PROCESSING, T.NEEDS_REVIEW): S.MANUAL_REVIEW,
    (S.SUCCEEDED, T.FAILED): S.REVERSED,  # the processor took back a refund that had succeeded
    (S.SUCCEEDED, T.REVERSED): S.REVERSED,
    (S.FAILED, T.RETRY): S.QUEUED,
    (S.MANUAL_REVIEW, T.RETRY): S.QUEUED,
    (S.MANUAL_REVIEW, T.CANCEL): S.CANCELED,  # a person decided it never went out
    (S.MANUAL_REVIEW, T.ACCEPTED): S.PROCESSING,
    (S.MANUAL_REVIEW, T.SUCCEEDED): S.SUCCEEDED,
    (S.MANUAL_REVIEW, T.FAILED): S.FAILED,
}
del S, T


def _build_table() -> dict[tuple[Status, Trigger], Status | Outcome]:
    table: dict[tuple[Status, Trigger], Status | Outcome] = {}
    for status in Status:
        for trigger in Trigger:
            move = _MOVES.get((status, trigger))
            if move is not None:
                table[status, trigger] = move
            else:
                table[status, trigger] = Outcome.REFUSE if trigger in COMMANDS else Outcome.IGNORE
    return table


TABLE: dict[tuple[Status, Trigger], Status | Outcome] = _build_table()


@dataclass(frozen=True, slots=True)
class Transition:
    before: Status
    after: Status
    trigger: Trigger

    @property
    def changed(self) -> bool:
        return self.before is not self.after

    @property
    def releases_amount(self) -> bool:
        """The refund stops counting against the payment's refundable balance."""
        return self.after in RELEASED and self.before not in RELEASED

    @property
    def reserves_amount(self) -> bool:
        """The refund starts counting again (a retry of a failed refund)."""
        return self.before in RELEASED and self.after not in RELEASED


def decide(current: Status | str, trigger: Trigger) -> Transition | Outcome:
    """The pure decision: a Transition, or IGNORE (stale processor event) / REFUSE (command)."""
    before = Status(current)
    result = TABLE[before, trigger]
    if isinstance(result, Outcome):
        return result
    return Transition(before, result, trigger)


def allowed_commands(current: Status | str) -> list[Trigger]:
    status = Status(current)
    return [
        t
        for t in (Trigger.APPROVE, Trigger.REJECT, Trigger.CANCEL, Trigger.RETRY)
        if isinstance(TABLE[status, t], Status)
    ]
