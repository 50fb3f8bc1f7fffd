"""lib.identifiers.whole_number: the one check behind every cursor and numeric form field."""

from __future__ import annotations

import pytest

from refundwatch.lib.identifiers import whole_number


@pytest.mark.parametrize(
    ("raw", "maximum", "expected"),
    [
        ("0", 10, 0),
        ("10", 10, 10),
        ("11", 10, None),
        ("007", 100, 7),
        ("0007", 100, None),  # longer than the maximum written out
        ("\u00b2", 10**18 - 1, None),  # isdigit() takes it, int() does not
        ("-1", 10, None),
        (" 1", 10, None),
        ("", 10, None),
        ("9" * 19, 2**63 - 1, None),
        (str(2**63 - 1), 2**63 - 1, 2**63 - 1),
        (str(2**63), 2**63 - 1, None),
        ("9" * 5000, 10**15, None),  # past int()'s 4,300-digit limit: a ValueError, were it reached
    ],
)
def test_whole_number(raw: str, maximum: int, expected: int | None) -> None:
    assert whole_number(raw, maximum) == expected
