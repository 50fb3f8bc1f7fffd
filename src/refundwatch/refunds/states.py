"""The refund state machine: one pure, total transition table (no I/O here).

Every (status, trigger) pair has an entry. People's commands (approve, cancel, retry, close...) are
refused when they do not apply. Processor reports (from the worker, webhooks or sync) follow one rule,
**money truth first**:

- The status a person sees only moves forward: a late or duplicate report that agrees with where the
  refund already is (a second ``succeeded``, an old ``pending`` after ``succeeded``, a ``failed`` for a
  refund already failed) is IGNORED, and the caller records it on the timeline with :func:`ignore_reason`.
- A report that money moved (``succeeded``, or ``accepted``: the processor will move it) is never
  ignored when the refund is in a status that released its amount (``failed``, ``canceled``,
  ``rejected``) or never went out (``pending_approval``). Such a refund goes to ``manual_review``,
  takes its amount back from the payment's refundable balance at once (even past the captured amount:
  the money has left), and carries the contradiction as an alert for a person
  (:attr:`Transition.contradiction`).
- A report that money did not move (``failed``, ``reversed``) for a refund that holds its amount
  (``queued``, ``submitting``, ``processing``, ``manual_review``) moves it to ``failed`` and releases
  the amount; for a refund that had ``succeeded`` it means ``reversed``.
- "Outcome unknown" (a timeout, an unreadable 2xx, a 5xx after the request went out) is not a report:
  the refund stays ``submitting`` with its key and reservation until the processor is asked.

Which attempt a report is about is checked before the table is consulted: a report about an earlier
attempt (another processor refund id or idempotency key) never moves the current one.
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
    CANCEL = "cancel"  # before submission only
    RETRY = "retry"
    CLOSE = "close"  # manual review, closed as not executed once the processor confirms no refund exists
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
    RECONCILIATION = "reconciliation"  # a line of the processor's settlement data


FINAL = frozenset({Status.REJECTED, Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.REVERSED})
# Statuses in which the refund's amount no longer counts against the payment's refundable balance.
RELEASED = frozenset({Status.REJECTED, Status.FAILED, Status.CANCELED, Status.REVERSED})
COMMANDS = frozenset({Trigger.APPROVE, Trigger.REJECT, Trigger.CANCEL, Trigger.RETRY, Trigger.CLOSE})
# Processor reports that say money moved, or will.
MONEY_MOVED = frozenset({Trigger.SUCCEEDED, Trigger.ACCEPTED})
# Where such a report contradicts what refundwatch believed: the amount was released, or never sent.
CONTRADICTED_BY_MONEY = frozenset({Status.FAILED, Status.CANCELED, Status.REJECTED, Status.PENDING_APPROVAL})


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
    # A queued refund can hear from the processor: a retry of an unknown outcome keeps its key, and
    # the earlier send may have gone through after all.
    (S.QUEUED, T.ACCEPTED): S.PROCESSING,
    (S.QUEUED, T.SUCCEEDED): S.SUCCEEDED,
    (S.QUEUED, T.FAILED): S.FAILED,
    (S.QUEUED, T.REVERSED): S.FAILED,
    (S.QUEUED, T.NEEDS_REVIEW): S.MANUAL_REVIEW,
    (S.SUBMITTING, T.SUBMIT): S.SUBMITTING,  # re-send with the same key after an unknown outcome
    (S.SUBMITTING, T.ACCEPTED): S.PROCESSING,
    (S.SUBMITTING, T.SUCCEEDED): S.SUCCEEDED,
    (S.SUBMITTING, T.FAILED): S.FAILED,
    (S.SUBMITTING, T.REVERSED): S.FAILED,
    (S.SUBMITTING, T.NEEDS_REVIEW): S.MANUAL_REVIEW,
    (S.PROCESSING, T.SUCCEEDED): S.SUCCEEDED,
    (S.PROCESSING, T.FAILED): S.FAILED,
    (S.PROCESSING, T.REVERSED): S.FAILED,  # never reached success, so it simply failed
    (S.PROCESSING, T.NEEDS_REVIEW): S.MANUAL_REVIEW,
    (S.SUCCEEDED, T.FAILED): S.REVERSED,  # the processor took back a refund that had succeeded
    (S.SUCCEEDED, T.REVERSED): S.REVERSED,
    (S.FAILED, T.RETRY): S.QUEUED,
    (S.MANUAL_REVIEW, T.RETRY): S.QUEUED,
    # Cancel means "before submission": from manual review only CLOSE, after the processor confirmed
    # that no refund exists (refunds.services.close_unexecuted).
    (S.MANUAL_REVIEW, T.CLOSE): S.CANCELED,
    (S.MANUAL_REVIEW, T.ACCEPTED): S.PROCESSING,
    (S.MANUAL_REVIEW, T.SUCCEEDED): S.SUCCEEDED,
    (S.MANUAL_REVIEW, T.FAILED): S.FAILED,
    (S.MANUAL_REVIEW, T.REVERSED): S.FAILED,
}
# Money moved where refundwatch had released the amount or never sent the refund: a person decides.
for _status in CONTRADICTED_BY_MONEY:
    for _trigger in MONEY_MOVED:
        _MOVES[_status, _trigger] = S.MANUAL_REVIEW
del S, T, _status, _trigger


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


def contradiction(before: Status, trigger: Trigger) -> str | None:
    """What a money-moved report contradicts, in words for the alert; ``None`` when it does not."""
    if trigger not in MONEY_MOVED or before not in CONTRADICTED_BY_MONEY:
        return None
    said = "succeeded" if trigger is Trigger.SUCCEEDED else "accepted (it will pay out)"
    believed = {
        Status.FAILED: "refundwatch had recorded it as failed and released its amount",
        Status.CANCELED: "refundwatch had canceled it and released its amount",
        Status.REJECTED: "it was rejected and never sent",
        Status.PENDING_APPROVAL: "it was still waiting for approval and never sent",
    }[before]
    return f"the processor reports this refund {said}, but {believed}"


def ignore_reason(current: Status | str, trigger: Trigger) -> str:
    """Why a processor report changes nothing, for the timeline (every ignored report is recorded)."""
    status = Status(current)
    if trigger is Trigger.SUBMIT:
        return f"not sent: the refund is {status}"
    if trigger is Trigger.NEEDS_REVIEW:
        return f"no review needed: the refund is already {status}"
    if status is Status.SUCCEEDED:
        return "earlier news: the refund has already succeeded"
    if status is Status.REVERSED:
        return "earlier news: the processor has since reversed this refund"
    if status is Status.PROCESSING and trigger is Trigger.ACCEPTED:
        return "duplicate: the processor had already accepted this refund"
    if trigger in (Trigger.FAILED, Trigger.REVERSED) and status in RELEASED:
        return f"agrees with what is recorded: no money moved and the refund is {status}"
    return f"no change: the refund is already {status}"


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
        """The refund starts counting again (a retry of a failed refund, or a contradicting report)."""
        return self.before in RELEASED and self.after not in RELEASED

    @property
    def contradiction(self) -> str | None:
        """Set when a processor's report contradicts a released status: reserve even past the
        captured amount (the money has moved) and alert a person."""
        return contradiction(self.before, self.trigger)


def decide(current: Status | str, trigger: Trigger) -> Transition | Outcome:
    """The pure decision: a Transition, or IGNORE (stale processor event) / REFUSE (command)."""
    before = Status(current)
    result = TABLE[before, trigger]
    if isinstance(result, Outcome):
        return result
    return Transition(before, result, trigger)


def allowed_commands(current: Status | str) -> list[Trigger]:
    status = Status(current)
    return [t for t in Trigger if t in COMMANDS and isinstance(TABLE[status, t], Status)]
