"""The API's own description is true: schemathesis, a property-based API tester, reads
``/schema/openapi.json`` from the live server and throws schema-valid and schema-breaking requests at
every documented operation with every check on. Any status, header, content type or body the document
does not declare, any valid request refused for its shape, any invalid one accepted, and any 5xx fails.

Two runs per backend. The first is schemathesis on its own: every field varies, so almost every refund
names a payment that does not exist (422 unknown_payment) and every refund id is unknown (404). The
second points the refund requests and the payment read at a real payment and the refund-id operations
at a real refund, so success answers (201, the 200 replay, the refund with its events, the payment with
its ledger, cancel's 409) are checked too.

Both backends: the document and the validation are the same code on both, but what a database refuses
(NUL characters, text PostgreSQL cannot store) differs, and a 5xx for unstorable input would show on one
only. A run takes under a minute per backend here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx2

from stack import Stack

SEED = 20261206
MAX_EXAMPLES = 100  # per operation and phase: about a minute per backend on a loaded 2-core machine
FULL_AMOUNT = 10**15  # the largest payment: schema-valid refunds of any amount fit into it

# positive_data_acceptance: a schema-valid request may still be refused by a business rule the
# document cannot express as a schema (no such payment, more than is refundable, a currency that
# is three letters but not ISO 4217): 422 with its code, each listed in the document. 400 (a
# malformed request) and 5xx stay failures.
CHECKS = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def test_document_declares_errors_security_headers_and_constraints(stack: Stack) -> None:
    """What the issue found missing, read from the served document: no Litestar {status_code, detail}
    anywhere, every API operation with 401/403/422/429 in the {code, message} shape and the bearer
    scheme, the Idempotency-Key header, Retry-After, and the body constraints."""
    document = httpx2.get(f"{stack.web_url}/schema/openapi.json", timeout=30).json()
    text = json.dumps(document)
    assert '"status_code"' not in text  # Litestar's default error shape
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert "400" not in responses or path == "/api/v1/refunds", where
            if not path.startswith("/api/"):
                assert operation["security"] == [], where
                continue
            assert operation["security"] == [{"bearer": []}], where
            for status in ("401", "403", "422", "429"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}, (where, status)
                assert schema["allOf"][1]["properties"]["code"]["enum"], (where, status)
            assert responses["429"]["headers"]["Retry-After"]["required"] is True, where
    create = document["paths"]["/api/v1/refunds"]["post"]
    assert set(create["responses"]) >= {"200", "201", "400", "401", "403", "409", "422", "429"}
    assert (
        "invalid_amount"
        in create["responses"]["422"]["content"]["application/json"]["schema"]["allOf"][1]["properties"][
            "code"
        ]["enum"]
    )
    (header,) = [p for p in create["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert header["required"] is True
    assert header["schema"]["maxLength"] == 255
    body = document["components"]["schemas"]["RefundCreate"]
    assert body["additionalProperties"] is False
    assert body["properties"]["amount"]["type"] == "integer"
    assert body["properties"]["amount"]["minimum"] == 1
    assert body["properties"]["currency"]["pattern"] == "^[A-Za-z]{3}$"
    assert set(body["properties"]["reason"]["enum"]) == {
        "requested_by_customer",
        "duplicate",
        "fraudulent",
        "return",
        "other",
    }
    assert document["components"]["schemas"]["Error"]["required"] == ["code", "message"]


def run_schemathesis(stack: Stack, workdir: Path, config: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "schemathesis.toml").write_text(CHECKS + config)
    report = workdir / "report.ndjson"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(workdir / "schemathesis.toml"),
            "run",
            f"{stack.web_url}/schema/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            # One worker: hypothesis parses lambda sources with ast.parse, which is not thread-safe
            # on CPython 3.11.7 ("AST constructor recursion depth mismatch" with two workers).
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--header",
            f"Authorization: Bearer {stack.api_key}",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--output-truncate",
            "false",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=workdir,
    )
    output = result.stdout + result.stderr
    (workdir / "output.txt").write_text(output)
    assert result.returncode == 0, output[-20000:]
    server_errors = [line for line in report.read_text().splitlines() if '"status_code":5' in line]
    assert not server_errors, server_errors[0][:3000]
    assert stack.procs["web"].alive


def test_openapi_document_holds_against_the_live_api(stack: Stack, tmp_path: Path) -> None:
    run_schemathesis(stack, tmp_path / "free", "")


def test_openapi_document_holds_for_real_payments_and_refunds(stack: Stack, tmp_path: Path) -> None:
    reference = stack.payment(FULL_AMOUNT)
    refund = stack.refund(reference, 100)
    assert refund.status_code == 201, refund.text
    refund_id = refund.json()["id"]
    overrides = {
        "body.payment_reference": reference,
        "body.currency": "EUR",
        "body.connection": "stripe-test",
    }
    config = f"""
[parameters]
refund_id = "{refund_id}"

[[operations]]
include-path = "/api/v1/refunds"
include-method = "POST"
parameters = {{ {", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in overrides.items())} }}

[[operations]]
include-path = "/api/v1/payments/{{payment_reference}}"
include-method = "GET"
parameters = {{ "path.payment_reference" = {json.dumps(reference)} }}
"""
    run_schemathesis(stack, tmp_path / "seeded", config)
