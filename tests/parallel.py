"""How pytest-xdist spreads this suite over workers (``make test`` runs ``pytest -n N``).

A work unit is a module's tests on one database backend: they share that module's ``stack`` (web,
worker and simulator processes), which is started once on the one worker that runs them, while the
module's other backend can run on another worker at the same time. Tests without a stack are grouped
by module, so module- and session-scoped fixtures are not set up on every worker.

xdist's own ``--dist loadgroup`` cannot express this on pytest 9.2: it tags groups by rewriting node
ids, which no longer takes effect (pytest-xdist issue 1386), so the units are read from the node id
here. An explicit ``--dist`` other than the default ``load`` is left to xdist.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import pytest

from stack import BACKENDS

# The stack fixture's parameter id is the backend's name, joined to other parameters' ids by "-".
_BACKEND_IN_ID = re.compile(rf"\[(?:.*-)?({'|'.join(BACKENDS)})(?:-.*)?\]$")

#: Modules whose units took longest in a full run, longest first. They start first so that none of
#: them is left running alone at the end; the others follow, most tests first. Only the finish time
#: depends on this list, so a stale one costs minutes, never a result.
LONGEST_FIRST = (
    "tests/integration/test_audit.py",
    "tests/integration/test_reconcile_simulator.py",
    "tests/integration/test_execution.py",
    "tests/integration/test_openapi_schemathesis.py",
    "tests/integration/test_alerts.py",
    "tests/integration/test_outgoing_webhooks.py",
    "tests/integration/test_cli.py",
    "tests/integration/test_dashboard.py",
    "tests/integration/test_api.py",
    "tests/integration/test_auth_signin.py",
    "tests/integration/test_crash.py",
    "tests/integration/test_settlement_pulls.py",
    "tests/integration/test_concurrency.py",
    "tests/integration/test_staff_pages.py",
    "tests/integration/test_webhook_rejections.py",
    "tests/integration/test_money_truth.py",
    "tests/integration/test_sync_fairness.py",
    "tests/integration/test_keys_rotate.py",
    "tests/integration/test_disabled_connection.py",
)


def work_unit(nodeid: str) -> str:
    """``tests/x.py:sqlite`` for a test on the SQLite stack, ``tests/x.py`` for one without a stack."""
    module = nodeid.split("::", 1)[0]
    backend = _BACKEND_IN_ID.search(nodeid)
    return f"{module}:{backend.group(1)}" if backend else module


def start_order(units: dict[str, dict[str, bool]]) -> list[str]:
    """Unit names (each with its tests) in the order workers should get them."""

    def rank(unit: str) -> tuple[int, int, int]:
        module = unit.split(":", 1)[0]
        listed = LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)
        return (listed, module == unit, -len(units[unit]))  # then stack units, then the most tests

    return sorted(units, key=rank)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class StackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            if not getattr(self, "_ordered", False):  # the queue is complete before the first unit goes
                queue = self.workqueue
                self.workqueue = OrderedDict((unit, queue[unit]) for unit in start_order(queue))
                self._ordered = True
            super()._assign_work_unit(node)

    return StackScheduling(config, log)
