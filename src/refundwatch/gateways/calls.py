"""One processor call, timed, with every transport failure in the shared error vocabulary.

The mapping is the same for every processor, because it is about what reached the processor, not about
its API: a failed connect sent nothing; a timeout, a broken connection or an unreadable answer after
the request went out leaves the outcome unknown (never a refusal); a bad base URL is a configuration
mistake. Adapters pass their own scrub, so no secret reaches a message or an excerpt.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2

from refundwatch.gateways.base import ErrorCode, Exchange, GatewayError
from refundwatch.lib.http import send

EXCERPT_CHARS = 500
MESSAGE_CHARS = 300


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def call(
    client: httpx2.AsyncClient,
    processor: str,
    method: str,
    url: str,
    path: str,
    *,
    timeout_seconds: float,
    headers: dict[str, str],
    scrub: Callable[[str], str],
    data: dict[str, str] | None = None,
    json: object = None,
) -> tuple[httpx2.Response, Exchange]:
    """Send one request to ``processor``; every httpx2 failure becomes a GatewayError with an Exchange."""
    started = time.perf_counter()

    def failed(code: ErrorCode, message: str) -> GatewayError:
        exchange = Exchange(method, path, None, elapsed_ms(started), "")
        return GatewayError(code, scrub(message)[:MESSAGE_CHARS], exchange=exchange)

    # ``from None`` everywhere: httpx2 exceptions hold the request, credentials included.
    try:
        timed = await send(
            client, method, url, timeout_seconds=timeout_seconds, headers=headers, data=data, json=json
        )
    except (httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.ConnectError) as exc:
        raise failed(
            ErrorCode.CONNECTION_ERROR,
            f"could not connect to {processor} ({type(exc).__name__}); nothing was sent",
        ) from None
    except httpx2.TimeoutException as exc:
        raise failed(
            ErrorCode.TIMEOUT,
            f"{processor} did not answer within {timeout_seconds:g} s ({type(exc).__name__}); "
            "the outcome is unknown",
        ) from None
    except (httpx2.UnsupportedProtocol, httpx2.InvalidURL) as exc:
        # A configuration mistake: retrying cannot help.
        raise failed(ErrorCode.PROCESSOR_ERROR, f"bad {processor} base URL ({type(exc).__name__})") from None
    except UnicodeEncodeError:
        # Raised while httpx2 builds the request (a credential that is not ASCII in a header): nothing
        # left this process, so it is a definite failure, never an outcome to look up. No value quoted.
        raise failed(
            ErrorCode.PROCESSOR_ERROR,
            f"a header for {processor} cannot be encoded (check the connection's credentials); "
            "nothing was sent",
        ) from None
    except httpx2.TransportError as exc:
        # Read/write errors and resets happen once the request may have reached the processor.
        raise failed(
            ErrorCode.CONNECTION_ERROR,
            f"the connection to {processor} broke ({type(exc).__name__}: {exc}); the outcome is unknown",
        ) from None
    except (httpx2.HTTPError, httpx2.StreamError) as exc:
        # An answer arrived but cannot be read (e.g. DecodingError: a body that is not the gzip it
        # claims): the processor may have executed the request.
        raise failed(
            ErrorCode.OUTCOME_UNKNOWN,
            f"unreadable answer from {processor} ({type(exc).__name__}); the refund may exist",
        ) from None
    response = timed.response
    excerpt = scrub(response.text[: EXCERPT_CHARS * 8])[:EXCERPT_CHARS]
    return response, Exchange(method, path, response.status_code, timed.latency_ms, excerpt)


def outcome_unknown(
    processor: str, response: httpx2.Response, exchange: Exchange, what: str, scrub: Callable[[str], str]
) -> GatewayError:
    """A 2xx (or an answer) that cannot be read as the refund it should be: no refusal, the refund may
    exist, and only the processor's word (a look-up, a webhook) settles it."""
    message = scrub(f"{processor} answered {response.status_code} with {what}; the refund may exist")
    return GatewayError(
        ErrorCode.OUTCOME_UNKNOWN,
        message[:MESSAGE_CHARS],
        status_code=response.status_code,
        exchange=exchange,
    )
