"""Field encryption at rest (Fernet, several keys) and hashing helpers.

Ciphertexts carry the id of the key that made them (``<key id>$<token>``) so a rotation can find what
still needs re-encrypting. The first key encrypts; every listed key decrypts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from refundwatch.lib.exceptions import RefundwatchError


class DecryptionError(RefundwatchError):
    """A stored secret cannot be decrypted with any configured key (the CLI prints one line; the
    message names the key id, never the value)."""

    code = "decryption_failed"


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class FieldCipher:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernets: dict[str, Fernet] = {}
        for key in keys:
            try:
                raw = base64.urlsafe_b64decode(key.encode())
            except (binascii.Error, ValueError) as exc:
                raise ValueError("encryption keys must be URL-safe base64") from exc
            if len(raw) != 32:
                raise ValueError("each encryption key must be 32 bytes in URL-safe base64")
            self._fernets[key_id(key)] = Fernet(key.encode())
        self.primary_id = key_id(keys[0])

    def encrypt(self, plaintext: str) -> str:
        token = self._fernets[self.primary_id].encrypt(plaintext.encode()).decode()
        return f"{self.primary_id}${token}"

    def decrypt(self, stored: str) -> str:
        kid, sep, token = stored.partition("$")
        if not sep:
            raise DecryptionError("stored value has no key id")
        fernet = self._fernets.get(kid)
        if fernet is None:
            raise DecryptionError(f"no configured key with id {kid}")
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise DecryptionError(f"value does not decrypt with key {kid}") from exc

    def needs_rotation(self, stored: str) -> bool:
        return not stored.startswith(f"{self.primary_id}$")


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    return hmac.compare_digest(
        a.encode() if isinstance(a, str) else a, b.encode() if isinstance(b, str) else b
    )


class Secret:
    """A credential whose repr and str never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and constant_time_equals(self._value, other._value)

    def __hash__(self) -> int:
        return hash(sha256_hex(self._value))
