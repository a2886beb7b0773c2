"""SHA-256 of a file, the one checksum the project uses (control files,
candidate sets, reports, simulated and PPP deliveries)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
