"""The settlement parser interface, its error, and the registry of parsers by processor.

A parser streams: it reads one record, yields one line, and holds nothing else, so a 1,000,000-row file
parses in bounded memory. Any problem stops the parse with a SettlementFormatError naming the row; the
importer (not here) makes sure nothing of a failed file is kept.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import BinaryIO, Final, Literal, Protocol

from refundwatch.reconciliation.lines import SettlementLine

_MAX_PROBLEM = 300


class SettlementFormatError(ValueError):
    """A settlement file or page that cannot be read as it is. ``str()`` is one line naming the row."""

    def __init__(self, source_name: str, row_number: int | None, problem: str) -> None:
        # Values quoted from a file may hold line breaks or be huge: the message stays one short line.
        problem = " ".join(problem.split())
        if len(problem) > _MAX_PROBLEM:
            problem = problem[: _MAX_PROBLEM - 1] + "…"
        self.source_name = source_name
        self.row_number = row_number
        self.problem = problem
        where = f"{source_name}: row {row_number}" if row_number is not None else source_name
        super().__init__(f"{where}: {problem}")


class FieldError(ValueError):
    """One value of a row is wrong; the parser turns it into a SettlementFormatError with the row."""


class SettlementParser(Protocol):
    processor: str

    def parse(self, stream: BinaryIO, source_name: str) -> Iterator[SettlementLine]:
        """Lines in source order. Raises SettlementFormatError, possibly after yielding some lines."""
        ...


SourceKind = Literal["file", "api"]

# (processor, source) -> "module:class". Imported on demand: those modules import this one for the
# interface, and a processor's parsers live in its own package (STYLE: findable by its name).
_PARSERS: Final[Mapping[tuple[str, str], str]] = MappingProxyType(
    {
        ("stripe", "file"): "refundwatch.gateways.stripe.settlement:StripeReportParser",
        ("stripe", "api"): "refundwatch.gateways.stripe.settlement:StripeBalanceTransactionsParser",
        ("adyen", "file"): "refundwatch.gateways.adyen.settlement:AdyenSettlementDetailsParser",
        ("paypal", "file"): "refundwatch.gateways.paypal.settlement:PayPalSettlementParser",
        ("checkout", "file"): "refundwatch.gateways.checkout.settlement:CheckoutFinancialActionsParser",
    }
)


def parser_for(processor: str, source: SourceKind = "file") -> SettlementParser:
    """The parser of a processor's settlement file (its report) or API answer, with default settings."""
    try:
        module_name, _, class_name = _PARSERS[(processor, source)].partition(":")
    except KeyError:
        raise LookupError(f"no settlement {source} parser for processor {processor!r}") from None
    parser: SettlementParser = getattr(importlib.import_module(module_name), class_name)()
    return parser


def supported() -> tuple[tuple[str, str], ...]:
    """The (processor, source) pairs parser_for answers."""
    return tuple(_PARSERS)
