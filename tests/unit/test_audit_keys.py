"""The audit chain's keys (audit/keys.py) and anchor files (audit/anchors.py), without a database."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from refundwatch.audit.anchors import Anchor, AnchorError, append, read_all, read_last
from refundwatch.audit.keys import AuditKeys, legacy_chain_hash

NEW, OLD = "new-audit-key-0123456789", "old-audit-key-0123456789"
ENTRY = "ab" * 32


def test_the_chain_hash_needs_the_key() -> None:
    keys = AuditKeys([NEW])
    digest = keys.seal_hash(7, "0" * 64, ENTRY)
    assert digest != legacy_chain_hash(7, "0" * 64, ENTRY)
    assert digest != AuditKeys([OLD]).seal_hash(7, "0" * 64, ENTRY)
    assert digest == AuditKeys([NEW, OLD]).seal_hash(7, "0" * 64, ENTRY)  # the first key seals
    assert NEW not in repr(keys)


def test_rotation_goes_forwards_only() -> None:
    rotated = AuditKeys([NEW, OLD])
    by_old = AuditKeys([OLD]).seal_hash(1, "0" * 64, ENTRY)
    by_new = rotated.seal_hash(2, "1" * 64, ENTRY)
    legacy = legacy_chain_hash(1, "0" * 64, ENTRY)
    start = rotated.legacy_rank
    assert rotated.rank_of(start, 1, "0" * 64, ENTRY, legacy) == start  # unkeyed, at the chain's start
    assert rotated.rank_of(start, 1, "0" * 64, ENTRY, by_old) == 1
    assert rotated.rank_of(1, 2, "1" * 64, ENTRY, by_new) == 0
    # Once the newer key sealed, neither a retired key nor no key is accepted any more.
    assert rotated.rank_of(0, 1, "0" * 64, ENTRY, by_old) is None
    assert rotated.rank_of(0, 1, "0" * 64, ENTRY, legacy) is None
    assert AuditKeys([NEW]).rank_of(1, 1, "0" * 64, ENTRY, by_old) is None  # the old key dropped


def test_anchors_append_and_the_last_one_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "anchors.jsonl"
    assert read_last(path) is None
    append(path, Anchor(3, "c" * 64, "2026-12-06T00:00:00.000000Z"))
    append(path, Anchor(9, "d" * 64, "2026-12-06T00:01:00.000000Z"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 9]
    assert read_last(path) == Anchor(9, "d" * 64, "2026-12-06T00:01:00.000000Z")


def test_the_last_anchor_is_found_after_many_lines(tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    for seq in range(1, 400):  # more than one read-back block
        append(path, Anchor(seq, f"{seq:064x}", "t"))
    assert read_last(path) == Anchor(399, f"{399:064x}", "t")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not json\n", "not JSON"),
        (b'{"seq": 1, "hash": "' + b"a" * 64 + b'"}', "incomplete"),
        (b'{"seq": -1, "hash": "' + b"a" * 64 + b'"}\n', "seq"),
        (b'{"seq": 1, "hash": "xyz"}\n', "hash"),
        (b"[1, 2]\n", "not a JSON object"),
    ],
)
def test_a_malformed_anchor_file_is_one_clear_error(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "anchors.jsonl"
    path.write_bytes(b'{"seq": 1, "hash": "' + b"a" * 64 + b'", "at": "t"}\n' + content)
    with pytest.raises(AnchorError) as info:
        read_last(path)
    assert problem in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_pipe_is_written_but_not_read_back(tmp_path: Path) -> None:
    fifo = tmp_path / "anchors.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a logger on the other end
    try:
        append(fifo, Anchor(5, "e" * 64, "t"))
        assert json.loads(os.read(reader, 4096))["seq"] == 5
        with pytest.raises(AnchorError, match="not a regular file; pass a readable copy"):
            read_last(fifo)
    finally:
        os.close(reader)


def test_a_pipe_nobody_reads_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "anchors.fifo"
    os.mkfifo(fifo)
    with pytest.raises(AnchorError, match="cannot append"):
        append(fifo, Anchor(5, "e" * 64, "t"))


def test_an_anchor_path_through_a_file_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(AnchorError, match="cannot append: Not a directory") as info:
        append(blocker / "anchors.jsonl", Anchor(1, "a" * 64, "t"))
    assert str(blocker / "anchors.jsonl") in str(info.value)
    assert read_last(blocker / "anchors.jsonl") is None  # nothing there to read back


def test_every_anchor_line_is_read_and_a_bad_one_is_named_by_its_line(tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    for seq in (1, 5, 5):
        append(path, Anchor(seq, f"{seq:064x}", "t"))
    assert [(n, a.seq) for n, a in read_all(path)] == [(1, 1), (2, 5), (3, 5)]
    assert list(read_all(tmp_path / "none.jsonl")) == []
    with pytest.raises(AnchorError, match="does not exist"):
        list(read_all(tmp_path / "none.jsonl", required=True))
    path.write_bytes(path.read_bytes().replace(b'"seq":5', b'"seq":"5"', 1))
    with pytest.raises(AnchorError, match="the anchor on line 2 has no valid seq"):
        list(read_all(path))
