"""The gateway connections file (TOML, CONTRACT §6), read independently of refundwatch's own loader."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .faults import PROCESSORS

__all__ = ["Connection", "Connections", "ConnectionsFileError", "load_connections"]


class ConnectionsFileError(ValueError):
    """The connections file cannot be used (unreadable, not TOML, missing or bad fields)."""


@dataclass(frozen=True, slots=True)
class Connection:
    name: str
    processor: str
    settings: Mapping[str, str]  # every string field of the table (api_key, webhook_secret, ...)

    def get(self, key: str) -> str | None:
        return self.settings.get(key)


class Connections:
    """Connections indexed by (processor, field, value), e.g. ``("stripe", "api_key", "sk_test_...")``."""

    def __init__(self, connections: Iterable[Connection] = (), *, from_file: bool = False) -> None:
        self.all: tuple[Connection, ...] = tuple(connections)
        self.from_file = from_file
        self._index: dict[tuple[str, str, str], Connection] = {}
        for connection in self.all:
            for key, value in connection.settings.items():
                self._index.setdefault((connection.processor, key, value), connection)

    def find(self, processor: str, key: str, value: str) -> Connection | None:
        return self._index.get((processor, key, value))

    def for_processor(self, processor: str) -> list[Connection]:
        return [c for c in self.all if c.processor == processor]


def load_connections(path: Path) -> Connections:
    """Read ``[[connection]]`` tables from ``path``; a bad file raises :class:`ConnectionsFileError`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConnectionsFileError(f"cannot read connections file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConnectionsFileError(f"connections file {path} is not valid TOML: {exc}") from exc
    tables = data.get("connection", [])
    if not isinstance(tables, list):
        raise ConnectionsFileError(f"connections file {path}: 'connection' must be an array of tables")
    connections: list[Connection] = []
    names: set[str] = set()
    for number, table in enumerate(tables, start=1):
        connection = _parse_table(path, number, table)
        if connection.name in names:
            raise ConnectionsFileError(
                f"connections file {path}: duplicate connection name {connection.name!r}"
            )
        names.add(connection.name)
        connections.append(connection)
    return Connections(connections, from_file=True)


def _parse_table(path: Path, number: int, table: object) -> Connection:
    where = f"connections file {path}, connection #{number}"
    if not isinstance(table, dict):
        raise ConnectionsFileError(f"{where}: must be a table")
    name = table.get("name")
    processor = table.get("processor")
    if not isinstance(name, str) or not name:
        raise ConnectionsFileError(f"{where}: missing 'name'")
    if processor not in PROCESSORS:
        raise ConnectionsFileError(
            f"{where} ({name}): 'processor' must be one of {', '.join(PROCESSORS)}, not {processor!r}"
        )
    settings = {key: value for key, value in table.items() if isinstance(value, str)}
    return Connection(name=name, processor=str(processor), settings=settings)
