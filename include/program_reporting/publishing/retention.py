"""Retention: remove what the pipeline keeps only for a while.

The nightly DAG's `retention` task applies this policy after every night's
report, and `program-reporting retention` applies it by hand; `--dry-run`
lists what would go and removes nothing. Each path is listed with its
category, age and size, then the total.

What goes, and after how long (environment variables; `never` keeps that
category for good):

  audit-withheld, audit-published: audit/<run_id>/, the candidate set of a
      run that was withheld (its report is in reports/<run_id>/ and nothing
      reached published/runs/<run_id>/), or one a publish left behind
      (publishing removes a published run's candidate itself).
      PROGRAM_REPORTING_RETAIN_AUDIT_DAYS, default 30.
  tmp: anything under tmp/: work folders of killed steps, DuckDB's spill
      (tmp/duckdb/), gate results a killed run never reported (tmp/gates/),
      the dbt results the nightly DAG's model tasks read (tmp/dbt_runs/),
      OpenLineage's spool files (tmp/lineage/; each run's report keeps its
      events).
      PROGRAM_REPORTING_RETAIN_TMP_HOURS, default 24, at least 12: no night
      runs longer (the DAG's dagrun_timeout), so a running night never loses
      its temp files.
  airflow-log: Airflow's logs folder ($AIRFLOW_HOME/logs, or
      AIRFLOW__LOGGING__BASE_LOG_FOLDER): task logs, the scheduler's and DAG
      processor's, `program-reporting run`'s full output.
      PROGRAM_REPORTING_RETAIN_AIRFLOW_LOG_DAYS, default 30.
  landing-failure: landing_failures/<source>/ds=<ds>/<utc>.json, the record
      of a delivery rejected whole (the reports written since keep their copy).
      PROGRAM_REPORTING_RETAIN_LANDING_FAILURE_DAYS, default 90.
  personal-data: the owners' personal data landing keeps (docs/privacy.md):
      restricted/merchants_pii/ds=<ds>/ is removed whole; in
      quarantine/merchants/ds=<ds>/quarantine.parquet the raw text of every
      row is purged (null; rule, line and detail stay), the file rewritten
      and renamed over the old one.
      PROGRAM_REPORTING_RETAIN_PII_DAYS, default 365.

Age is the time since the newest modification of the path or anything in
it, so a folder something still writes into is young whatever its name. A
folder old through and through goes whole; otherwise only its old parts go.

Never removed: published/ (every published set and current.duckdb),
reports/ (every report and the index), raw/, restricted/ and quarantine/
(but for the personal data above), held/, landing_index/, the warehouse, exports/, the drop folder; lock files
(*.lock) and the standing folders tmp/duckdb/, tmp/gates/, tmp/locks/,
tmp/dbt_runs/, tmp/lineage/; the
audit set of a run with no report yet (one in progress, or staged by hand
and not published: publish it, or remove it yourself). Symbolic links are
never followed: an old link is removed, never what it points to; a category
folder that is itself a link is skipped, and so is an Airflow logs folder
that overlaps the home, the drop or a folder kept above. Audit sets are
removed under the publish lock, so never while a run publishes.

Exit status: 0 when everything listed was removed (or --dry-run), 1 when
something could not be removed (each named, the rest removed), 2 when a
setting is wrong.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import stat
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from program_reporting.core.settings import REPO_ROOT, Paths
from program_reporting.core.settings import paths as default_paths

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 24 * HOUR

# environment variable -> (default, unit in seconds, the least value allowed)
SETTINGS = {
    "PROGRAM_REPORTING_RETAIN_AUDIT_DAYS": (30.0, DAY, 0.0),
    "PROGRAM_REPORTING_RETAIN_TMP_HOURS": (24.0, HOUR, 12.0),  # 12 h: the nightly DAG's dagrun_timeout
    "PROGRAM_REPORTING_RETAIN_AIRFLOW_LOG_DAYS": (30.0, DAY, 0.0),
    "PROGRAM_REPORTING_RETAIN_LANDING_FAILURE_DAYS": (90.0, DAY, 0.0),
    "PROGRAM_REPORTING_RETAIN_PII_DAYS": (365.0, DAY, 0.0),
}
# shared by running steps (lineage: every Airflow process appends its events there):
# emptied of old files, never removed
STANDING_TMP = ("duckdb", "gates", "locks", "dbt_runs", "lineage")


@dataclass(frozen=True)
class Policy:
    """How long each category is kept, in seconds; None keeps it for good."""

    audit: float | None
    tmp: float | None
    airflow_log: float | None
    landing_failure: float | None
    personal_data: float | None = 365.0 * DAY

    def describe(self) -> str:
        def one(seconds: float | None, unit: float, suffix: str) -> str:
            return "never removed" if seconds is None else f"{seconds / unit:g} {suffix}"

        return (
            f"audit sets {one(self.audit, DAY, 'd')}, tmp {one(self.tmp, HOUR, 'h')}, "
            f"Airflow logs {one(self.airflow_log, DAY, 'd')}, "
            f"landing failures {one(self.landing_failure, DAY, 'd')}, "
            f"personal data {one(self.personal_data, DAY, 'd')}"
        )


def _setting(name: str) -> float | None:
    default, unit, least = SETTINGS[name]
    raw = os.environ.get(name, "").strip()
    if raw.lower() == "never":
        return None
    try:
        value = float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"setting {name}={raw!r} is not a number (or `never`)") from exc
    if not value >= least:  # also refuses nan
        why = " hours: a night may run 12, and a running night must keep its temp files" if least else ""
        raise ValueError(f"setting {name}={raw!r} is below {least:g}{why}")
    return value * unit


def policy() -> Policy:
    """The policy the environment sets. Raises ValueError naming a wrong setting."""
    return Policy(
        audit=_setting("PROGRAM_REPORTING_RETAIN_AUDIT_DAYS"),
        tmp=_setting("PROGRAM_REPORTING_RETAIN_TMP_HOURS"),
        airflow_log=_setting("PROGRAM_REPORTING_RETAIN_AIRFLOW_LOG_DAYS"),
        landing_failure=_setting("PROGRAM_REPORTING_RETAIN_LANDING_FAILURE_DAYS"),
        personal_data=_setting("PROGRAM_REPORTING_RETAIN_PII_DAYS"),
    )


@dataclass(frozen=True)
class Entry:
    """One path the policy removes: a file, a link, or a folder with everything in it."""

    category: str
    path: Path
    age_seconds: float
    size_bytes: int
    error: str | None = None  # why it could not be removed


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # what an operator may wonder about, and why it stays
    policy: Policy | None = None

    @property
    def size_bytes(self) -> int:
        return sum(e.size_bytes for e in self.entries)


# --------------------------------------------------------------------------- what is out of reach


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _out_of_reach(p: Paths) -> tuple[list[Path], list[Path]]:
    """(folders never entered, nor removed, nor inside a root; folders no root may contain)."""
    kept = [
        p.published,
        p.reports,
        p.raw,
        p.restricted,
        p.quarantine,
        p.held,
        p.home / "landing_index",
        p.warehouse_db.parent,
        p.exports,
        p.drop,
    ]
    return [_resolved(k) for k in kept], [_resolved(p.home), _resolved(REPO_ROOT)]


def _root_refused(root: Path, p: Paths, inside_home: bool) -> str | None:
    """Why a category's folder is not walked, or None."""
    if root.is_symlink():
        return f"{root} is a symbolic link; retention does not follow links"
    real = _resolved(root)
    if inside_home and not _within(real, _resolved(p.home)):
        return f"{root} is not inside the home {p.home}"
    kept, containers = _out_of_reach(p)
    for k in kept:
        if _within(real, k) or _within(k, real):
            return f"{root} overlaps {k}, which retention never touches"
    for c in containers:
        if _within(c, real):
            return f"{root} holds {c}, which retention never clears"
    return None


# --------------------------------------------------------------------------- finding what is old


def _is_lock(name: str) -> bool:
    return name.endswith(".lock")


def _walk(
    path: Path, cutoff: float, standing: frozenset[Path]
) -> tuple[float, int, bool, list[tuple[Path, float, int]]]:
    """(newest mtime, bytes, must stay, its wholly old parts) of `path` and all below it.

    Never follows a symbolic link (lstat, and links are not entered). A folder
    that must stay (a lock file in it, unreadable, standing) is not removed
    whole, but its old parts are listed."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return st.st_mtime, st.st_size, _is_lock(path.name), []
    newest, size, stays, parts = st.st_mtime, 0, path in standing, []
    try:
        children = sorted(os.scandir(path), key=lambda c: c.name)
    except OSError as exc:  # what it holds is unknown: it stays
        log.warning("retention: cannot read %s, kept: %s", path, exc)
        return newest, size, True, []
    for child in children:
        try:
            c_newest, c_size, c_stays, c_parts = _walk(Path(child.path), cutoff, standing)
        except FileNotFoundError:  # removed meanwhile by its owner
            continue
        newest, size, stays = max(newest, c_newest), size + c_size, stays or c_stays
        if c_newest < cutoff and not c_stays:
            parts.append((Path(child.path), c_newest, c_size))
        else:
            parts.extend(c_parts)
    return newest, size, stays, parts


def _old_parts(category: str, root: Path, keep_for: float | None, now: float, standing=()) -> list[Entry]:
    if keep_for is None or not root.is_dir():
        return []
    cutoff = now - keep_for
    _, _, _, parts = _walk(root, cutoff, frozenset([root, *standing]))
    return [Entry(category, path, now - newest, size) for path, newest, size in parts]


def _audit_sets(p: Paths, keep_for: float | None, now: float, plan: Plan) -> None:
    """Audit sets of finished runs older than the policy; a set with no report stays."""
    if keep_for is None or not p.audit.is_dir():
        return
    for child in sorted(p.audit.iterdir()):
        if child.is_symlink() or not child.is_dir():
            continue
        run_id = child.name
        try:
            newest, size, stays, _ = _walk(child, now - keep_for, frozenset())
        except FileNotFoundError:
            continue
        if (p.runs / run_id).exists():
            category = "audit-published"
        elif (p.reports / run_id / "report.json").exists():
            category = "audit-withheld"
        else:
            plan.kept.append(
                f"{_shown(child, p)}: no report yet (a run in progress, or staged by hand and not published)"
            )
            continue
        if newest < now - keep_for and not stays:
            plan.entries.append(Entry(category, child, now - newest, size))


def find(paths: Paths | None = None, airflow_logs: Path | None = None, pol: Policy | None = None, now=None) -> Plan:
    """What the policy removes now, nothing removed. `airflow_logs`: Airflow's
    logs folder (None: Airflow's logs are left alone). Raises ValueError for a
    wrong setting."""
    p = paths or default_paths()
    pol = pol or policy()
    now = time.time() if now is None else now
    plan = Plan(policy=pol)
    roots = [
        ("audit", p.audit, True),
        ("tmp", p.tmp, True),
        ("landing-failure", p.landing_failures, True),
    ]
    if airflow_logs is not None:
        roots.append(("airflow-log", Path(airflow_logs), False))
    refused = set()
    for category, root, inside_home in roots:
        why = _root_refused(root, p, inside_home) if root.exists() or root.is_symlink() else None
        if why:
            log.warning("retention: %s skipped: %s", category, why)
            plan.kept.append(f"{category} skipped: {why}")
            refused.add(category)
    if "audit" not in refused:
        _audit_sets(p, pol.audit, now, plan)
    if "tmp" not in refused:
        plan.entries += _old_parts("tmp", p.tmp, pol.tmp, now, [p.tmp / name for name in STANDING_TMP])
    if airflow_logs is not None and "airflow-log" not in refused:
        plan.entries += _old_parts("airflow-log", Path(airflow_logs), pol.airflow_log, now)
    if "landing-failure" not in refused:
        plan.entries += _old_parts("landing-failure", p.landing_failures, pol.landing_failure, now)
    plan.entries += _personal_data(p, pol.personal_data, now)
    return plan


def _personal_data(p: Paths, keep_for: float | None, now: float) -> list[Entry]:
    """Restricted partitions, and quarantined merchants files still holding raw
    text, whose newest change is older than the policy. A purged quarantine
    file holds no raw text and is not listed again."""
    from program_reporting.landing.erasure import PII_TABLE, has_raw_text

    if keep_for is None:
        return []
    cutoff, entries = now - keep_for, []
    candidates = [d for d in sorted((p.restricted / PII_TABLE).glob("ds=*")) if not d.is_symlink() and d.is_dir()]
    candidates += [f for f in sorted(p.quarantine.glob("merchants/ds=*/quarantine.parquet")) if not f.is_symlink()]
    for path in candidates:
        try:
            newest, size, _, _ = _walk(path, cutoff, frozenset())
        except FileNotFoundError:
            continue
        if newest < cutoff and (path.is_dir() or _holds_raw_text(path, has_raw_text)):
            entries.append(Entry("personal-data", path, now - newest, size))
    return entries


def _holds_raw_text(path: Path, has_raw_text) -> bool:
    try:
        return has_raw_text(path)
    except Exception:  # unreadable: listed, and its purge will say why it failed
        return True


def _purge_personal(entry: Entry, p: Paths) -> None:
    """Remove a restricted partition; purge the raw text of a quarantine file."""
    from program_reporting.landing.erasure import purge_raw_text
    from program_reporting.landing.store import source_lock

    path = entry.path
    for root in (p.restricted, p.quarantine):
        if _within(_resolved(path.parent), _resolved(root)):
            break
    else:
        raise OSError(f"{path} is neither in {p.restricted} nor in {p.quarantine}")
    with source_lock(p, "merchants"):  # no landing of merchants replaces it meanwhile
        if os.path.islink(path):
            raise OSError(f"{path} is a symbolic link; retention does not follow links")
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            try:
                purge_raw_text(path)
            except Exception as exc:  # a damaged file: named, the rest goes on
                if isinstance(exc, OSError):
                    raise
                raise OSError(f"cannot purge {path}: {exc}") from exc


# --------------------------------------------------------------------------- removing


def _remove(entry: Entry, root: Path, kept: list[Path]) -> None:
    path = entry.path
    # The folder it is in must still be where the walk found it, inside its
    # root: a link swapped in meanwhile would lead elsewhere.
    parent = _resolved(path.parent)
    if not _within(parent, root):
        raise OSError(f"{path.parent} now resolves to {parent}, outside {root}")
    if any(_within(parent / path.name, k) for k in kept):
        raise OSError(f"{path} is in a folder retention never touches")
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)  # removes links inside, never what they point to
    else:
        path.unlink()


def remove(plan: Plan, paths: Paths | None = None, airflow_logs: Path | None = None, each=None) -> list[Entry]:
    """Remove what `plan` lists. Returns its entries, each with `error` set
    when it could not be removed; never raises for one path. `each(entry)` is
    called as each is done, so a caller stopped midway has said what went."""
    from program_reporting.publishing.publish import publish_lock

    p = paths or default_paths()
    roots = {
        "audit-withheld": p.audit,
        "audit-published": p.audit,
        "tmp": p.tmp,
        "landing-failure": p.landing_failures,
    }
    if airflow_logs is not None:
        roots["airflow-log"] = Path(airflow_logs)
    roots = {category: _resolved(root) for category, root in roots.items()}
    kept, _ = _out_of_reach(p)
    done = []
    audit = [e for e in plan.entries if e.category.startswith("audit-")]
    # Under the publish lock: no publish moves a candidate while its folder goes.
    with publish_lock(p) if audit else nullcontext():
        for entry in plan.entries:
            try:
                if entry.category == "personal-data":
                    _purge_personal(entry, p)
                elif entry.category not in roots:
                    raise OSError(f"no folder is known for category {entry.category}")
                else:
                    _remove(entry, roots[entry.category], kept)
            except FileNotFoundError:
                pass  # gone already: what retention wanted
            except OSError as exc:
                entry = dataclasses.replace(entry, error=f"{type(exc).__name__}: {exc}")
                log.warning("retention: could not remove %s: %s", entry.path, entry.error)
            done.append(entry)
            if each is not None:
                each(entry)
    return done


def apply(
    paths: Paths | None = None,
    airflow_logs: Path | None = None,
    dry_run: bool = False,
    pol: Policy | None = None,
    each=None,
) -> tuple[Plan, list[Entry]]:
    """Find what the policy removes and, unless `dry_run`, remove it (`each`:
    see remove). Returns the plan and the entries as removed (none on a dry run)."""
    p = paths or default_paths()
    started = time.monotonic()
    plan = find(p, airflow_logs, pol)
    done = [] if dry_run else remove(plan, p, airflow_logs, each)
    log.info(
        "retention%s: %d path(s), %s, in %.2f s (%s)",
        " (dry run)" if dry_run else "",
        len(plan.entries),
        human_size(plan.size_bytes),
        time.monotonic() - started,
        plan.policy.describe(),
    )
    return plan, done


# --------------------------------------------------------------------------- how it is shown


def _shown(path: Path, p: Paths) -> str:
    try:
        return str(path.relative_to(p.home))
    except ValueError:
        return str(path)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    return f"{seconds / HOUR:.1f} h" if seconds < 2 * DAY else f"{seconds / DAY:.1f} d"


def line(entry: Entry, p: Paths) -> str:
    """One path as listed: category, age, size, path (and why it stayed)."""
    age, size = human_age(entry.age_seconds), human_size(entry.size_bytes)
    text = f"{entry.category:<16} {age:>8} {size:>10}  {_shown(entry.path, p)}"
    return text + (f"  NOT REMOVED: {entry.error}" if entry.error else "")
