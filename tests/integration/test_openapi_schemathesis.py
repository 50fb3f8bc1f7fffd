"""The API's own description is true: schemathesis, a property-based API tester, reads
``/schema/openapi.json`` from the live server and throws schema-valid and schema-breaking requests at
every documented operation with every check on. Any status, header, content type or body the document
does not declare, any valid request refused for its shape, any invalid one accepted, and any 5xx fails.

Both backends: the document and the validation are the same code on both, but what a database refuses
(NUL characters, text PostgreSQL cannot store) differs, and a 5xx for unstorable input would show on
one only. A run takes well under a minute per backend here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stack import Stack

SEED = 20261206
MAX_EXAMPLES = 100  # per operation and phase: about a minute per backend on a loaded 2-core machine

# positive_data_acceptance: a schema-valid request may still be refused by a business rule the
# document cannot express as a schema (no such payment, more than is refundable, a currency that
# is three letters but not ISO 4217): 422 with its code, each listed in the document. 400 (a
# malformed request) and 5xx stay failures.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def test_openapi_document_holds_against_the_live_api(stack: Stack, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "report.ndjson"
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(config),
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
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    server_errors = [
        line
        for line in report.read_text().splitlines()
        if '"status_code": 5' in line or '"status_code":5' in line
    ]
    assert not server_errors, server_errors[:3]
    assert stack.procs["web"].alive
