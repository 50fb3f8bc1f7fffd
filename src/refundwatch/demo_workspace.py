"""Where the demo keeps its files: one directory of its own under var/, removed when it stops.

``var/demo-<random>/`` holds the SQLite database, the children's logs, the connections file for the
simulator, the webhook receiver's secret, the audit anchors and the simulator's PayPal test CA and
signing certificate (and is the private redis-server's working directory, which keeps no data). Two
demos in one checkout never share one.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

VAR = Path("var")


@dataclass(frozen=True)
class Workspace:
    """Every file the demo writes, in one directory of its own under var/ (two demos never share one)."""

    root: Path
    made_var: bool  # var/ did not exist before: removed too when empty

    @classmethod
    def create(cls) -> Workspace:
        made_var = not VAR.exists()
        VAR.mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="demo-", dir=VAR)), made_var)

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def connections_file(self) -> Path:
        return self.root / "connections.toml"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.root / 'refundwatch.db'}"

    @property
    def receiver_secret(self) -> Path:
        """The demo webhook receiver's signing secret, for it to verify with."""
        return self.root / "receiver-secret"

    @property
    def paypal_cert_dir(self) -> Path:
        """The simulator's PayPal test CA and webhook signing certificate (with their keys)."""
        return self.root / "paypal-certs"

    @property
    def anchor(self) -> Path:
        return self.root / "audit-anchors.jsonl"

    def has_logs(self) -> bool:
        return any(log.stat().st_size for log in self.log_dir.glob("*.log"))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self.made_var:
            with contextlib.suppress(OSError):  # not empty: someone else's files are there now
                VAR.rmdir()
