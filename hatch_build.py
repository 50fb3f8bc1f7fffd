"""Wheel build hook: the wheel carries the templates, the static files and the vendored front-end assets.

``make assets`` builds static/vendor/ from package-lock.json (npm ci, then copies htmx), so one
recipe serves the source checkout and the wheel; no third-party JavaScript is committed. An editable
install serves templates/ and static/ from the checkout in place and builds nothing here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

VENDORED = ("vendor/htmx.min.js", "vendor/htmx-ext-sse.js")  # as in src/refundwatch/web/assets.py


class AssetsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        root = Path(self.root)
        make = shutil.which("make")
        if make is None:
            raise RuntimeError("building the wheel needs `make` (and npm) to vendor htmx: `make assets`")
        subprocess.run([make, "-C", str(root), "assets"], check=True)
        static = root / "static"
        missing = [name for name in VENDORED if not (static / name).is_file()]
        if missing:
            raise RuntimeError(f"`make assets` did not produce static/{missing[0]}")
        build_data["force_include"][str(root / "templates")] = "refundwatch/templates"
        build_data["force_include"][str(static)] = "refundwatch/static"
