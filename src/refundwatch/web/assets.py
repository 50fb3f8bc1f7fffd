"""Where the pages' templates and static files are, and whether the vendored front-end assets exist.

An installed wheel carries them inside the package (``refundwatch/templates``, ``refundwatch/static``,
put there by ``hatch_build.py``); a source checkout (and its editable install) keeps them at the top of
the repository, where ``make assets`` vendors htmx into ``static/vendor/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

# What the pages load from static/vendor/ (the Makefile's VENDOR_FILES, built from package-lock.json).
VENDORED = ("vendor/htmx.min.js", "vendor/htmx-ext-sse.js")


@dataclass(frozen=True, slots=True)
class AssetDirs:
    templates: Path
    static: Path
    installed: bool  # inside an installed package, not a source checkout

    def missing(self) -> str | None:
        """One line naming the first missing asset and the command that builds it; None when all exist."""
        if not (self.templates / "base.html").is_file():
            where = f"{self.templates}/base.html"
        else:
            absent = [name for name in VENDORED if not (self.static / name).is_file()]
            if not absent:
                return None
            where = f"{self.static}/{absent[0]}"
        if self.installed:
            return (
                f"{where} is missing from the installed package; reinstall a wheel built with "
                "`pip wheel .` in a refundwatch checkout (it runs `make assets`: npm ci, then copies htmx)"
            )
        return f"{where} is missing; build it with `make assets` (npm ci, then copies htmx to static/vendor/)"


def asset_dirs() -> AssetDirs:
    packaged = Path(str(files("refundwatch")))
    if (packaged / "templates").is_dir():
        return AssetDirs(packaged / "templates", packaged / "static", installed=True)
    root = Path(__file__).resolve().parents[3]
    return AssetDirs(root / "templates", root / "static", installed=False)
