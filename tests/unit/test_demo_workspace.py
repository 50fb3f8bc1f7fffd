"""The demo's files: one directory of its own under var/, removed when it stops; kept, for its logs,
when it failed; var/ removed only when the demo made it and nothing else is in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from refundwatch.demo import _tidy
from refundwatch.demo_workspace import Workspace


def _used(workspace: Workspace) -> None:
    workspace.log_dir.mkdir()
    (workspace.log_dir / "web.log").write_text("started\n")
    (workspace.root / "refundwatch.db").write_bytes(b"x")


def test_a_clean_stop_removes_everything_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    workspace = Workspace.create()
    assert workspace.root.parent == Path("var")
    assert workspace.database_url == f"sqlite+aiosqlite:///{workspace.root}/refundwatch.db"
    _used(workspace)
    _tidy(workspace, failed=False)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_keeps_the_logs_to_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    workspace = Workspace.create()
    _used(workspace)
    _tidy(workspace, failed=True)
    assert (workspace.log_dir / "web.log").is_file()
    nothing_logged = Workspace.create()  # failed before any child wrote a line: nothing worth keeping
    _tidy(nothing_logged, failed=True)
    assert not nothing_logged.root.exists()


def test_var_with_other_files_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "refundwatch.db").write_bytes(b"someone's own")
    first, second = Workspace.create(), Workspace.create()
    assert first.root != second.root  # two demos in one checkout never share a directory
    for workspace in (first, second):
        _used(workspace)
        _tidy(workspace, failed=False)
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["refundwatch.db"]
