"""A run's candidate set and its gate verdict, as every publisher checks them.

The build stages a run's KPI set in audit/<run_id>/kpi.duckdb; the marts gate
(gate.validate) writes its verdict, with the file's SHA-256, next to it in
gate.json. Whoever publishes the set, to the files or to the PostgreSQL
serving schema, takes it only through `checked_candidate`: a passing verdict
for exactly these bytes. It lives here, below both publishers, so that neither
imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from program_reporting.core.checksums import sha256_file
from program_reporting.core.settings import Paths

GATE_FILE = "gate.json"  # audit/<run_id>/gate.json: the verdict every publisher requires


class PublishError(RuntimeError):
    """The set cannot be published; nothing was changed."""


class GateBlocked(PublishError):
    """A gate did not pass the set: running the step again would only repeat the verdict."""


def check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise PublishError(f"run id {run_id!r} is not usable as a folder name")


def checked_candidate(run_id: str, p: Paths) -> tuple[Path, dict]:
    """audit/<run_id>/kpi.duckdb and its verdict, when the verdict passed and the
    file is the one it was given for. Raises PublishError otherwise."""
    check_run_id(run_id)
    audit_dir = p.audit / run_id
    candidate = audit_dir / "kpi.duckdb"
    if not candidate.exists():
        raise PublishError(f"{candidate}: no candidate set for run {run_id}")
    if Path(str(candidate) + ".wal").exists():
        raise PublishError(f"{candidate}.wal exists: the set changed after validation; validate it again")
    verdict_file = audit_dir / GATE_FILE
    try:
        verdict = json.loads(verdict_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PublishError(f"{verdict_file}: no gate verdict for run {run_id}; run the gate first ({exc})") from exc
    if not verdict.get("passed"):
        raise GateBlocked(f"run {run_id} did not pass the gate: {verdict.get('reason')}")
    if sha256_file(candidate) != verdict.get("candidate_sha256"):
        raise PublishError(f"{candidate} changed since it was validated; validate it again")
    return candidate, verdict
