"""PayPal webhook signatures (gateways/paypal/verification.py, certs.py).

Deliveries are signed here exactly as PayPal signs them (RSA PKCS#1 v1.5 SHA-256 over
``id|time|webhook_id|crc32(body)``) with a leaf issued by a test CA made in this module; the certificate
is served through httpx2.MockTransport, which counts requests, so "refused without any request" is
checked, not assumed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from litestar.datastructures import Headers

from refundwatch.config import ConfigError, Settings, reset_settings
from refundwatch.connections.services import ConnectionInfo
from refundwatch.gateways.base import (
    Capabilities,
    Credentials,
    ErrorCode,
    GatewayError,
    WebhookEvent,
    WebhookItem,
    WebhookVerificationError,
    WebhookVerificationUnavailable,
)
from refundwatch.gateways.paypal import verification as v
from refundwatch.gateways.paypal.certs import CertPolicy, check_cert_url
from refundwatch.lib.crypto import Secret
from refundwatch.lib.exceptions import AuthenticationFailed
from refundwatch.webhooks import services

NOW = dt.datetime(2026, 12, 6, 18, 30, tzinfo=dt.UTC)
NOW_TS = NOW.timestamp()
SUBJECT = "messageverificationcerts.paypal.com"
WEBHOOK_ID = "1JE4291016473214C"
HOST = "api-m.paypal.com"
CERT_PATH = "/v1/notifications/certs/CERT-360caa42-fca2a594-5edc0ebc"
CERT_URL = f"https://{HOST}{CERT_PATH}"
BODY = json.dumps(
    {
        "id": "WH-7MU294299R542214K-4N1831857K851783H",
        "event_version": "1.0",
        "create_time": "2026-12-06T18:29:59Z",
        "resource_type": "refund",
        "resource_version": "2.0",
        "event_type": "PAYMENT.CAPTURE.REFUNDED",
        "summary": "A EUR 10.0 EUR capture payment was refunded",
        "resource": {"id": "1JU08902781691411", "status": "COMPLETED"},
    }
).encode()


def _key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass
class Authority:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, cn: str = "refundwatch test CA") -> Authority:
        key = _key()
        name = _name(cn)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=30))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self,
        key: Any,
        *,
        dns: str = SUBJECT,
        not_before: dt.datetime = NOW - dt.timedelta(days=1),
        not_after: dt.datetime = NOW + dt.timedelta(days=365),
        ca: bool = False,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(dns, "PayPal, Inc."))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        if ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        return builder.sign(self.key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority.make()


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return _key()


@pytest.fixture(scope="module")
def leaf(ca: Authority, signing_key: rsa.RSAPrivateKey) -> x509.Certificate:
    return ca.issue(signing_key)


@pytest.fixture(scope="module")
def trust_store(tmp_path_factory: pytest.TempPathFactory, ca: Authority) -> Path:
    path = tmp_path_factory.mktemp("paypal") / "ca.pem"
    path.write_bytes(pem(ca.cert))
    return path


def policy_for(trust_store: Path, *, hosts: str = HOST, allow_http: bool = False) -> CertPolicy:
    return CertPolicy.build(hosts=hosts, trust_store=str(trust_store), subject=SUBJECT, allow_http=allow_http)


@dataclass
class CertServer:
    """Serves a PEM at every URL and counts the requests it gets."""

    body: bytes
    status: int = 200
    requests: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx2.AsyncClient:
        def handle(request: httpx2.Request) -> httpx2.Response:
            self.requests.append(str(request.url))
            return httpx2.Response(self.status, content=self.body, headers=self.headers)

        return httpx2.AsyncClient(transport=httpx2.MockTransport(handle))


def creds(*, webhook_id: str = WEBHOOK_ID, mode: str | None = None) -> Credentials:
    options = {"webhook_id": webhook_id}
    if mode:
        options["webhook_verification"] = mode
    return Credentials(
        connection_name="paypal-eu",
        processor="paypal",
        base_url="https://api-m.paypal.com",
        secrets={"client_id": Secret("AYcl1ent"), "client_secret": Secret("EFs3cret")},
        options=options,
        timeout_seconds=5.0,
    )


def sign_headers(
    key: rsa.RSAPrivateKey,
    body: bytes = BODY,
    *,
    webhook_id: str = WEBHOOK_ID,
    cert_url: str = CERT_URL,
    when: dt.datetime = NOW,
    transmission_id: str = "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
) -> dict[str, str]:
    """The headers PayPal sends, signed as PayPal signs."""
    sent = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    message = f"{transmission_id}|{sent}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": sent,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "PAYPAL-AUTH-VERSION": "v2",
        "Content-Type": "application/json",
    }


async def no_bearer() -> str:
    raise AssertionError("certificate mode asks for no token")


async def verify(
    server: CertServer,
    policy: CertPolicy,
    headers: dict[str, str],
    body: bytes = BODY,
    *,
    connection: Credentials | None = None,
    now: float = NOW_TS,
) -> None:
    async with server.client() as client:
        await v.verify_delivery(
            client, connection or creds(), headers, body, policy=policy, bearer=no_bearer, now=now
        )


async def refused(
    server: CertServer, policy: CertPolicy, headers: dict[str, str], body: bytes = BODY, **kw: Any
) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        await verify(server, policy, headers, body, **kw)
    return str(caught.value)


# --- offline verification -------------------------------------------------------------------------


async def test_a_delivery_signed_as_paypal_signs_is_accepted(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    server = CertServer(pem(leaf, ca.cert))  # leaf, then the issuer, as PayPal serves them
    await verify(server, policy_for(trust_store), sign_headers(signing_key))
    assert server.requests == [CERT_URL]
    # Header names arrive in any case; the leaf alone (anchor in the store) verifies too.
    lower = {k.lower(): value for k, value in sign_headers(signing_key).items()}
    await verify(CertServer(pem(leaf)), policy_for(trust_store), lower)


async def test_the_signed_text_is_id_time_webhook_id_crc32() -> None:
    body = b'{"id":"WH-1"}'
    expected = f"abc|2026-12-06T18:30:00Z|WH1|{zlib.crc32(body)}".encode()
    assert v.signed_message("abc", "2026-12-06T18:30:00Z", "WH1", body) == expected
    assert b"-" not in v.signed_message("a", "t", "w", b"\xff" * 7)  # unsigned decimal


async def test_a_body_changed_by_one_byte_is_refused(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    tampered = BODY.replace(b"COMPLETED", b"COMPLETEE")
    assert len(tampered) == len(BODY)
    reason = await refused(
        CertServer(pem(leaf, ca.cert)), policy_for(trust_store), sign_headers(signing_key), tampered
    )
    assert reason == "PAYPAL-TRANSMISSION-SIG does not match the body"


async def test_a_delivery_signed_for_another_webhook_id_is_refused(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    headers = sign_headers(signing_key, webhook_id="8PT597110X687430L")
    reason = await refused(CertServer(pem(leaf, ca.cert)), policy_for(trust_store), headers)
    assert "does not match" in reason


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://evil.example/v1/notifications/certs/CERT-1", "not on an allowed certificate host"),
        ("https://api-m.paypal.com.evil.example/v1/notifications/certs/CERT-1", "not on an allowed"),
        ("https://169.254.169.254/v1/notifications/certs/CERT-1", "not on an allowed"),
        ("https://api-m.paypal.com:8443/v1/notifications/certs/CERT-1", "not on an allowed"),
        ("https://user:pw@api-m.paypal.com/v1/notifications/certs/CERT-1", "credentials"),
        ("https://api-m.paypal.com/v1/notifications/certs/CERT-1?x=1", "query"),
        ("https://api-m.paypal.com/admin", "not a PayPal certificate path"),
        ("https://api-m.paypal.com/v1/notifications/certs/../../admin", "not a PayPal certificate path"),
        ("ftp://api-m.paypal.com/v1/notifications/certs/CERT-1", "must be https"),
        ("file:///etc/passwd", "must be https"),
        ("https://api-m.paypal.com/v1/notifications/certs/CERT 1", "not a valid URL"),
    ],
)
async def test_a_cert_url_that_is_not_allowed_is_refused_without_any_request(
    ca: Authority,
    leaf: x509.Certificate,
    signing_key: rsa.RSAPrivateKey,
    trust_store: Path,
    url: str,
    why: str,
) -> None:
    server = CertServer(pem(leaf, ca.cert))
    reason = await refused(server, policy_for(trust_store), sign_headers(signing_key, cert_url=url))
    assert why in reason
    assert server.requests == []


async def test_plain_http_is_refused_in_production_and_allowed_in_demo_and_test(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    url = f"http://127.0.0.1:8900/paypal{CERT_PATH}"
    headers = sign_headers(signing_key, cert_url=url)
    server = CertServer(pem(leaf, ca.cert))
    production = policy_for(trust_store, hosts="127.0.0.1:8900")
    assert await refused(server, production, headers) == "PAYPAL-CERT-URL must be https"
    assert server.requests == []
    # In test mode http is allowed, but still only on an allowed host and port.
    await verify(server, policy_for(trust_store, hosts="127.0.0.1:8900", allow_http=True), headers)
    assert server.requests == [url]
    elsewhere = policy_for(trust_store, hosts="127.0.0.1:8901", allow_http=True)
    assert "not on an allowed" in await refused(server, elsewhere, headers)
    assert len(server.requests) == 1


def test_host_entries_allow_the_default_port_or_the_port_named(trust_store: Path) -> None:
    policy = policy_for(trust_store, hosts="API-M.paypal.com, localhost:8443,[::1]:9000")
    check_cert_url(f"https://api-m.paypal.com{CERT_PATH}", policy)
    check_cert_url(f"https://api-m.paypal.com:443{CERT_PATH}", policy)
    check_cert_url(f"https://localhost:8443{CERT_PATH}", policy)
    check_cert_url(f"https://[::1]:9000{CERT_PATH}", policy)
    for url in (f"https://localhost{CERT_PATH}", f"https://api-m.paypal.com:444{CERT_PATH}"):
        with pytest.raises(WebhookVerificationError):
            check_cert_url(url, policy)
    with pytest.raises(ValueError, match="bad port"):
        policy_for(trust_store, hosts="host:99999")


async def test_an_expired_certificate_is_refused(
    ca: Authority, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    expired = ca.issue(
        signing_key, not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1)
    )
    reason = await refused(
        CertServer(pem(expired, ca.cert)), policy_for(trust_store), sign_headers(signing_key)
    )
    assert reason == "the PayPal certificate has expired"
    early = ca.issue(signing_key, not_before=NOW + dt.timedelta(days=1))
    reason = await refused(
        CertServer(pem(early, ca.cert)), policy_for(trust_store), sign_headers(signing_key)
    )
    assert reason == "the PayPal certificate is not valid yet"


async def test_a_certificate_from_another_ca_is_refused(
    signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    other = Authority.make("refundwatch test CA")  # same name, other key: the signature decides
    forged = other.issue(signing_key)
    reason = await refused(
        CertServer(pem(forged, other.cert)), policy_for(trust_store), sign_headers(signing_key)
    )
    assert reason == "the certificate does not chain to a trusted authority"


async def test_a_leaf_cannot_issue_a_certificate(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    # A leaf PayPal's CA issued (to anyone) is no CA: what it signs does not chain.
    not_a_ca = Authority(signing_key, leaf)
    attacker = _key()
    issued = not_a_ca.issue(attacker)
    reason = await refused(
        CertServer(pem(issued, leaf, ca.cert)), policy_for(trust_store), sign_headers(attacker)
    )
    assert reason == "the certificate does not chain to a trusted authority"


async def test_a_certificate_for_another_subject_is_refused(
    ca: Authority, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    someone = ca.issue(signing_key, dns="www.example.com")
    reason = await refused(
        CertServer(pem(someone, ca.cert)), policy_for(trust_store), sign_headers(signing_key)
    )
    assert reason == f"the certificate is not issued to {SUBJECT}"


async def test_a_certificate_without_an_rsa_key_is_refused(ca: Authority, trust_store: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(ec_key)
    reason = await refused(CertServer(pem(cert, ca.cert)), policy_for(trust_store), sign_headers(_key()))
    assert "not RSA" in reason


async def test_a_signature_by_another_key_is_refused(
    ca: Authority, leaf: x509.Certificate, trust_store: Path
) -> None:
    reason = await refused(CertServer(pem(leaf, ca.cert)), policy_for(trust_store), sign_headers(_key()))
    assert reason == "PAYPAL-TRANSMISSION-SIG does not match the body"


@pytest.mark.parametrize(
    "name",
    [
        "PAYPAL-TRANSMISSION-ID",
        "PAYPAL-TRANSMISSION-TIME",
        "PAYPAL-TRANSMISSION-SIG",
        "PAYPAL-CERT-URL",
        "PAYPAL-AUTH-ALGO",
    ],
)
async def test_a_missing_header_is_refused_without_any_request(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path, name: str
) -> None:
    server = CertServer(pem(leaf, ca.cert))
    headers = sign_headers(signing_key)
    del headers[name]
    assert await refused(server, policy_for(trust_store), headers) == f"missing {name} header"
    headers[name] = "  "
    assert await refused(server, policy_for(trust_store), headers) == f"missing {name} header"
    assert server.requests == []


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("PAYPAL-TRANSMISSION-SIG", "not base64!!", "PAYPAL-TRANSMISSION-SIG is not base64"),
        ("PAYPAL-TRANSMISSION-SIG", base64.b64encode(b"short").decode(), "wrong length"),
        ("PAYPAL-TRANSMISSION-SIG", "A" * 800, "too long"),
        ("PAYPAL-AUTH-ALGO", "SHA1withRSA", "PAYPAL-AUTH-ALGO must be SHA256withRSA"),
        ("PAYPAL-AUTH-ALGO", "sha256withrsa", "PAYPAL-AUTH-ALGO must be SHA256withRSA"),
        ("PAYPAL-AUTH-VERSION", "v1", "PAYPAL-AUTH-VERSION must be v2"),
        ("PAYPAL-TRANSMISSION-ID", "a|b", "PAYPAL-TRANSMISSION-ID is malformed"),
        ("PAYPAL-TRANSMISSION-ID", "x" * 51, "PAYPAL-TRANSMISSION-ID is malformed"),
        ("PAYPAL-TRANSMISSION-TIME", "yesterday", "not an RFC 3339 time"),
        ("PAYPAL-TRANSMISSION-TIME", "2026-12-06T18:30:00Z|x", "not an RFC 3339 time"),
        ("PAYPAL-TRANSMISSION-TIME", "2026-13-06T18:30:00Z", "not an RFC 3339 time"),
    ],
)
async def test_malformed_headers_are_refused_without_any_request(
    ca: Authority,
    leaf: x509.Certificate,
    signing_key: rsa.RSAPrivateKey,
    trust_store: Path,
    name: str,
    value: str,
    why: str,
) -> None:
    server = CertServer(pem(leaf, ca.cert))
    headers = {**sign_headers(signing_key), name: value}
    assert why in await refused(server, policy_for(trust_store), headers)
    assert server.requests == []


def test_a_header_sent_twice_is_refused(signing_key: rsa.RSAPrivateKey) -> None:
    signed = sign_headers(signing_key)
    raw = [(k.encode(), value.encode()) for k, value in signed.items()]
    raw.append((b"paypal-transmission-sig", signed["PAYPAL-TRANSMISSION-SIG"].encode()))
    with pytest.raises(WebhookVerificationError, match="more than one PAYPAL-TRANSMISSION-SIG"):
        v.read_transmission(Headers(raw), now=NOW_TS)  # as the web layer hands them over


async def test_the_transmission_time_window(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    server = CertServer(pem(leaf, ca.cert))
    policy = policy_for(trust_store)
    # PayPal re-sends for three days: a transmission stamped 72 h ago is still taken.
    await verify(server, policy, sign_headers(signing_key, when=NOW - dt.timedelta(hours=72)))
    too_old = sign_headers(signing_key, when=NOW - dt.timedelta(hours=74))
    assert await refused(server, policy, too_old) == "PAYPAL-TRANSMISSION-TIME is too old"
    ahead = sign_headers(signing_key, when=NOW + dt.timedelta(minutes=10))
    assert await refused(server, policy, ahead) == "PAYPAL-TRANSMISSION-TIME is in the future"
    await verify(server, policy, sign_headers(signing_key, when=NOW + dt.timedelta(minutes=4)))
    # Fractions and offsets are RFC 3339 too; the signed text is the header as sent.
    for sent in ("2026-12-06T18:30:00.123456789Z", "2026-12-06T19:30:00+01:00"):
        headers = sign_headers(signing_key)
        message = v.signed_message(headers["PAYPAL-TRANSMISSION-ID"], sent, WEBHOOK_ID, BODY)
        signature = signing_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        headers.update(
            {
                "PAYPAL-TRANSMISSION-TIME": sent,
                "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            }
        )
        await verify(server, policy, headers)


async def test_a_connection_without_a_webhook_id_refuses(
    signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    server = CertServer(b"")
    connection = creds(webhook_id="")
    reason = await refused(server, policy_for(trust_store), sign_headers(signing_key), connection=connection)
    assert reason == "no PayPal webhook_id is configured"
    assert server.requests == []


# --- fetching and caching ---------------------------------------------------------------------------


async def test_a_verified_certificate_is_cached_by_url(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    server = CertServer(pem(leaf, ca.cert))
    policy = policy_for(trust_store)
    await verify(server, policy, sign_headers(signing_key))
    await verify(server, policy, sign_headers(signing_key, transmission_id="second-1"))
    assert server.requests == [CERT_URL]
    assert policy.fetches == 1
    # A refused signature does not evict it; another URL is fetched on its own.
    await refused(server, policy, sign_headers(_key()))
    other = CERT_URL.replace("5edc0ebc", "00000001")
    await verify(server, policy, sign_headers(signing_key, cert_url=other))
    assert server.requests == [CERT_URL, other]
    # Past the leaf's not_after the cached key is not used: the certificate is fetched and refused.
    late = leaf.not_valid_after_utc.timestamp() + 60
    headers = sign_headers(signing_key, when=dt.datetime.fromtimestamp(late, dt.UTC))
    assert await refused(server, policy, headers, now=late) == "the PayPal certificate has expired"
    assert server.requests[-1] == CERT_URL
    assert len(server.requests) == 3


async def test_the_cache_is_bounded(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    server = CertServer(pem(leaf, ca.cert))
    policy = policy_for(trust_store)
    policy.cache_size = 3
    urls = [CERT_URL.replace("5edc0ebc", f"{n:08x}") for n in range(5)]
    for url in urls:
        await verify(server, policy, sign_headers(signing_key, cert_url=url))
    assert len(policy._cache) == 3
    await verify(server, policy, sign_headers(signing_key, cert_url=urls[0]))  # evicted: fetched again
    assert server.requests.count(urls[0]) == 2


async def test_concurrent_deliveries_share_one_fetch(
    ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    requests: list[str] = []

    async def slow(request: httpx2.Request) -> httpx2.Response:
        requests.append(str(request.url))
        await asyncio.sleep(0.05)
        return httpx2.Response(200, content=pem(leaf, ca.cert))

    policy = policy_for(trust_store)
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(slow)) as client:
        await asyncio.gather(
            *(
                v.verify_delivery(
                    client,
                    creds(),
                    sign_headers(signing_key),
                    BODY,
                    policy=policy,
                    bearer=no_bearer,
                    now=NOW_TS,
                )
                for _ in range(20)
            )
        )
    assert requests == [CERT_URL]


@pytest.mark.parametrize(
    ("status", "body", "headers", "why"),
    [
        (302, b"", {"Location": "https://evil.example/cert"}, "answered 302"),
        (404, b"{}", {}, "answered 404"),
        (503, b"", {}, "answered 503"),
        (429, b"", {}, "answered 429"),
        (200, b"not a certificate", {}, "did not serve a PEM certificate"),
        (200, b"A" * (70 * 1024), {}, "too large"),
        (200, b"", {"Content-Length": "999999"}, "too large"),
    ],
)
async def test_what_the_certificate_host_answers_is_checked(
    signing_key: rsa.RSAPrivateKey,
    trust_store: Path,
    status: int,
    body: bytes,
    headers: dict[str, str],
    why: str,
) -> None:
    server = CertServer(body, status=status, headers=headers)
    with pytest.raises(WebhookVerificationError, match=why) as caught:
        await verify(server, policy_for(trust_store), sign_headers(signing_key), BODY)
    # Busy or down says nothing about the delivery; everything else is a verdict.
    assert (caught.type is WebhookVerificationUnavailable) == (status in (429, 503))
    assert server.requests == [CERT_URL]  # one request: a redirect is not followed


async def test_an_unreachable_certificate_host_refuses(
    signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("read timed out", request=request)

    for handler, why in ((down, r"could not be reached \(ConnectError\)"), (slow, "did not answer in time")):
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
            with pytest.raises(WebhookVerificationUnavailable, match=why):
                await v.verify_delivery(
                    client,
                    creds(),
                    sign_headers(signing_key),
                    BODY,
                    policy=policy_for(trust_store),
                    bearer=no_bearer,
                    now=NOW_TS,
                )


# --- online verification ----------------------------------------------------------------------------


@dataclass
class VerifyApi:
    status: int = 200
    answer: Any = field(default_factory=lambda: {"verification_status": "SUCCESS"})
    seen: list[httpx2.Request] = field(default_factory=list)

    def client(self) -> httpx2.AsyncClient:
        def handle(request: httpx2.Request) -> httpx2.Response:
            self.seen.append(request)
            if isinstance(self.answer, bytes):
                return httpx2.Response(self.status, content=self.answer)
            return httpx2.Response(self.status, json=self.answer)

        return httpx2.AsyncClient(transport=httpx2.MockTransport(handle))


def bearer_of(token: str = "A21AAtoken") -> tuple[Callable[[], Any], list[int]]:
    calls: list[int] = []

    async def bearer() -> str:
        calls.append(1)
        return token

    return bearer, calls


async def online(api: VerifyApi, headers: dict[str, str], body: bytes = BODY, bearer: Any = None) -> None:
    token = bearer or bearer_of()[0]
    unused_policy = CertPolicy(frozenset(), [Authority.make().cert])
    async with api.client() as client:
        await v.verify_delivery(
            client, creds(mode="api"), headers, body, policy=unused_policy, bearer=token, now=NOW_TS
        )


async def test_online_success_is_the_only_acceptance(signing_key: rsa.RSAPrivateKey) -> None:
    api = VerifyApi()
    bearer, calls = bearer_of()
    headers = sign_headers(signing_key, cert_url="https://anything.example/whatever")  # PayPal's to judge
    await online(api, headers, bearer=bearer)
    assert calls == [1]
    (request,) = api.seen
    assert str(request.url) == "https://api-m.paypal.com/v1/notifications/verify-webhook-signature"
    assert request.method == "POST"
    assert request.headers["authorization"] == "Bearer A21AAtoken"
    sent = json.loads(request.content)
    assert sent == {
        "auth_algo": "SHA256withRSA",
        "cert_url": "https://anything.example/whatever",
        "transmission_id": headers["PAYPAL-TRANSMISSION-ID"],
        "transmission_sig": headers["PAYPAL-TRANSMISSION-SIG"],
        "transmission_time": headers["PAYPAL-TRANSMISSION-TIME"],
        "webhook_id": WEBHOOK_ID,
        "webhook_event": json.loads(BODY),
    }


@pytest.mark.parametrize(
    ("status", "answer", "why"),
    [
        (200, {"verification_status": "FAILURE"}, "PayPal says the webhook signature is not valid"),
        (200, {"verification_status": "success"}, "not valid"),
        (200, {}, "not valid"),
        (200, b"<html>", "not valid"),
        (200, ["SUCCESS"], "not valid"),
        (500, {"name": "INTERNAL_SERVER_ERROR"}, "answered 500"),
        (503, b"", "answered 503"),
        (429, b"", "answered 429"),
        (401, {"error": "invalid_token"}, "answered 401"),
        (400, {"name": "VALIDATION_ERROR"}, "answered 400"),
    ],
)
async def test_online_anything_but_success_is_refused(
    signing_key: rsa.RSAPrivateKey, status: int, answer: Any, why: str
) -> None:
    with pytest.raises(WebhookVerificationError, match=why) as caught:
        await online(VerifyApi(status, answer), sign_headers(signing_key))
    # The API failing, busy or refusing our token is no verdict on the delivery.
    assert (caught.type is WebhookVerificationUnavailable) == (status in (401, 429, 500, 503))


async def test_online_an_unreachable_api_or_token_refuses(signing_key: rsa.RSAPrivateKey) -> None:
    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    async def no_token() -> str:
        raise GatewayError(ErrorCode.AUTH_FAILED, "Client Authentication failed")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(down)) as client:
        with pytest.raises(WebhookVerificationUnavailable, match="could not be reached"):
            await v.verify_delivery(
                client,
                creds(mode="api"),
                sign_headers(signing_key),
                BODY,
                policy=CertPolicy(frozenset(), [Authority.make().cert]),
                bearer=bearer_of()[0],
                now=NOW_TS,
            )
    api = VerifyApi()
    with pytest.raises(
        WebhookVerificationUnavailable, match=r"no PayPal access token to verify with \(auth_failed\)"
    ):
        await online(api, sign_headers(signing_key), bearer=no_token)
    assert api.seen == []


async def test_online_checks_the_headers_first(signing_key: rsa.RSAPrivateKey) -> None:
    api = VerifyApi()
    headers = sign_headers(signing_key)
    del headers["PAYPAL-TRANSMISSION-SIG"]
    with pytest.raises(WebhookVerificationError, match="missing PAYPAL-TRANSMISSION-SIG"):
        await online(api, headers)
    with pytest.raises(WebhookVerificationError, match="not a JSON object"):
        await online(api, sign_headers(signing_key, b"[1]"), b"[1]")
    assert api.seen == []


async def test_an_unknown_verification_mode_refuses(
    signing_key: rsa.RSAPrivateKey, trust_store: Path
) -> None:
    reason = await refused(
        CertServer(b""), policy_for(trust_store), sign_headers(signing_key), connection=creds(mode="maybe")
    )
    assert reason == "webhook_verification must be certificate or api"


# --- settings ---------------------------------------------------------------------------------------


def test_settings_build_the_policy_and_refuse_bad_values(trust_store: Path, tmp_path: Path) -> None:
    settings = Settings(mode="test", paypal_trust_store=str(trust_store), paypal_cert_hosts="127.0.0.1:8900")
    settings.check_required()
    policy = CertPolicy.from_settings(settings)
    assert policy is CertPolicy.from_settings(settings)  # one policy (and cache) per setting
    assert policy.allow_http
    assert policy.hosts == frozenset({("127.0.0.1", 8900)})
    assert not CertPolicy.from_settings(
        Settings(mode="production", paypal_trust_store=str(trust_store))
    ).allow_http
    rewritten = tmp_path / "ca.pem"  # a trust store rewritten in place is read again
    rewritten.write_bytes(trust_store.read_bytes())
    first = CertPolicy.from_settings(Settings(mode="test", paypal_trust_store=str(rewritten)))
    rewritten.write_bytes(pem(Authority.make().cert))
    os.utime(rewritten, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = CertPolicy.from_settings(Settings(mode="test", paypal_trust_store=str(rewritten)))
    assert second is not first
    assert second.anchors != first.anchors
    default = CertPolicy.from_settings(Settings(mode="test"))  # certifi's bundle
    assert len(default.anchors) > 50
    assert ("api-m.paypal.com", None) in default.hosts
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    for kwargs, message in (
        (
            {"paypal_trust_store": str(tmp_path / "missing.pem")},
            "REFUNDWATCH_PAYPAL_TRUST_STORE: cannot read",
        ),
        ({"paypal_trust_store": str(empty)}, "REFUNDWATCH_PAYPAL_TRUST_STORE: .* holds no PEM certificate"),
        ({"paypal_cert_hosts": "api.paypal.com:https"}, "REFUNDWATCH_PAYPAL_CERT_HOSTS: .*bad port"),
        ({"paypal_cert_hosts": "https://api.paypal.com/x"}, "REFUNDWATCH_PAYPAL_CERT_HOSTS"),
        ({"paypal_cert_subject": "not a name"}, "REFUNDWATCH_PAYPAL_CERT_SUBJECT must be a DNS name"),
    ):
        with pytest.raises(ConfigError, match=message):
            Settings(mode="test", **kwargs).check_required()


# --- the glue into the webhook endpoint ---------------------------------------------------------------


@pytest.fixture
def paypal_env(monkeypatch: pytest.MonkeyPatch, trust_store: Path) -> Any:
    monkeypatch.setenv("REFUNDWATCH_PAYPAL_TRUST_STORE", str(trust_store))
    monkeypatch.setenv("REFUNDWATCH_PAYPAL_CERT_HOSTS", HOST)
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


async def test_without_a_policy_the_settings_decide(
    paypal_env: pytest.MonkeyPatch, ca: Authority, leaf: x509.Certificate, signing_key: rsa.RSAPrivateKey
) -> None:
    async with CertServer(pem(leaf, ca.cert)).client() as client:
        await v.verify_delivery(
            client, creds(), sign_headers(signing_key), BODY, bearer=no_bearer, now=NOW_TS
        )
        paypal_env.setenv("REFUNDWATCH_PAYPAL_TRUST_STORE", "/nonexistent/ca.pem")
        reset_settings()
        with pytest.raises(WebhookVerificationError, match="trust store cannot be read"):
            await v.verify_delivery(
                client, creds(), sign_headers(signing_key), BODY, bearer=no_bearer, now=NOW_TS
            )


class GluedPayPal:
    """What the integrator adds to PayPalGateway (the method body recommended in the report)."""

    capabilities = Capabilities(verifies_remotely=True)

    def __init__(self, now: float) -> None:
        self.now = now

    async def verify_items_remote(
        self,
        client: httpx2.AsyncClient,
        creds: Credentials,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: float | None = None,
    ) -> list[WebhookItem]:
        async def bearer() -> str:  # PayPalGateway: auth.access_token(client, creds)
            raise AssertionError("certificate mode asks for no token")

        await v.verify_delivery(
            client, creds, headers, body, bearer=bearer, now=self.now if now is None else now
        )
        return [WebhookItem(body)]

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        event = json.loads(body)
        return [WebhookEvent(event["id"], event["event_type"], event["resource"]["id"], None, None)]


async def test_a_signed_delivery_goes_through_receive_and_a_tampered_one_is_rejected(
    paypal_env: pytest.MonkeyPatch,
    ca: Authority,
    leaf: x509.Certificate,
    signing_key: rsa.RSAPrivateKey,
) -> None:
    stored: list[str] = []
    rejected: list[str] = []

    async def reject(rt: Any, connection: str, reason: str, actor: Any) -> None:
        rejected.append(reason)

    def new_rows(connection_id: Any, name: str, events: Any, actor: Any, now: Any) -> list[Any]:
        stored.extend(event.event_id for _, event in events)
        return []

    async def store_and_apply(*args: Any) -> tuple[set[Any], set[Any]]:
        return set(), set()

    class Connections:
        async def by_name(self, name: str) -> ConnectionInfo:
            return ConnectionInfo(uuid.uuid4(), name, "paypal", True, 60, creds())

    paypal_env.setattr(services, "_reject", reject)
    paypal_env.setattr(services, "new_rows", new_rows)
    paypal_env.setattr(services.fastpath, "store_and_apply", store_and_apply)
    paypal_env.setattr(services, "get_gateway", lambda processor: GluedPayPal(NOW_TS))
    server = CertServer(pem(leaf, ca.cert))
    async with server.client() as client:
        rt = SimpleNamespace(
            settings=Settings(mode="test"), connections=Connections(), redis=None, require_http=lambda: client
        )
        headers = sign_headers(signing_key)
        await services.receive(rt, "paypal-eu", headers, BODY, ip=None, user_agent=None)  # type: ignore[arg-type]
        assert stored == ["WH-7MU294299R542214K-4N1831857K851783H"]
        with pytest.raises(AuthenticationFailed) as caught:
            await services.receive(rt, "paypal-eu", headers, BODY + b" ", ip=None, user_agent=None)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_signature"
    assert rejected == ["PAYPAL-TRANSMISSION-SIG does not match the body"]
    assert len(stored) == 1
