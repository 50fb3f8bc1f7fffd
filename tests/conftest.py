"""Test-wide setup. The environment is set before anything imports refundwatch (STYLE rule 10)."""

from __future__ import annotations

import functools
import os

import httpcore2

os.environ["REFUNDWATCH_MODE"] = "test"
os.environ.setdefault("REFUNDWATCH_LOG_JSON", "false")

# Every httpx2 client builds a new SSL context, and with SSL_CERT_FILE set (as on CI machines) that
# parses the whole CA bundle, even for the plain-http loopback calls tests make: profiled, it was half
# of the test processes' CPU, a third of CI's. The test process shares one (tests never speak TLS, so
# nothing changes it); the servers under test are separate processes and keep their own.
httpcore2.default_ssl_context = functools.cache(httpcore2.default_ssl_context)

pytest_plugins = ["identity_provider", "stack", "parallel"]
