"""The OpenAPI document, made true. Litestar describes the operations and their bodies from the handlers
and schemas (the constraints come from ``refunds/schemas.py``); this module adds what it cannot know:
the ``{code, message}`` error shape of ``web/errors.py`` with, per operation, every status it can answer
and the codes each one carries, the bearer security scheme, and the response headers. Litestar's own
``{status_code, detail}`` 400 goes: refundwatch never answers it (its 400s become 422 ``validation_error``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import Components, SecurityScheme

from refundwatch.lib.cards import REFUSED_CODE
from refundwatch.refunds.schemas import PaymentCreate, RefundCreate

REQUEST_BODIES = (RefundCreate, PaymentCreate)

BEARER = "bearer"
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: SecurityScheme(
        type="http",
        scheme="bearer",
        description="An API key (`rw_…`, from `refundwatch apikeys create`) or an OAuth 2.0 "
        "client-credentials access token (JWT, RFC 9068) from the configured OpenID provider. "
        "Scopes: refunds:read, refunds:write, payments:write, webhooks:write.",
    )
}
COMPONENTS = Components(security_schemes=SECURITY_SCHEMES)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error: a stable machine-readable `code` and a human `message`.",
    "required": ["code", "message"],
    "properties": {
        "code": {
            "type": "string",
            "description": "machine-readable; the codes each response can carry are listed",
        },
        "message": {"type": "string", "description": "for people; may change"},
        "refundable_amount": {
            "type": "integer",
            "minimum": 0,
            "description": "with amount_exceeds_refundable: what is still refundable (minor units)",
        },
        "retry_after": {"type": "integer", "minimum": 0, "description": "with rate_limited: seconds"},
        "errors": {
            "type": "array",
            "items": {"type": "object"},
            "description": "with validation_error and invalid_amount: each field that failed",
        },
    },
}

# What each status means, whichever operation answers it.
_MEANING = {
    400: "Bad request header",
    401: "Missing, invalid, expired or revoked credentials",
    403: "The credentials lack the scope this operation needs",
    404: "Not found",
    409: "Conflict with the current state",
    413: "The request body is too large",
    422: "The request is well-formed JSON but not acceptable; `code` says why",
    429: "Too many requests from this client; retry after `Retry-After` seconds",
    503: "Something this request depends on did not answer; the same request may succeed later",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds until this client may try again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "`Bearer`", "required": False, "schema": {"type": "string"}}
}

# Every /api/v1 operation: authentication, scopes, rate limit, and any malformed JSON or parameter
# (422 validation_error). A refund id that is not a UUID matches no route: 404 not_found.
_API = {
    401: ("unauthenticated", "invalid_token"),
    403: ("insufficient_scope",),
    422: ("validation_error",),
    429: ("rate_limited",),
    503: ("unavailable",),  # Redis or the database does not answer (web.errors)
}
_BODY = {413: ("request_too_large",)}
_ONE_REFUND = {404: ("refund_not_found", "not_found")}
_ONE_ENDPOINT = {404: ("webhook_endpoint_not_found", "not_found")}
_ENDPOINT_BODY = ("validation_error", "endpoint_not_allowed", "unknown_event_type", "unknown_connection")
# Creations that replay an earlier request with the same Idempotency-Key (200) instead of creating.
_REPLAYABLE = frozenset({"/api/v1/refunds", "/api/v1/payments"})

# (method, path template as in the document) -> status -> the codes that status can carry.
OPERATIONS: dict[tuple[str, str], dict[int, tuple[str, ...]]] = {
    ("post", "/api/v1/refunds"): {
        **_API,
        **_BODY,
        400: ("idempotency_key_missing", "idempotency_key_invalid"),
        409: ("idempotency_key_reused", "conflict"),
        422: (
            "validation_error",
            "invalid_amount",
            "invalid_currency",
            "unknown_payment",
            "payment_on_other_connection",
            "ambiguous_payment",
            "unknown_connection",
            "unsupported_processor",
            "connection_disabled",
            "currency_mismatch",
            "reference_mismatch",
            "amount_exceeds_refundable",
            "amount_not_supported",
            REFUSED_CODE,
        ),
    },
    ("get", "/api/v1/refunds"): {
        **_API,
        422: ("validation_error", "unknown_connection", "invalid_cursor"),
    },
    ("get", "/api/v1/refunds/{refund_id}"): {**_API, **_ONE_REFUND},
    ("post", "/api/v1/refunds/{refund_id}/cancel"): {**_API, **_ONE_REFUND, 409: ("invalid_transition",)},
    ("post", "/api/v1/refunds/{refund_id}/retry"): {
        **_API,
        **_ONE_REFUND,
        409: ("invalid_transition",),
        # A failed refund released its amount; what is left may no longer cover it.
        422: ("validation_error", "amount_exceeds_refundable"),
    },
    ("post", "/api/v1/refunds/{refund_id}/sync"): {
        **_API,
        **_ONE_REFUND,
        409: ("processor_cannot_be_asked",),
    },
    ("post", "/api/v1/payments"): {
        **_API,
        **_BODY,
        409: ("payment_conflict",),
        422: ("validation_error", "invalid_amount", "invalid_currency", "unknown_connection", REFUSED_CODE),
    },
    ("get", "/api/v1/payments/{payment_reference}"): {
        **_API,
        404: ("payment_not_found", "payment_on_other_connection"),
        422: ("validation_error", "unknown_connection", "ambiguous_payment"),
    },
    ("get", "/api/v1/reconciliation/breaks"): {
        **_API,
        422: ("validation_error", "unknown_connection", "invalid_cursor", "invalid_kind", "invalid_status"),
    },
    ("post", "/api/v1/webhook-endpoints"): {**_API, **_BODY, 422: _ENDPOINT_BODY},
    ("get", "/api/v1/webhook-endpoints"): {**_API},
    ("get", "/api/v1/webhook-endpoints/{endpoint_id}"): {**_API, **_ONE_ENDPOINT},
    ("patch", "/api/v1/webhook-endpoints/{endpoint_id}"): {
        **_API,
        **_BODY,
        **_ONE_ENDPOINT,
        422: _ENDPOINT_BODY,
    },
    ("delete", "/api/v1/webhook-endpoints/{endpoint_id}"): {**_API, **_ONE_ENDPOINT},
    ("post", "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): {**_API, **_BODY, **_ONE_ENDPOINT},
    # Processors authenticate by signature, not bearer tokens.
    ("post", "/webhooks/{connection}"): {
        401: ("invalid_signature",),
        404: ("unknown_connection",),
        413: ("request_too_large",),
        422: ("malformed_webhook", "validation_error"),
        429: ("rate_limited",),
        503: ("verification_unavailable", "unavailable"),
    },
}
# Answers that are not errors but are not the handler's declared status either.
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this answer replays an earlier request with the same key",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def complete_document(app: Litestar) -> None:
    """Complete the document Litestar generated, in place (it is generated once and then served)."""
    # Litestar's OpenAPI plugin (a private class) builds the dict once and serves that same dict.
    plugin = next(p for p in app.plugins.init if hasattr(p, "provide_openapi_schema"))
    document: dict[str, Any] = plugin.provide_openapi_schema()
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for struct in REQUEST_BODIES:
        # msgspec's own schema of what it decodes: every constraint, and no unknown fields.
        ((name, schema),) = msgspec.json.schema(struct)["$defs"].items()
        schemas[name] = schema
    schemas["PaymentCreate"]["properties"]["captured_at"]["format"] = "date-time"
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _complete_operation(path, operation, OPERATIONS.get((method, path)) or _fallback(path))


def _fallback(path: str) -> dict[int, tuple[str, ...]]:
    """An operation not in OPERATIONS yet gets what every API route can answer (and 404 where it has
    a path parameter); add it to OPERATIONS with its own codes: the schemathesis test will ask."""
    statuses: dict[int, tuple[str, ...]] = (
        dict(_API) if path.startswith("/api/") else {429: ("rate_limited",)}
    )
    if "{" in path:
        statuses[404] = ("not_found",)
    return statuses


def _complete_operation(path: str, operation: dict[str, Any], statuses: dict[int, tuple[str, ...]]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("400", None)  # Litestar's {status_code, detail}: never answered as such
    for status, codes in sorted(statuses.items()):
        responses[str(status)] = _error_response(status, codes)
    if path.startswith("/api/"):
        operation["security"] = [{BEARER: []}]
        success = next(iter(code for code in responses if code.startswith("2")))
        if path in _REPLAYABLE and success == "201":  # creation: a replay answers 200
            responses["200"] = {
                **responses["201"],
                "description": "The same request was made before: its result, nothing new created",
                "headers": _REPLAYED,
            }
    else:
        operation["security"] = []


def _error_response(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    listed = ", ".join(f"`{code}`" for code in codes)
    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"type": "object", "properties": {"code": {"type": "string", "enum": list(codes)}}},
        ]
    }
    response: dict[str, Any] = {
        "description": f"{_MEANING[status]}. `code`: {listed}.",
        "content": {
            "application/json": {
                "schema": schema,
                "example": {"code": codes[0], "message": _MEANING[status].lower()},
            }
        },
    }
    if status == 429:
        response["headers"] = _RETRY_AFTER
    elif status == 401:
        response["headers"] = _WWW_AUTHENTICATE
    return response
