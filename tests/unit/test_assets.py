"""Where the pages' files are found, and what `refundwatch serve` says when an asset is missing."""

from __future__ import annotations

from pathlib import Path

from refundwatch.web.assets import VENDORED, AssetDirs, asset_dirs


def _dirs(root: Path, *, installed: bool) -> AssetDirs:
    (root / "templates").mkdir()
    (root / "templates" / "base.html").write_text("<html>")
    for name in VENDORED:
        (root / "static" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "static" / name).write_text("// js")
    return AssetDirs(root / "templates", root / "static", installed=installed)


def test_a_source_checkout_finds_the_repository_directories() -> None:
    dirs = asset_dirs()
    repo = Path(__file__).resolve().parents[2]
    assert (dirs.templates, dirs.static, dirs.installed) == (repo / "templates", repo / "static", False)


def test_nothing_missing_says_nothing(tmp_path: Path) -> None:
    assert _dirs(tmp_path, installed=False).missing() is None


def test_a_missing_vendored_file_names_make_assets_in_a_checkout(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path, installed=False)
    (dirs.static / "vendor" / "htmx-ext-sse.js").unlink()
    problem = dirs.missing()
    assert problem is not None
    assert "\n" not in problem
    assert "htmx-ext-sse.js is missing" in problem
    assert "`make assets`" in problem


def test_a_missing_template_in_an_installed_package_names_the_wheel_build(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path, installed=True)
    (dirs.templates / "base.html").unlink()
    problem = dirs.missing()
    assert problem is not None
    assert "base.html is missing from the installed package" in problem
    assert "`pip wheel .`" in problem
