"""Column types: JSON encrypted at rest (personal data in free text).

``EncryptedJSON`` stores ``<key id>$<Fernet token>`` of the JSON text, so a database dump shows no
content and ``refundwatch keys rotate`` finds and re-encrypts it like every other ``*_encrypted``
column (it reads and writes the raw text, bypassing this type). The process's cipher is the one the
runtime was built with (``use_cipher``); without a runtime, one is made from the settings.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Dialect, Text
from sqlalchemy.types import TypeDecorator

from refundwatch.lib.crypto import FieldCipher

_cipher: FieldCipher | None = None


def use_cipher(cipher: FieldCipher) -> None:
    global _cipher  # noqa: PLW0603 - one cipher per process, set once at start-up
    _cipher = cipher


def _current() -> FieldCipher:
    if _cipher is None:
        from refundwatch.config import get_settings

        use_cipher(FieldCipher(get_settings().encryption_key_list))
    assert _cipher is not None
    return _cipher


class EncryptedJSON(TypeDecorator[dict[str, Any]]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _current().encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def process_result_value(self, value: str | None, dialect: Dialect) -> dict[str, Any] | None:
        if value is None:
            return None
        decoded: dict[str, Any] = json.loads(_current().decrypt(value))
        return decoded
