"""The demo's own Redis database: it never mixes its jobs, sessions and live updates with anything
else on a shared Redis, and it leaves nothing behind.

On a Redis that answers, the demo claims an empty database (15 down to 1) with a marker key set only
if absent, so two demos never pick the same one, and empties it when it stops (everything in it is the
demo's). A private redis-server (started when none answers, or when the one that answers has no empty
database it may use) keeps no data at all and stops with the demo.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

CLAIM_KEY = "refundwatch:demo:claimed-by"
DATABASES = range(15, 0, -1)  # db 0 is where other software keeps its data by default


def with_database(url: str, db: int) -> str:
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", query, parts.fragment))


def claim_database(url: str) -> str | None:
    """The URL of an empty database on this Redis, now claimed for this demo; None if there is none
    (all in use, or a Redis that has only one database)."""
    for db in DATABASES:
        candidate = with_database(url, db)
        client = redis.Redis.from_url(candidate, socket_connect_timeout=1, socket_timeout=2)
        try:
            if client.dbsize() == 0 and client.set(CLAIM_KEY, str(os.getpid()), nx=True):
                return candidate
        except redis.ResponseError:  # SELECT refused: a cluster or a one-database service
            return None
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
    return None


def release_database(url: str) -> bool:
    """Empty the claimed database, if it is still this demo's; True when it was emptied."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        if client.get(CLAIM_KEY) != str(os.getpid()).encode():
            return False
        client.flushdb()
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
