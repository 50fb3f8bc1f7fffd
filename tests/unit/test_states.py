"""The refund state machine (refunds.states): total, forward-only for processors, strict for commands."""

from __future__ import annotations

import itertools

import pytest

from refundwatch.refunds.states import (
    COMMANDS,
    FINAL,
    RELEASED,
    TABLE,
    Outcome,
    Status,
    Transition,
    Trigger,
    allowed_commands,
    decide,
)

S, T = Status, Trigger
PROCESSOR_TRIGGERS = [t for t in Trigger if t not in COMMANDS]

# Progress of a refund: queued < submitting < processing < final. A processor event may keep a refund
# where it is or move it further, never back. manual_review (a person must decide; the processor may
# still report) sits beside processing: the processor may move either into the other, nothing earlier.
# reversed comes after succeeded.
RANK = {
    S.PENDING_APPROVAL: 0,
    S.QUEUED: 1,
    S.SUBMITTING: 2,
    S.PROCESSING: 3,
    S.MANUAL_REVIEW: 3,
    S.SUCCEEDED: 4,
    S.FAILED: 4,
    S.CANCELED: 4,
    S.REJECTED: 4,
    S.REVERSED: 5,
}


def counts_against_balance(status: Status) -> bool:
    return status not in RELEASED


def test_every_status_and_trigger_has_an_entry() -> None:
    assert set(TABLE) == set(itertools.product(Status, Trigger))
    assert len(TABLE) == len(Status) * len(Trigger)
    for key, value in TABLE.items():
        assert isinstance(value, (Status, Outcome)), key


def test_contract_statuses_and_final_set() -> None:
    assert {s.value for s in Status} == {
        "pending_approval",
        "rejected",
        "queued",
        "submitting",
        "processing",
        "succeeded",
        "failed",
        "canceled",
        "reversed",
        "manual_review",
    }
    assert {S.REJECTED, S.SUCCEEDED, S.FAILED, S.CANCELED, S.REVERSED} == FINAL
    assert set(RANK) == set(Status)


@pytest.mark.parametrize(("status", "trigger"), list(itertools.product(Status, PROCESSOR_TRIGGERS)))
def test_processor_triggers_never_move_backwards(status: Status, trigger: Trigger) -> None:
    decision = decide(status, trigger)
    assert decision is not Outcome.REFUSE, "processor events are ignored, never refused"
    if decision is Outcome.IGNORE:
        return
    assert isinstance(decision, Transition)
    assert RANK[decision.after] >= RANK[status], f"{status} --{trigger}--> {decision.after} goes backwards"
    if decision.after is status:
        # Only the re-send after an unknown outcome stays in place.
        assert (status, trigger) == (S.SUBMITTING, T.SUBMIT)


@pytest.mark.parametrize("trigger", PROCESSOR_TRIGGERS)
def test_late_processor_events_on_settled_refunds_are_ignored(trigger: Trigger) -> None:
    for status in (S.FAILED, S.CANCELED, S.REJECTED, S.REVERSED, S.PENDING_APPROVAL):
        assert decide(status, trigger) is Outcome.IGNORE, (status, trigger)
    if trigger not in (T.FAILED, T.REVERSED):
        assert decide(S.SUCCEEDED, trigger) is Outcome.IGNORE


def test_processor_triggers_never_reopen_a_refund() -> None:
    """No processor event leads back to queued/submitting from later on, or out of a final status
    (except succeeded -> reversed)."""
    for status, trigger in itertools.product(Status, PROCESSOR_TRIGGERS):
        decision = decide(status, trigger)
        if not isinstance(decision, Transition):
            continue
        if decision.after in (S.QUEUED, S.SUBMITTING):
            assert status in (S.QUEUED, S.SUBMITTING), (status, trigger)
        if status in FINAL:
            assert (status, decision.after) == (S.SUCCEEDED, S.REVERSED), (status, trigger)


def test_a_succeeded_refund_can_only_be_reversed() -> None:
    for trigger in (T.FAILED, T.REVERSED):
        decision = decide(S.SUCCEEDED, trigger)
        assert isinstance(decision, Transition)
        assert decision.after is S.REVERSED


def test_queued_refund_waits_for_submission() -> None:
    """Nothing the processor says can settle a refund that was never sent."""
    for trigger in (T.ACCEPTED, T.SUCCEEDED, T.FAILED, T.REVERSED, T.NEEDS_REVIEW):
        assert decide(S.QUEUED, trigger) is Outcome.IGNORE


@pytest.mark.parametrize(("status", "command"), list(itertools.product(FINAL, COMMANDS)))
def test_commands_on_final_refunds_are_refused_except_retry_of_failed(
    status: Status, command: Trigger
) -> None:
    decision = decide(status, command)
    if (status, command) == (S.FAILED, T.RETRY):
        assert isinstance(decision, Transition)
        assert decision.after is S.QUEUED
    else:
        assert decision is Outcome.REFUSE


def test_commands_never_ignored_silently() -> None:
    for status, command in itertools.product(Status, COMMANDS):
        assert decide(status, command) is not Outcome.IGNORE, (status, command)


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        (S.PENDING_APPROVAL, [T.APPROVE, T.REJECT, T.CANCEL]),
        (S.QUEUED, [T.CANCEL]),
        (S.SUBMITTING, []),  # in flight: cannot be canceled any more
        (S.PROCESSING, []),
        (S.MANUAL_REVIEW, [T.CANCEL, T.RETRY]),
        (S.FAILED, [T.RETRY]),
        (S.SUCCEEDED, []),
        (S.CANCELED, []),
        (S.REJECTED, []),
        (S.REVERSED, []),
    ],
)
def test_allowed_commands(status: Status, allowed: list[Trigger]) -> None:
    assert allowed_commands(status) == allowed
    assert allowed_commands(status.value) == allowed


def test_decide_accepts_strings_and_rejects_unknown_status() -> None:
    assert decide("queued", T.CANCEL) == Transition(S.QUEUED, S.CANCELED, T.CANCEL)
    with pytest.raises(ValueError, match="nope"):
        decide("nope", T.CANCEL)


def test_release_and_reserve_flags_follow_the_balance() -> None:
    """Every transition releases exactly when the refund stops counting and reserves when it starts again."""
    for (status, trigger), result in TABLE.items():
        if not isinstance(result, Status):
            continue
        move = decide(status, trigger)
        assert isinstance(move, Transition)
        before, after = counts_against_balance(status), counts_against_balance(result)
        assert move.releases_amount is (before and not after), (status, trigger)
        assert move.reserves_amount is (after and not before), (status, trigger)
        assert not (move.releases_amount and move.reserves_amount)


@pytest.mark.parametrize(
    ("status", "trigger", "releases", "reserves"),
    [
        (S.QUEUED, T.CANCEL, True, False),
        (S.PENDING_APPROVAL, T.REJECT, True, False),
        (S.PENDING_APPROVAL, T.APPROVE, False, False),
        (S.SUBMITTING, T.FAILED, True, False),
        (S.PROCESSING, T.REVERSED, True, False),
        (S.SUCCEEDED, T.REVERSED, True, False),
        (S.MANUAL_REVIEW, T.CANCEL, True, False),
        (S.FAILED, T.RETRY, False, True),
        (S.MANUAL_REVIEW, T.RETRY, False, False),
        (S.SUBMITTING, T.SUCCEEDED, False, False),
        (S.SUBMITTING, T.SUBMIT, False, False),
        (S.QUEUED, T.SUBMIT, False, False),
    ],
)
def test_release_and_reserve_examples(
    status: Status, trigger: Trigger, releases: bool, reserves: bool
) -> None:
    move = decide(status, trigger)
    assert isinstance(move, Transition)
    assert move.releases_amount is releases
    assert move.reserves_amount is reserves
    assert move.changed is (move.after is not status)


def test_every_status_is_reachable_from_a_new_refund() -> None:
    reachable = {S.QUEUED, S.PENDING_APPROVAL}
    frontier = list(reachable)
    while frontier:
        status = frontier.pop()
        for trigger in Trigger:
            result = TABLE[status, trigger]
            if isinstance(result, Status) and result not in reachable:
                reachable.add(result)
                frontier.append(result)
    assert reachable == set(Status)


def test_every_non_final_status_can_still_move() -> None:
    for status in set(Status) - FINAL:
        assert any(isinstance(TABLE[status, t], Status) and TABLE[status, t] is not status for t in Trigger)
