"""fsync of a file or a folder: what a write-then-rename commit needs so that
what it committed survives a power cut, not only a killed process.

Shared by publish (the published set) and report (the report a publication
commits with it)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Makes the renames into and out of `path` durable."""
    fsync_file(path)
