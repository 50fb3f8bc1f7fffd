"""Outgoing webhooks, the pure parts: retry schedule, address checks, signatures, event types."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import itertools
import random

import pytest
from standardwebhooks import Webhook

from refundwatch.lib.egress import (
    Address,
    AllowList,
    EndpointNotAllowed,
    Resolver,
    Target,
    check_url,
    is_public,
    resolve_target,
)
from refundwatch.outgoing.events import EVENT_TYPES, UnknownEventType, mask_of, refund_event_type, types_of
from refundwatch.outgoing.schedule import next_delay, nominal_schedule
from refundwatch.outgoing.sending import excerpt_of
from refundwatch.outgoing.signing import headers, new_secret
from refundwatch.refunds.states import Status, Transition, Trigger, decide

DEFAULTS = {"base": 5.0, "cap": 43_200.0}


def test_schedule_retries_within_seconds_and_ends_after_about_three_days() -> None:
    schedule = nominal_schedule(**DEFAULTS, max_attempts=15)
    assert schedule[:3] == [0.0, 5.0, 20.0]
    assert 2.5 * 86_400 < schedule[-1] < 3.5 * 86_400
    assert all(b > a for a, b in itertools.pairwise(schedule))


def test_delay_has_jitter_within_a_fifth_and_gives_up_at_the_last_attempt() -> None:
    rand = random.Random(7)
    delays = {next_delay(3, **DEFAULTS, max_attempts=15, rand=rand) for _ in range(200)}
    assert len(delays) > 100  # not in lock-step
    assert all(d is not None and 45 * 0.8 <= d <= 45 * 1.2 for d in delays)
    assert next_delay(40, **DEFAULTS, max_attempts=60, rand=rand) <= 43_200 * 1.2  # type: ignore[operator]
    assert next_delay(15, **DEFAULTS, max_attempts=15) is None


def test_urls_must_be_https_outside_demo_and_test() -> None:
    assert check_url("https://hooks.example.com/x", allow_http=False) == ("https", "hooks.example.com", 443)
    assert check_url("http://hooks.example.com:8080/x", allow_http=True) == (
        "http",
        "hooks.example.com",
        8080,
    )
    for bad in (
        "http://hooks.example.com/x",
        "ftp://example.com/",
        "https://u:p@example.com/",
        "https:///x",
        "https://93.184.216.34:0/x",  # port 0 was taken
        "",
    ):
        with pytest.raises(EndpointNotAllowed):
            check_url(bad, allow_http=False)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1",
     "fc00::1", "::ffff:10.0.0.1", "100.64.0.1", "224.0.0.1",
     # IPv6 forms carrying 127.0.0.1 that a translator or tunnel delivers there (were taken as public)
     "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "64:ff9b:1::5db8:d822"],
)  # fmt: skip
def test_private_loopback_and_link_local_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:4700::1", "::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::"],
)
def test_public_addresses_are_public_in_every_form(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def _resolver(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[Address]:
        if not addresses:
            raise OSError("no such host")
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


def _target(url: str, allow: str = "", *addresses: str) -> Target:
    return asyncio.run(
        resolve_target(url, AllowList.parse(allow), allow_http=True, resolver=_resolver(*addresses))
    )


def test_the_checked_address_is_the_one_connected_to() -> None:
    target = _target("https://hooks.example.com/in?x=1", "", "93.184.216.34")
    assert target.connect_url() == "https://93.184.216.34:443/in?x=1"
    extra_headers, extensions = target.request_extras()
    assert extra_headers == {"Host": "hooks.example.com"}
    assert extensions == {"sni_hostname": "hooks.example.com"}  # the certificate is checked for the name
    v6 = _target("http://hooks.example.com:8080/in", "", "2606:2800:220:1::1")
    assert v6.connect_url() == "http://[2606:2800:220:1::1]:8080/in"
    assert v6.request_extras() == ({"Host": "hooks.example.com:8080"}, {})


def test_private_addresses_are_refused_unless_allow_listed() -> None:
    with pytest.raises(EndpointNotAllowed, match="REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS"):
        _target("https://internal.example.com/", "", "10.1.2.3")
    with pytest.raises(EndpointNotAllowed):  # one private address among public ones: rebinding
        _target("https://mixed.example.com/", "", "93.184.216.34", "127.0.0.1")
    with pytest.raises(EndpointNotAllowed):
        _target("http://169.254.169.254/latest/meta-data")
    with pytest.raises(EndpointNotAllowed, match="does not resolve"):
        _target("https://nowhere.invalid/")
    assert _target("https://internal.example.com/", "10.0.0.0/8", "10.1.2.3").address == ipaddress.ip_address(
        "10.1.2.3"
    )
    assert _target("http://127.0.0.1:9000/", "127.0.0.1").address is None  # a literal: connected as is
    by_name = _target("https://hooks.internal/", "hooks.internal", "10.9.9.9")
    assert by_name.address is None  # trusted by name: resolved when connecting


def test_every_secret_signs_and_each_verifies() -> None:
    old, new = new_secret(), new_secret()
    assert old.startswith("whsec_")
    assert old != new
    body = b'{"type":"refund.succeeded"}'
    signed = headers("msg_1", body, [new, old], dt.datetime.now(dt.UTC))
    assert len(signed["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, signed) == {"type": "refund.succeeded"}


def test_event_types_round_trip_through_the_mask() -> None:
    assert types_of(mask_of(["gateway.up", "refund.created"])) == ["refund.created", "gateway.up"]
    assert types_of(mask_of(EVENT_TYPES)) == list(EVENT_TYPES)
    with pytest.raises(UnknownEventType) as refused:
        mask_of(["refund.created", "refund.exploded"])
    assert refused.value.code == "unknown_event_type"
    assert refused.value.status_code == 422


def _move(status: Status, trigger: Trigger) -> Transition:
    move = decide(status, trigger)
    assert isinstance(move, Transition)
    return move


def test_which_transition_is_which_event() -> None:
    assert refund_event_type(_move(Status.PENDING_APPROVAL, Trigger.APPROVE)) == "refund.approved"
    assert refund_event_type(_move(Status.PENDING_APPROVAL, Trigger.REJECT)) == "refund.rejected"
    assert refund_event_type(_move(Status.SUBMITTING, Trigger.ACCEPTED)) == "refund.processing"
    assert refund_event_type(_move(Status.PROCESSING, Trigger.SUCCEEDED)) == "refund.succeeded"
    assert refund_event_type(_move(Status.SUCCEEDED, Trigger.REVERSED)) == "refund.reversed"
    assert refund_event_type(_move(Status.QUEUED, Trigger.SUBMIT)) is None  # nobody subscribes to that


def test_response_excerpts_carry_no_secrets() -> None:
    secret = new_secret()
    raw = f'{{"echo": "{secret}", "token": "abc123", "key": "rw_{"x" * 30}"}}'.encode()
    excerpt = excerpt_of(raw, [secret]) or ""
    assert secret not in excerpt
    assert secret.removeprefix("whsec_") not in excerpt
    assert "abc123" not in excerpt
    assert "rw_xxx" not in excerpt
    assert excerpt_of(b"x" * 10_000, []) == "x" * 500
