"""Partitions of the landing layer and how they are replaced.

A partition is a directory `<layer>/<source>/ds=<ds>/`. It is built whole
under `home/tmp/`, then swapped in with rename(2): the old directory is
renamed aside, the new one renamed in, the old one deleted. Readers see the
old partition or the new one, never a half-written one. In the raw layer the
`_reconciliation.json` inside the partition is the commit marker: a raw
partition without it is ignored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path

from program_reporting.core.settings import Paths

RECORD = "_reconciliation.json"
# home/tmp/read-<source>-<pid>-<id>: where a landing reading its delivery
# (before it takes the source's lock) lets DuckDB spill
READ_LABEL = "read"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def partition(layer: Path, source: str, ds: str) -> Path:
    return layer / source / f"ds={ds}"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_workdir(paths: Paths, label: str) -> Path:
    paths.tmp.mkdir(parents=True, exist_ok=True)
    work = paths.tmp / f"{label}-{uuid.uuid4().hex[:12]}"
    work.mkdir(mode=PRIVATE_DIR)
    return work


def make_private(directory: Path) -> None:
    """Owner-only: the directory 0700, every file in it 0600."""
    os.chmod(directory, PRIVATE_DIR)
    for child in directory.iterdir():
        if child.is_file():
            os.chmod(child, PRIVATE_FILE)


def swap(new: Path | None, target: Path, trash: Path, private_parents: bool = False) -> None:
    """Replace `target` by `new` (or remove it when `new` is None) with renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if private_parents:
        for parent in (target.parent, target.parent.parent):
            os.chmod(parent, PRIVATE_DIR)
    old = None
    if target.exists():
        trash.mkdir(parents=True, exist_ok=True)
        old = trash / f"{target.parent.name}-{target.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    if new is not None:
        os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: dict, mode: int | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    if mode is not None:
        os.chmod(tmp, mode)
    os.rename(tmp, path)


def read_record(raw_partition: Path) -> dict | None:
    try:
        return json.loads((raw_partition / RECORD).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def committed(paths: Paths, source: str) -> dict[str, Path]:
    """ds -> raw partition, for the partitions carrying their commit marker."""
    return {ds: partition(paths.raw, source, ds) for ds in committed_files(paths, source)}


def committed_files(paths: Paths, source: str, only: set[str] | None = None) -> dict[str, list[os.DirEntry]]:
    """ds -> the parquet files of each raw partition carrying its commit marker
    (of the dates in `only`, when given). One os.scandir per partition, no
    pathlib: a source's history is hundreds of partitions and every landing
    lists it."""
    try:
        children = sorted(os.scandir(paths.raw / source), key=lambda e: e.name)
    except FileNotFoundError:
        return {}
    out = {}
    for child in children:
        ds = child.name[3:]
        if not child.name.startswith("ds=") or (only is not None and ds not in only):
            continue
        try:
            entries = sorted(os.scandir(child.path), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if any(e.name == RECORD and e.is_file() for e in entries):
            out[ds] = [e for e in entries if e.name.endswith(".parquet") and e.is_file()]
    return out


def parquet_files(part: Path) -> list[Path]:
    try:
        children = sorted(os.scandir(part), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    return [Path(c.path) for c in children if c.name.endswith(".parquet") and c.is_file()]


@contextlib.contextmanager
def source_lock(paths: Paths, source: str):
    """One landing or release per source at a time (other sources run in parallel)."""
    lock_dir = paths.tmp / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{source}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        # Holding the source's lock, no other landing of it runs: its work
        # folders left here were left by a killed process. A reading landing
        # runs without the lock: only a dead process's spill folder goes.
        for label in ("land", "release"):
            for stale in paths.tmp.glob(f"{label}-{source}-*"):
                shutil.rmtree(stale, ignore_errors=True)
        for spill in paths.tmp.glob(f"{READ_LABEL}-{source}-*"):
            if not _alive(spill.name[len(READ_LABEL) + len(source) + 2 :].split("-", 1)[0]):
                shutil.rmtree(spill, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def record_failure(paths: Paths, source: str, ds: str, failure: dict) -> Path:
    folder = paths.landing_failures / source / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}.json"
    write_json(path, failure)
    return path
