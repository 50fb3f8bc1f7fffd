"""Money in minor units (lib.money) and field encryption at rest (lib.crypto)."""

from __future__ import annotations

import base64
import random

import pytest
from cryptography.fernet import Fernet

from refundwatch.lib.crypto import (
    DecryptionError,
    FieldCipher,
    Secret,
    constant_time_equals,
    key_id,
    sha256_hex,
)
from refundwatch.lib.money import (
    KNOWN_CURRENCIES,
    exponent,
    format_money,
    from_decimal_string,
    is_known_currency,
    to_decimal_string,
)

# --------------------------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("currency", "exp"),
    [
        ("EUR", 2),
        ("USD", 2),
        ("GBP", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("jpy", 0),
    ],
)
def test_exponents(currency: str, exp: int) -> None:
    assert exponent(currency) == exp


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1050, "EUR", "10.50"),
        (5, "EUR", "0.05"),
        (0, "EUR", "0.00"),
        (-5, "EUR", "-0.05"),
        (-1050, "EUR", "-10.50"),
        (1050, "JPY", "1050"),
        (1050, "KWD", "1.050"),
        (1, "KWD", "0.001"),
        (10**15, "EUR", "10000000000000.00"),
    ],
)
def test_to_decimal_string(amount: int, currency: str, text: str) -> None:
    assert to_decimal_string(amount, currency) == text
    assert from_decimal_string(text, currency) == amount


def test_decimal_round_trip() -> None:
    rng = random.Random(4217)
    amounts = [
        0,
        1,
        9,
        10,
        99,
        100,
        101,
        999,
        1000,
        10**15,
        *(rng.randrange(-(10**12), 10**12) for _ in range(300)),
    ]
    for currency in ("EUR", "JPY", "KWD", "USD", "BHD", "CLP"):
        for amount in amounts:
            text = to_decimal_string(amount, currency)
            assert from_decimal_string(text, currency) == amount, (amount, currency, text)
            decimals = text.partition(".")[2]
            assert len(decimals) == exponent(currency)


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("10.5", "EUR", 1050),
        ("10", "EUR", 1000),
        ("0.1", "KWD", 100),
        ("1e2", "JPY", 100),
        ("3.00", "JPY", 3),
    ],
)
def test_from_decimal_string_accepts_shorter_forms(text: str, currency: str, amount: int) -> None:
    assert from_decimal_string(text, currency) == amount


@pytest.mark.parametrize(
    ("text", "currency"),
    [("10.505", "EUR"), ("0.001", "USD"), ("1.5", "JPY"), ("0.0001", "KWD"), ("NaN", "EUR")],
)
def test_too_many_decimals_refused(text: str, currency: str) -> None:
    with pytest.raises(ValueError, match="decimals"):
        from_decimal_string(text, currency)


def test_format_and_known_currencies() -> None:
    assert format_money(1050, "EUR") == "10.50 EUR"
    assert format_money(500, "JPY") == "500 JPY"
    assert is_known_currency("EUR")
    assert is_known_currency("JPY")
    assert not is_known_currency("XYZ")
    assert not is_known_currency("eur")  # callers upper-case first
    assert not is_known_currency("")
    assert all(len(c) == 3 and c.isupper() for c in KNOWN_CURRENCIES)


# --------------------------------------------------------------------------------------------- crypto


def new_key() -> str:
    return Fernet.generate_key().decode()


def test_encrypt_decrypt_round_trip() -> None:
    cipher = FieldCipher([new_key()])
    for plaintext in ("", "sk_test_123", "ünïcødé 💸", "x" * 10_000):
        stored = cipher.encrypt(plaintext)
        assert plaintext not in stored or plaintext == ""
        assert cipher.decrypt(stored) == plaintext
    assert cipher.encrypt("same") != cipher.encrypt("same")  # fresh IV every time


def test_ciphertext_carries_the_key_id() -> None:
    key = new_key()
    cipher = FieldCipher([key])
    stored = cipher.encrypt("secret")
    kid, sep, token = stored.partition("$")
    assert sep == "$"
    assert kid == key_id(key) == cipher.primary_id
    assert len(kid) == 8
    assert Fernet(key.encode()).decrypt(token.encode()) == b"secret"
    assert not cipher.needs_rotation(stored)


def test_rotation_old_key_still_decrypts() -> None:
    old, new = new_key(), new_key()
    before = FieldCipher([old])
    stored_old = before.encrypt("sk_live_old")
    after = FieldCipher([new, old])
    assert after.decrypt(stored_old) == "sk_live_old"
    assert after.needs_rotation(stored_old)
    stored_new = after.encrypt("sk_live_old")
    assert stored_new.startswith(key_id(new) + "$")
    assert not after.needs_rotation(stored_new)
    # The old key alone cannot read what the new key wrote.
    with pytest.raises(DecryptionError):
        before.decrypt(stored_new)


def test_wrong_key_or_damaged_value_raises_decryption_error() -> None:
    cipher, other = FieldCipher([new_key()]), FieldCipher([new_key()])
    stored = cipher.encrypt("secret")
    with pytest.raises(DecryptionError, match="no configured key"):
        other.decrypt(stored)
    kid, _, token = stored.partition("$")
    tampered = f"{kid}${token[:-6]}AAAAAA"
    with pytest.raises(DecryptionError):
        cipher.decrypt(tampered)
    with pytest.raises(DecryptionError):
        cipher.decrypt(f"{kid}$not-a-token")
    with pytest.raises(DecryptionError, match="no key id"):
        cipher.decrypt("plaintext-without-key-id")
    # A value from another key made to look like ours still fails.
    foreign = other.encrypt("secret").partition("$")[2]
    with pytest.raises(DecryptionError):
        cipher.decrypt(f"{kid}${foreign}")


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param([], id="no-keys"),
        pytest.param(["not base64 at all!"], id="not-base64"),
        pytest.param(["abc"], id="bad-padding"),
        pytest.param([base64.urlsafe_b64encode(b"x" * 16).decode()], id="16-bytes"),
        pytest.param([base64.urlsafe_b64encode(b"x" * 64).decode()], id="64-bytes"),
        pytest.param([""], id="empty"),
        pytest.param(["__placeholder_good__", "short"], id="second-key-bad"),
    ],
)
def test_bad_keys_are_rejected(keys: list[str]) -> None:
    keys = [new_key() if k == "__placeholder_good__" else k for k in keys]
    with pytest.raises(ValueError, match=r"key"):
        FieldCipher(keys)


def test_secret_is_masked() -> None:
    secret = Secret("sk_live_very_secret")
    assert "sk_live" not in repr(secret)
    assert "sk_live" not in str(secret)
    assert "sk_live" not in f"{secret}"
    assert "sk_live" not in repr({"key": secret})
    assert "sk_live" not in repr([secret])
    assert secret.reveal() == "sk_live_very_secret"
    assert secret == Secret("sk_live_very_secret")
    assert secret != Secret("other")
    assert secret != "sk_live_very_secret"
    assert hash(secret) == hash(Secret("sk_live_very_secret"))
    with pytest.raises(AttributeError):
        secret.extra = 1  # type: ignore[attr-defined]


def test_hash_helpers() -> None:
    assert sha256_hex("abc") == sha256_hex(b"abc")
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert constant_time_equals("a", b"a")
    assert not constant_time_equals("a", "b")
