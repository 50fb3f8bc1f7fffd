"""A settlement report uploaded by an admin: saved to a private temporary directory under its own name
(the importer keeps the file's name), imported and matched exactly as ``refundwatch reconcile import``
does, then removed. Larger reports than ``UPLOAD_LIMIT`` go through the command line."""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

from litestar.datastructures import UploadFile

from refundwatch.audit.actions import Actor
from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.reconciliation.importing import Imported, import_report
from refundwatch.reconciliation.matching import Summary, match_imported
from refundwatch.runtime import Runtime

UPLOAD_LIMIT = 20 * 1024 * 1024  # bytes; the request limit adds room for the form's other fields
_CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclasses.dataclass(frozen=True, slots=True)
class Uploaded:
    imported: Imported
    summary: Summary

    @property
    def breaks(self) -> int:
        return sum(self.summary.breaks.values())


def safe_name(filename: str) -> str:
    """The uploaded file's own name, without any directory and with only plain characters."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._")[:200]
    return cleaned or "settlement-report"


async def import_upload(rt: Runtime, connection: str, upload: UploadFile, actor: Actor) -> Uploaded:
    with tempfile.TemporaryDirectory(prefix="refundwatch-upload-") as folder:
        path = Path(folder) / safe_name(upload.filename or "")
        size = 0
        with path.open("wb") as out:
            while chunk := await upload.read(_CHUNK):
                size += len(chunk)
                if size > UPLOAD_LIMIT:
                    raise ValidationFailed(
                        f"the file is larger than {UPLOAD_LIMIT // (1024 * 1024)} MB; "
                        "import it with refundwatch reconcile import",
                        code="file_too_large",
                    )
                out.write(chunk)
        if size == 0:
            raise ValidationFailed("the file is empty", code="empty_file")
        imported = await import_report(rt, connection, path, actor)
        summary = await match_imported(rt, imported)
    return Uploaded(imported, summary)
