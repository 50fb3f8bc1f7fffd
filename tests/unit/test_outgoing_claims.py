"""How much the outgoing webhooks' sender claims at once, and what it does with a claim that waited.

The dispatcher's decisions, with ``delivery.send`` replaced (sends, leases and records have their own
tests against real databases and a real receiver in tests/integration/test_outgoing_webhooks.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from refundwatch.config import Settings
from refundwatch.outgoing import delivery, dispatcher
from refundwatch.outgoing.dispatcher import CLAIM_FACTOR, Dispatcher
from refundwatch.outgoing.sending import Attempt

SLOTS, TIMEOUT = 2, 1.0
_ids = itertools.count(1)


@dataclass
class FakeRuntime:
    settings: Settings


def claimed(endpoint: uuid.UUID, lease_left: float) -> delivery.Claimed:
    now = delivery.utcnow()
    return delivery.Claimed(
        next(_ids), endpoint, "refund.succeeded", None, None, None, now, None, 0,
        now + dt.timedelta(seconds=lease_left),
    )  # fmt: skip


@pytest.fixture
async def sender(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Dispatcher, dict[str, Any]]]:
    """A dispatcher whose sends take ``seen["latency"]`` seconds; ``seen`` records what was sent and
    the most sends at once."""
    settings = Settings(mode="test", webhook_endpoint_concurrency=SLOTS, webhook_timeout_seconds=TIMEOUT)
    seen: dict[str, Any] = {"sent": [], "now": 0, "most": 0, "latency": 0.001}

    async def send(rt: Any, client: Any, one: delivery.Claimed, *args: Any) -> delivery.Sent:
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        await asyncio.sleep(seen["latency"])
        seen["now"] -= 1
        seen["sent"].append(one.id)
        latency_ms = int(seen["latency"] * 1000)
        return delivery.Sent(one, Attempt(True, latency_ms, 200), "{}", delivery.utcnow())

    monkeypatch.setattr(delivery, "send", send)
    dispatch = Dispatcher(FakeRuntime(settings))  # type: ignore[arg-type]
    yield dispatch, seen
    for client in dispatch._clients.values():
        await client.aclose()


async def run(sender: Dispatcher, batch: list[delivery.Claimed]) -> None:
    for one in batch:
        sender._in_flight[one.endpoint_id] += 1
    signer = delivery.Signer(batch[0].endpoint_id, "https://example.com/hook", ("whsec_x",))
    await asyncio.gather(*(sender._send(one, signer, b"{}") for one in batch))


async def test_a_fast_endpoint_gets_more_claimed_than_it_has_slots_and_still_only_slots_of_sends(
    sender: tuple[Dispatcher, dict[str, Any]],
) -> None:
    dispatch, seen = sender
    endpoint = uuid.uuid4()
    assert dispatch._claim_cap(endpoint) == SLOTS  # nothing known of it yet: only its slots
    await run(dispatch, [claimed(endpoint, 25) for _ in range(SLOTS)])
    assert dispatch._claim_cap(endpoint) == SLOTS * CLAIM_FACTOR  # it answered fast
    batch = [claimed(endpoint, 25) for _ in range(SLOTS * CLAIM_FACTOR)]
    await run(dispatch, batch)
    assert seen["most"] == SLOTS  # the claim is larger, the sends at once are not
    assert seen["sent"][-len(batch) :] == [one.id for one in batch]  # claimed order kept
    assert not dispatch._in_flight  # every claimed delivery released


async def test_an_endpoint_that_turns_slow_is_claimed_only_its_slots_again(
    sender: tuple[Dispatcher, dict[str, Any]],
) -> None:
    dispatch, seen = sender
    endpoint = uuid.uuid4()
    await run(dispatch, [claimed(endpoint, 25) for _ in range(SLOTS)])
    assert dispatch._claim_cap(endpoint) == SLOTS * CLAIM_FACTOR
    seen["latency"] = dispatcher.FAST_SECONDS * 4
    await run(dispatch, [claimed(endpoint, 25) for _ in range(SLOTS * 2)])
    assert dispatch._claim_cap(endpoint) == SLOTS


async def test_a_claim_whose_lease_is_nearly_over_is_not_sent(
    sender: tuple[Dispatcher, dict[str, Any]],
) -> None:
    """A delivery that waited for a slot until too little of its lease was left for a whole send is
    left for its lease to run out and be claimed again: never sent while its lease may end mid-send
    (another worker could then send it too)."""
    dispatch, seen = sender
    endpoint = uuid.uuid4()
    late, fresh = claimed(endpoint, TIMEOUT), claimed(endpoint, 25)
    await run(dispatch, [late, fresh])
    assert seen["sent"] == [fresh.id]
    assert [s.claimed.id for s in dispatch._sent] == [fresh.id]
    assert not dispatch._in_flight
