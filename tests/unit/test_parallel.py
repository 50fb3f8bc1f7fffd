"""The work units pytest-xdist hands to workers (tests/parallel.py): one module's stack, one backend."""

from __future__ import annotations

import pytest

from parallel import start_order, work_unit


@pytest.mark.parametrize(
    ("nodeid", "unit"),
    [
        ("tests/integration/test_api.py::test_x[sqlite]", "tests/integration/test_api.py:sqlite"),
        ("tests/integration/test_api.py::test_x[postgresql]", "tests/integration/test_api.py:postgresql"),
        ("tests/integration/test_a.py::test_x[postgresql-stripe]", "tests/integration/test_a.py:postgresql"),
        ("tests/integration/test_a.py::test_x[adyen-sqlite]", "tests/integration/test_a.py:sqlite"),
        ("tests/integration/test_a.py::test_x[a-sqlite-b]", "tests/integration/test_a.py:sqlite"),
        ("tests/integration/test_a.py::Case::test_x[sqlite]", "tests/integration/test_a.py:sqlite"),
        ("tests/unit/test_config.py::test_x[sqlite:///var/x.db]", "tests/unit/test_config.py"),
        ("tests/unit/test_config.py::test_x[mysqlite]", "tests/unit/test_config.py"),
        ("tests/unit/test_states.py::test_x", "tests/unit/test_states.py"),
    ],
)
def test_a_modules_tests_on_one_backend_are_one_unit(nodeid: str, unit: str) -> None:
    assert work_unit(nodeid) == unit


def test_listed_modules_start_first_then_stack_units_then_the_most_tests() -> None:
    units = {
        "tests/unit/test_states.py": dict.fromkeys("abcdefgh", False),
        "tests/integration/test_webhooks.py:sqlite": dict.fromkeys("abc", False),
        "tests/integration/test_webhooks.py": dict.fromkeys("a", False),
        "tests/integration/test_refunds_list.py:sqlite": dict.fromkeys("abcd", False),
        "tests/integration/test_execution.py:postgresql": dict.fromkeys("a", False),
        "tests/integration/test_audit.py:sqlite": dict.fromkeys("a", False),
    }
    assert start_order(units) == [
        "tests/integration/test_audit.py:sqlite",
        "tests/integration/test_execution.py:postgresql",
        "tests/integration/test_refunds_list.py:sqlite",
        "tests/integration/test_webhooks.py:sqlite",
        "tests/unit/test_states.py",
        "tests/integration/test_webhooks.py",
    ]
