"""Test-wide setup. The environment is set before anything imports refundwatch (STYLE rule 10)."""

from __future__ import annotations

import os

os.environ["REFUNDWATCH_MODE"] = "test"
os.environ.setdefault("REFUNDWATCH_LOG_JSON", "false")

pytest_plugins = ["identity_provider", "stack", "parallel"]
