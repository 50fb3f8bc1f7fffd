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
    ignore_reason,
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


IGN = Outcome.IGNORE
MR_ALERT = "manual_review, amount reserved again, alert"  # a contradiction: money moved after release
REPORTS = (T.ACCEPTED, T.SUCCEEDED, T.FAILED, T.REVERSED, T.NEEDS_REVIEW)
# Every status against every processor report (money truth first, refunds.states docstring).
EXPECTED: dict[Status, tuple[Status | Outcome | str, ...]] = {
    #                   accepted       succeeded     failed         reversed       needs_review
    S.PENDING_APPROVAL: (MR_ALERT, MR_ALERT, IGN, IGN, IGN),
    S.REJECTED: (MR_ALERT, MR_ALERT, IGN, IGN, IGN),
    S.QUEUED: (S.PROCESSING, S.SUCCEEDED, S.FAILED, S.FAILED, S.MANUAL_REVIEW),
    S.SUBMITTING: (S.PROCESSING, S.SUCCEEDED, S.FAILED, S.FAILED, S.MANUAL_REVIEW),
    S.PROCESSING: (IGN, S.SUCCEEDED, S.FAILED, S.FAILED, S.MANUAL_REVIEW),
    S.SUCCEEDED: (IGN, IGN, S.REVERSED, S.REVERSED, IGN),
    S.FAILED: (MR_ALERT, MR_ALERT, IGN, IGN, IGN),
    S.CANCELED: (MR_ALERT, MR_ALERT, IGN, IGN, IGN),
    S.REVERSED: (IGN, IGN, IGN, IGN, IGN),
    S.MANUAL_REVIEW: (S.PROCESSING, S.SUCCEEDED, S.FAILED, S.FAILED, IGN),
}


@pytest.mark.parametrize(("status", "report"), list(itertools.product(Status, REPORTS)))
def test_every_status_against_every_processor_report(status: Status, report: Trigger) -> None:
    expected = EXPECTED[status][REPORTS.index(report)]
    decision = decide(status, report)
    if expected is IGN:
        assert decision is IGN
        assert ignore_reason(status, report)  # every ignored report says why on the timeline
        return
    assert isinstance(decision, Transition)
    if expected == MR_ALERT:
        assert decision.after is S.MANUAL_REVIEW
        assert decision.reserves_amount is (status in RELEASED)
        assert decision.contradiction
        assert "processor reports" in decision.contradiction
    else:
        assert decision.after is expected
        assert decision.contradiction is None


def test_money_moved_is_never_ignored_where_the_amount_was_released() -> None:
    for status in RELEASED - {S.REVERSED}:
        for report in (T.SUCCEEDED, T.ACCEPTED):
            move = decide(status, report)
            assert isinstance(move, Transition), (status, report)
            assert move.reserves_amount
            assert move.contradiction


@pytest.mark.parametrize(("status", "trigger"), list(itertools.product(Status, PROCESSOR_TRIGGERS)))
def test_processor_triggers_move_forward_unless_money_contradicts(status: Status, trigger: Trigger) -> None:
    decision = decide(status, trigger)
    assert decision is not Outcome.REFUSE, "processor events are ignored, never refused"
    if decision is Outcome.IGNORE:
        return
    assert isinstance(decision, Transition)
    if decision.contradiction is None:
        assert RANK[decision.after] >= RANK[status], (
            f"{status} --{trigger}--> {decision.after} goes backwards"
        )
    if decision.after is status:
        # Only the re-send after an unknown outcome stays in place.
        assert (status, trigger) == (S.SUBMITTING, T.SUBMIT)


def test_processor_triggers_never_reopen_a_refund_for_sending() -> None:
    """No processor event leads back to queued/submitting from later on; out of a final status only
    succeeded -> reversed, or a contradiction to manual review."""
    for status, trigger in itertools.product(Status, PROCESSOR_TRIGGERS):
        decision = decide(status, trigger)
        if not isinstance(decision, Transition):
            continue
        if decision.after in (S.QUEUED, S.SUBMITTING):
            assert status in (S.QUEUED, S.SUBMITTING), (status, trigger)
        if status in FINAL and decision.contradiction is None:
            assert (status, decision.after) == (S.SUCCEEDED, S.REVERSED), (status, trigger)


def test_a_succeeded_refund_can_only_be_reversed() -> None:
    for trigger in (T.FAILED, T.REVERSED):
        decision = decide(S.SUCCEEDED, trigger)
        assert isinstance(decision, Transition)
        assert decision.after is S.REVERSED


def test_manual_review_cannot_be_canceled_only_closed() -> None:
    assert decide(S.MANUAL_REVIEW, T.CANCEL) is Outcome.REFUSE
    move = decide(S.MANUAL_REVIEW, T.CLOSE)
    assert isinstance(move, Transition)
    assert move.after is S.CANCELED
    assert move.releases_amount
    for status in set(Status) - {S.MANUAL_REVIEW}:
        assert decide(status, T.CLOSE) is Outcome.REFUSE


# In declaration order, not the frozensets' (hash-seeded): pytest-xdist workers must collect the same list.
@pytest.mark.parametrize(
    ("status", "command"),
    [(s, c) for s, c in itertools.product(Status, Trigger) if s in FINAL and c in COMMANDS],
)
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
        (S.MANUAL_REVIEW, [T.RETRY, T.CLOSE]),
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
        (S.MANUAL_REVIEW, T.CLOSE, True, False),
        (S.FAILED, T.SUCCEEDED, False, True),
        (S.CANCELED, T.ACCEPTED, False, True),
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
