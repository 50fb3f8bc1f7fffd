"""Lua scripts on Redis through redis-py's own ``AsyncScript`` (EVALSHA, loading the script again when a
restarted or flushed Redis forgot it), one registration per client and script."""

from __future__ import annotations

import weakref
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_registered: weakref.WeakKeyDictionary[Redis, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()


async def run_script(redis: Redis, script: str, keys: list[Any], args: list[Any]) -> Any:
    """``script``'s answer for ``keys`` and ``args``."""
    per_client = _registered.setdefault(redis, {})
    registered = per_client.get(script)
    if registered is None:
        registered = per_client[script] = redis.register_script(script)
    return await registered(keys=keys, args=args)
