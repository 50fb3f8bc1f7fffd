"""The keys of the audit chain (REFUNDWATCH_AUDIT_KEY), kept outside the database.

A sealed entry's ``hash`` is ``HMAC-SHA256(key, "seq|prev_hash|entry_hash")``: whoever can write the
table but does not hold the key cannot recompute the chain after changing an entry. The setting is a
comma-separated list: the first key seals new entries, every key verifies, and along the chain a
key may only give way to one listed before it (rotation goes forwards; an entry sealed later under a
retired key is refused). Entries sealed before refundwatch keyed its chain carry the plain
``sha256(seq|prev_hash|entry_hash)``; they are accepted only as the chain's first entries, and the
first keyed entry, chaining onto them, pins them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from refundwatch.config import Settings, get_settings


def legacy_chain_hash(seq: int, prev_hash: str, entry_hash: str) -> str:
    """The unkeyed chain hash of entries sealed before the key (refundwatch up to migration 0006)."""
    return hashlib.sha256(_message(seq, prev_hash, entry_hash)).hexdigest()


def _message(seq: int, prev_hash: str, entry_hash: str) -> bytes:
    return f"{seq}|{prev_hash}|{entry_hash}".encode()


class AuditKeys:
    """The configured keys, newest first. ``rank`` 0 is the sealing key; ``legacy_rank`` is no key."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one audit key is needed")
        self._keys = tuple(key.encode() for key in keys)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AuditKeys:
        return cls((settings or get_settings()).audit_key_list)

    def __repr__(self) -> str:
        return f"AuditKeys(<{len(self._keys)} keys>)"

    @property
    def legacy_rank(self) -> int:
        return len(self._keys)

    def seal_hash(self, seq: int, prev_hash: str, entry_hash: str) -> str:
        return self.hash_under(0, seq, prev_hash, entry_hash)

    def hash_under(self, rank: int, seq: int, prev_hash: str, entry_hash: str) -> str:
        if rank == self.legacy_rank:
            return legacy_chain_hash(seq, prev_hash, entry_hash)
        return hmac.new(self._keys[rank], _message(seq, prev_hash, entry_hash), hashlib.sha256).hexdigest()

    def rank_of(self, at_most: int, seq: int, prev_hash: str, entry_hash: str, digest: str) -> int | None:
        """The rank whose hash ``digest`` is, trying ``at_most`` first and then only newer keys."""
        for rank in range(at_most, -1, -1):
            if hmac.compare_digest(self.hash_under(rank, seq, prev_hash, entry_hash), digest):
                return rank
        return None
