"""Land one source's delivery for a business date into the raw layer.

Reads drop/<source>/ds=<ds>/ only once its _control.json exists (--wait polls
for it), checks the control file (strict JSON object; source and ds of the
folder; schema_version "1"; integer row_count; hex sha256; amount_total for
credit_events; produced_at) against the one data file <source>.csv[.gz],
read once into a snapshot of the landing's own (SHA-256 of the very bytes
copied, row count, amount total; refused as delivery_changed if it moved
while read), then checks every row against the rules of extracts.md in
DuckDB.

Each row ends in exactly one place:
  raw/<source>/ds=<ds>/rows.parquet             typed rows that passed (no personal data)
  restricted/merchants_pii/ds=<ds>/             owner name/phone/national id (0700/0600)
  quarantine/<source>/ds=<ds>/quarantine.parquet file, line, rule, detail, raw text (0600)
  held/<source>/ds=<ds>/rows.parquet            orphans: merchant not yet known; retried by
                                                --release-orphans for 7 days, then quarantined
                                                (rule orphan_merchant_unknown)
raw/<source>/ds=<ds>/_reconciliation.json records delivered = loaded + quarantined + held.

The whole delivery is rejected (nothing lands, the previous landing of the
ds stays, a JSON under landing_failures/ says why, exit status 2) when the
control file is missing a key or does not match, the data file changed while
it was read, a listed column is missing or doubled, the file is not gzip,
UTF-8 or parseable CSV, a line is over PROGRAM_REPORTING_MAX_LINE_BYTES, or more than
PROGRAM_REPORTING_MAX_QUARANTINE_SHARE (default 5%) of its rows are
quarantined. Re-landing a ds replaces exactly its partitions. Exit status 3:
no _control.json yet. Rule names and layout: docs/landing.md.

A backlog of dates (`--from D1 --to D2`) lands date by date, each date's
three sources in parallel and its orphans released before the next date
(landing_backlog.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import itertools
import json
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb

from program_reporting.core import contract, settings
from program_reporting.core.settings import Paths
from program_reporting.landing import key_index as landing_index
from program_reporting.landing.checks import ORPHAN_SOURCES, evaluate, t1_select
from program_reporting.landing.datafile import (
    CsvError,
    Scan,
    inflate,
    read_header,
    record_lines,
    records_with_more_fields,
    scan_csv,
    separators_of,
    snapshot,
)
from program_reporting.landing.erasure import erased_hashes, erased_merchants
from program_reporting.landing.rules import (
    AMOUNT_LIMIT,
    AMOUNT_RE,
    FIELD_COUNT,
    OFFSET_RE,
    ORPHAN_EXPIRED,
    RULES,
    detail_sql,
    output_expr,
    sql_list,
    sql_str,
)
from program_reporting.landing.store import (
    READ_LABEL,
    RECORD,
    committed,
    make_private,
    new_workdir,
    parquet_files,
    partition,
    read_record,
    record_failure,
    source_lock,
    swap,
    utc_now,
    write_json,
)

log = logging.getLogger(__name__)

PII_TABLE = "merchants_pii"
QUARANTINE_FILE = "quarantine.parquet"
ROWS_FILE = "rows.parquet"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_AMOUNT_TOTAL = re.compile(r"^-?\d+\.\d{2}$")
LINE_MAP_BATCH = 1 << 20
CONTROL_MAX_BYTES = 1 << 20  # a control file is a few hundred bytes; a bigger one is refused unread
_ISO_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?" + OFFSET_RE + "$")


class LandingError(Exception):
    """Base of the landing errors."""


class DeliveryNotReady(LandingError):
    """The delivery has no _control.json yet: it is incomplete and must not be read."""


class DeliveryRejected(LandingError):
    """The delivery failed whole; nothing of it landed."""

    def __init__(self, source: str, ds: str, file: str, cause: str, detail: str):
        self.source, self.ds, self.file, self.cause, self.detail = source, ds, file, cause, detail
        super().__init__(f"{source} delivery for {ds} rejected ({cause}): {file}: {detail}")


# --------------------------------------------------------------------------
# control file and data file


def _control_bytes(path: Path, source: str, ds: str, rel) -> bytes:
    try:
        if not stat.S_ISREG(os.stat(path, follow_symlinks=False).st_mode):
            raise DeliveryRejected(
                source, ds, rel(path), "control_file", "is not a regular file (a folder, a link or a special file)"
            )
        with open(path, "rb") as fh:
            raw = fh.read(CONTROL_MAX_BYTES + 1)
    except OSError as exc:
        raise DeliveryRejected(source, ds, rel(path), "control_file", f"unreadable: {exc}") from exc
    if len(raw) > CONTROL_MAX_BYTES:
        raise DeliveryRejected(source, ds, rel(path), "control_file", f"larger than {CONTROL_MAX_BYTES} bytes")
    return raw


def _strict_object(pairs: list[tuple]) -> dict:
    keys = Counter(k for k, _v in pairs)
    doubled = [k for k, n in keys.items() if n > 1]
    if doubled:
        raise ValueError(f"key {doubled[0]!r} appears {keys[doubled[0]]} times (strict JSON: no key twice)")
    return dict(pairs)


def _no_constant(name: str):
    raise ValueError(f"{name} is not strict JSON (RFC 8259 has no NaN or Infinity)")


def _read_control(raw: bytes, path: Path, source: str, ds: str, rel) -> dict:
    """The control file as extracts.md has it: a strict JSON object (RFC 8259:
    no NaN or Infinity, no key twice) with every key of its source."""

    def bad(detail: str):
        return DeliveryRejected(source, ds, rel(path), "control_file", detail)

    try:
        # ValueError covers bad JSON and integers too long to parse; RecursionError, deep nesting
        control = json.loads(raw.decode("utf-8"), object_pairs_hook=_strict_object, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise bad(f"unreadable: {exc}") from exc
    if not isinstance(control, dict):
        raise bad("not a JSON object")
    required = ["source", "ds", "schema_version", "row_count", "sha256", "produced_at"]
    if source == "credit_events":
        required.append("amount_total")
    missing = [k for k in required if k not in control]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    if control["source"] != source:
        raise bad(f"source is {control['source']!r}, the folder is {source!r}")
    if control["ds"] != ds:
        raise bad(f"ds is {control['ds']!r}, the folder is {ds!r}")
    if control["schema_version"] != contract.SCHEMA_VERSION:
        raise bad(f"schema_version is {control['schema_version']!r}, expected {contract.SCHEMA_VERSION!r}")
    if type(control["row_count"]) is not int or control["row_count"] < 0:
        raise bad(f"row_count {control['row_count']!r} is not a non-negative integer")
    if not isinstance(control["sha256"], str) or not _HEX64.match(control["sha256"]):
        raise bad(f"sha256 {control['sha256']!r} is not 64 hex digits")
    if not isinstance(control["produced_at"], str) or not _ISO_OFFSET.match(control["produced_at"]):
        raise bad(f"produced_at {control['produced_at']!r} is not an ISO 8601 timestamp with offset")
    if source == "credit_events":
        total = control["amount_total"]
        if not isinstance(total, str) or not _AMOUNT_TOTAL.match(total):
            raise bad(f"amount_total {total!r} is not a decimal string with 2 places")
    return control


def _refuse_symlinks(folder: Path, source: str, ds: str, rel) -> None:
    """A delivery is files a source wrote into the drop folder: a symbolic link
    (the ds folder, the control file or a data file) could make landing read
    any file the pipeline can read, so the delivery is refused whole."""
    names = [contract.CONTROL_FILE] + [contract.data_file_name(source, gz) for gz in (False, True)]
    for p in [folder] + [folder / n for n in names]:
        if p.is_symlink():
            raise DeliveryRejected(
                source, ds, rel(p), "symlink", "is a symbolic link; deliveries must be regular files in the drop folder"
            )


def _data_file(folder: Path, source: str, ds: str, rel) -> Path:
    found = [folder / contract.data_file_name(source, gz) for gz in (False, True)]
    found = [p for p in found if p.is_file()]
    if len(found) != 1:
        what = "no data file" if not found else "both " + " and ".join(p.name for p in found)
        raise DeliveryRejected(
            source, ds, rel(folder), "data_file", f"{what}: expected exactly one of {source}.csv or {source}.csv.gz"
        )
    return found[0]


# --------------------------------------------------------------------------
# land


def land(source: str, ds: str, paths: Paths | None = None, kept: Kept | None = None) -> dict:
    """Land one delivery; returns its reconciliation record.

    Raises DeliveryNotReady (no _control.json) or DeliveryRejected (failed
    whole; the failure is also written under landing_failures/).

    The delivery is read and checked on its own first (control file,
    checksum, CSV, row rules), without the source's lock: nothing shared is
    touched yet. The comparison with the history and the commit happen under
    the lock. kept: the source's lock and index, held by this process across a
    backlog's dates (Kept), instead of taken for this landing alone."""
    paths = paths or settings.paths()
    settings.parse_ds(ds)
    folder = paths.delivery_dir(source, ds)
    control_path = folder / contract.CONTROL_FILE
    if not os.path.lexists(control_path):  # present but not a file: refused by _read, not waited for
        raise DeliveryNotReady(f"{source} delivery for {ds} is not ready: no {control_path}")
    # where the delivery's snapshot is taken and DuckDB spills while reading, if it
    # must; named for this process, so that only a dead process's folder is swept
    # by the next holder of the lock
    spill = _spill_dir(paths, source)
    try:
        if kept is not None:
            with kept.day() as con:
                return _check_and_commit(
                    _read(source, ds, paths, folder, control_path, con, spill), con, paths, attached=True
                )
        con = _connect(spill)
        try:
            delivery = _read(source, ds, paths, folder, control_path, con, spill)
            with source_lock(paths, source):
                try:
                    return _check_and_commit(delivery, con, paths)
                finally:
                    con.close()  # before the lock goes: it closes the index file the next holder opens
        finally:
            con.close()
    except DeliveryRejected as exc:
        failure = {
            "source": source,
            "ds": ds,
            "file": exc.file,
            "cause": exc.cause,
            "detail": exc.detail,
            "message": str(exc),
            "failed_at": utc_now().isoformat(),
        }
        where = record_failure(paths, source, ds, failure)
        log.error("%s (recorded in %s)", exc, where)
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _connect(spill: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config=settings.duckdb_config(spill))
    con.execute("SET TimeZone = 'UTC'")
    return con


def _spill_dir(paths: Paths, source: str) -> Path:
    return paths.tmp / f"{READ_LABEL}-{source}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class Kept:
    """A source's lock and its landing index, attached to one connection,
    held by one process for a backlog's dates: DuckDB then reads the index
    (at a million merchants, 300 MB for credit_events) once per backlog, not
    once per date. Every landing and release of the source in the backlog
    runs in that process (landing_backlog), each date's tables in an
    in-memory database of their own, dropped after it. Only the sources that
    check known merchants keep theirs: they take the merchants lock for a
    moment, so that one is never held across dates."""

    def __init__(self, source: str, paths: Paths):
        self.source, self.paths = source, paths
        self._stack = contextlib.ExitStack()
        self._spill = _spill_dir(paths, source)
        try:
            self._stack.enter_context(source_lock(paths, source))
            self._stack.callback(shutil.rmtree, self._spill, ignore_errors=True)
            self.con = _connect(self._spill)
            self._stack.callback(self.con.close)  # before the lock goes
            # A connection that lives on returns the memory a date freed only
            # through the allocator's background threads: without them a
            # process waiting for its next date kept it (at 5,000,000
            # merchants the landing's peak RSS was 6.4 GiB instead of 5.5).
            self.con.execute("SET allocator_background_threads = true")
            landing_index.attach(self.con, paths, source)
        except BaseException:
            self._stack.close()
            raise

    @contextlib.contextmanager
    def day(self):
        """The connection, with the index synced (the commits since were this
        process's own: a failed refresh is caught up here) and an empty
        database for the date's tables as the default."""
        landing_index.sync(self.con, self.paths, self.source)
        self.con.execute("ATTACH ':memory:' AS this_date")
        self.con.execute("USE this_date")
        try:
            yield self.con
        finally:
            self.con.execute("USE memory")
            self.con.execute("DETACH this_date")
            # and the temporary tables a date made (read_csv's rejects)
            for (name,) in self.con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall():
                self.con.execute(f'DROP TABLE temp."{name}"')

    def close(self) -> None:
        self._stack.close()


@dataclass
class _Delivery:
    """A delivery read into table t1 (view t1l) and checked on its own."""

    source: str
    ds: str
    data: Path
    file_rel: str
    control: dict
    sha256: str
    extras: list[str]
    raw_text: str  # SQL rebuilding a row's raw text
    rows_read: int
    bad_records: list[tuple]  # field-count rejects: (line, raw text, message)
    amount: dict | None
    started: float
    read_seconds: float

    @property
    def delivered(self) -> int:
        return self.rows_read + len(self.bad_records)

    def reject(self, cause: str, detail: str) -> DeliveryRejected:
        return DeliveryRejected(self.source, self.ds, self.file_rel, cause, detail)


def _read(source: str, ds: str, paths: Paths, folder: Path, control_path: Path, con, snap_dir: Path) -> _Delivery:
    """Everything that needs the delivery alone: the control file, the data
    file's snapshot (in snap_dir) and its checksum, header, CSV and row count,
    the amount total, and every row rule (table t1, view t1l). Only the
    snapshot is read after it is taken: what lands is what was verified."""
    started = time.monotonic()

    def rel(p: Path) -> str:
        try:
            return p.relative_to(paths.drop).as_posix()
        except ValueError:
            return str(p)

    _refuse_symlinks(folder, source, ds, rel)
    control_bytes = _control_bytes(control_path, source, ds, rel)
    control = _read_control(control_bytes, control_path, source, ds, rel)
    data = _data_file(folder, source, ds, rel)
    file_rel = rel(data)

    def reject(cause: str, detail: str) -> DeliveryRejected:
        return DeliveryRejected(source, ds, file_rel, cause, detail)

    try:
        snap = snapshot(data, snap_dir, gzipped=data.name.endswith(".gz"))
    except CsvError as exc:
        raise reject(exc.cause, str(exc)) from exc
    if _control_bytes(control_path, source, ds, rel) != control_bytes:
        raise reject(
            "delivery_changed",
            f"its {contract.CONTROL_FILE} changed while the data file was read; "
            "the next landing reads the finished delivery",
        )
    if snap.sha256.lower() != control["sha256"].lower():
        raise reject("checksum", f"SHA-256 is {snap.sha256}, the control file says {control['sha256']}")
    max_line = settings.max_line_bytes()
    try:
        if data.name.endswith(".gz"):
            snap = inflate(snap)
        header = read_header(snap.path, max_line)
    except CsvError as exc:
        raise reject(exc.cause, str(exc)) from exc
    # Counter, not list.count: a header of millions of columns must not be quadratic
    doubled = sorted(h for h, n in Counter(header).items() if n > 1)
    if doubled:
        shown = ", ".join(repr(h) for h in doubled[:10]) + (
            f" and {len(doubled) - 10} more" if len(doubled) > 10 else ""
        )
        raise reject("duplicate_column", f"header ({len(header)} columns) names {shown} more than once")
    listed = contract.column_names(source)
    missing = [c for c in listed if c not in header]
    if missing:
        raise reject("missing_column", f"listed column(s) {', '.join(missing)} not in the header")
    extras = [h for h in header if h not in listed]

    scan = Scan(snap.path).start()  # blank lines and separators, beside DuckDB
    rows_sql, raw_text = _rows_sql(source, ds, header, extras, file_rel)
    try:
        # _bad: set once the rules ran, so that the valid rows are written by a
        # filter on t1 rather than a join (a third of the write's time)
        select = f"SELECT *, false AS _bad FROM ({t1_select(source, ds, rows_sql)})"
        rows_read, bad_records = scan_csv(con, snap.path, len(header), max_line, select, table="t1")
    except CsvError as exc:
        scan.cancel()
        raise reject(exc.cause, str(exc)) from exc
    try:
        scan.wait()
    except CsvError as exc:
        raise reject(exc.cause, str(exc)) from exc
    expected = (len(header) - 1) * (1 + rows_read) + sum(separators_of(text) for _l, text, _m in bad_records)
    padded = 0
    if scan.separators != expected:
        padded = _unpad(con, snap.path, len(header), max_line, bad_records, scan.blank_line_inside)
        rows_read -= padded
    delivered = rows_read + len(bad_records)
    if delivered != control["row_count"]:
        odd = (
            f" ({len(bad_records)} of them with the wrong number of fields, the first on line "
            f"{bad_records[0][0]}: {bad_records[0][1][:60]!r})"
            if bad_records
            else ""
        )
        raise reject("row_count", f"{delivered} data rows{odd}, the control file says {control['row_count']}")

    _line_view(con, snap.path, bad_records, scan.blank_line_inside)
    amount = _check_amount_total(con, control, reject, padded) if source == "credit_events" else None
    return _Delivery(
        source,
        ds,
        data,
        file_rel,
        control,
        snap.sha256,
        extras,
        raw_text,
        rows_read,
        bad_records,
        amount,
        started,
        time.monotonic() - started,
    )


def _unpad(con, csv_path: Path, ncols: int, max_line: int, bad_records: list[tuple], blank_inside: bool) -> int:
    """The separators outside quotes do not add up to the records DuckDB read:
    it accepted records with more fields than the header by dropping their
    empty extra fields. Those records become field_count rejects (appended to
    bad_records, in line order), as the records with extra values are:
    nothing is trimmed. They leave t1 for t1_padded, where their amounts,
    each in its column, still count towards the control's total. Returns
    how many there were."""
    known = {line for line, _t, _m in bad_records}
    padded = records_with_more_fields(csv_path, ncols, max_line, known)
    if not padded:
        log.warning(
            "%s: the separators outside quotes do not add up to the fields DuckDB read, "
            "and no record has more fields than the header",
            csv_path,
        )
        return 0
    _line_view(con, csv_path, bad_records, blank_inside)
    lines = ", ".join(str(line) for line, _t, _m in padded)
    con.execute(f"CREATE TABLE t1_padded AS SELECT * EXCLUDE (_rid, _line) FROM t1l WHERE _line IN ({lines})")
    con.execute(
        f"CREATE TABLE t1_unpadded AS SELECT * EXCLUDE (_rid, _line) FROM t1l "
        f"WHERE _line NOT IN ({lines}) ORDER BY _rid"
    )
    con.execute("DROP VIEW t1l")
    for stale in ("line_map", "gaps", "gapmax"):
        con.execute(f"DROP TABLE IF EXISTS {stale}")
    con.execute("DROP TABLE t1")
    con.execute("ALTER TABLE t1_unpadded RENAME TO t1")
    bad_records[:] = sorted(bad_records + padded)
    log.warning(
        "%s: %d record(s) with empty fields beyond the header's quarantined (field_count), first line %d",
        csv_path.name,
        len(padded),
        padded[0][0],
    )
    return len(padded)


def _check_and_commit(d: _Delivery, con, paths: Paths, attached: bool = False) -> dict:
    """Under the source's lock: the rules that compare with the history
    (index; attached already when kept), the quarantine limit, the record,
    the partitions' swap (staged in a work folder of its own)."""
    work = new_workdir(paths, f"land-{d.source}-{d.ds}")
    try:
        return _check_and_commit_in(d, con, paths, work, attached)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_and_commit_in(d: _Delivery, con, paths: Paths, work: Path, attached: bool) -> dict:
    t_lock = time.monotonic()
    source, ds = d.source, d.ds
    if not attached:
        landing_index.attach(con, paths, source)
    if source in ORPHAN_SOURCES:
        landing_index.known_merchants(con, paths, ds, among="SELECT merchant_id FROM t1")
    evaluate(con, source, ds, paths=paths)
    t_check = time.monotonic()

    counts = dict(con.execute("SELECT _rule IS NOT NULL, count(*) FROM bad GROUP BY 1").fetchall())
    by_rule = dict(
        con.execute("SELECT _rule, count(*) FROM bad WHERE _rule IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    )
    if d.bad_records:
        by_rule[FIELD_COUNT.name] = len(d.bad_records)
    held = counts.get(False, 0)
    quarantined = counts.get(True, 0) + len(d.bad_records)
    delivered = d.delivered
    limit = settings.quarantine_share_limit()
    if delivered and quarantined / delivered > limit:
        top = ", ".join(f"{k} {v}" for k, v in sorted(by_rule.items(), key=lambda kv: -kv[1])[:5])
        raise d.reject(
            "quarantine_share",
            f"{quarantined} of {delivered} rows ({quarantined / delivered:.1%}) quarantined, "
            f"more than the {limit:.0%} allowed ({top}); first: {_first_quarantined(con, source)}",
        )

    landed_at = utc_now()
    record = {
        "source": source,
        "ds": ds,
        "file": d.file_rel,
        "sha256": d.sha256,
        "control_row_count": d.control["row_count"],
        "delivered": delivered,
        "loaded": d.rows_read - counts.get(True, 0) - held,
        "quarantined": quarantined,
        "held": held,
        "quarantine_by_rule": by_rule,
        "extra_columns": d.extras,
        "landed_at": landed_at.isoformat(),
        "touches_from": None,
    }
    if d.amount:
        record["amount_total"] = d.amount
    old = read_record(partition(paths.raw, source, ds))
    record["touches_from"] = _touches_from(con, source, old)
    _write_and_swap(con, paths, source, ds, work, record, d.bad_records, landed_at, d.raw_text)
    _refresh_index(con, paths, source, {ds})

    elapsed = time.monotonic() - d.started
    log.info(
        "landed %s %s: %d delivered, %d loaded, %d quarantined, %d held in %.2fs "
        "(read %.2fs, waited for the lock %.2fs, checks %.2fs, %.0f rows/s)",
        source,
        ds,
        delivered,
        record["loaded"],
        quarantined,
        held,
        elapsed,
        d.read_seconds,
        t_lock - d.started - d.read_seconds,
        t_check - t_lock,
        delivered / max(elapsed, 1e-9),
    )
    return record


def _rows_sql(source: str, ds: str, header: list[str], extras: list[str], file_rel: str) -> tuple[str, str]:
    """(SELECT naming the CSV's columns c<i>: contract names, _x<i> for extras, plus
    _extra JSON, _ds, _file; the SQL rebuilding a row's raw text)."""
    listed = contract.column_names(source)
    names = [h if h in listed else f"_x{i}" for i, h in enumerate(header)]
    cols = [f"c{i} AS {n}" for i, n in enumerate(names)]
    if extras:
        pairs = ", ".join(f"{sql_str(h)}, c{header.index(h)}" for h in extras)
        extra = f"json_object({pairs})::VARCHAR"
    else:
        extra = "CAST(NULL AS VARCHAR)"
    rows_sql = (
        f"SELECT {', '.join(cols)}, {extra} AS _extra, DATE '{ds}' AS _ds, {sql_str(file_rel)} AS _file FROM ({{rows}})"
    )
    # raw text of a row: RFC 4180 re-quoting of its fields in header order
    fields = [
        f"CASE WHEN {c} IS NULL THEN '' WHEN regexp_matches({c}, '[\",\\r\\n]') "
        f"THEN '\"' || replace({c}, '\"', '\"\"') || '\"' ELSE {c} END"
        for c in names
    ]
    return rows_sql, f"concat_ws(',', {', '.join(fields)})"


def _line_view(con, data: Path, bad_records: list[tuple], blank_inside: bool) -> None:
    """View `t1l`: t1 plus _rid (file order) and _line, the CSV record number
    (header = 1). Rows DuckDB rejected (field count) are holes in rowid order."""
    if blank_inside:
        bad_lines = {line for line, _t, _m in bad_records}
        con.execute("CREATE TABLE line_map (_k BIGINT, _line BIGINT)")
        import pyarrow as pa  # the slow path only: its import costs a nightly landing 0.2 s

        # in batches through Arrow: memory bounded whatever the number of records
        good = (line for line in record_lines(data, settings.max_line_bytes()) if line not in bad_lines)
        k = 0
        while batch := list(itertools.islice(good, LINE_MAP_BATCH)):
            chunk = pa.table(  # noqa: F841 - DuckDB reads it by name
                {
                    "_k": pa.array(range(k + 1, k + len(batch) + 1), pa.int64()),
                    "_line": pa.array(batch, pa.int64()),
                }
            )
            con.execute("INSERT INTO line_map SELECT * FROM chunk")
            k += len(batch)
        line, join = "lm._line", "JOIN line_map lm ON lm._k = t1.rowid + 1"
    elif bad_records:
        con.execute("CREATE TABLE gaps (gi BIGINT, n BIGINT)")
        # the i-th rejected record, at line L, has L - 1 - i good rows before it
        rows = [(line - 1 - i, i) for i, (line, _t, _m) in enumerate(bad_records, start=1)]
        con.executemany("INSERT INTO gaps VALUES (?, ?)", rows)
        con.execute("CREATE TABLE gapmax AS SELECT gi, max(n) AS n FROM gaps GROUP BY gi")
        line, join = "t1.rowid + 2 + coalesce(g.n, 0)", "ASOF LEFT JOIN gapmax g ON t1.rowid + 1 > g.gi"
    else:
        line, join = "t1.rowid + 2", ""
    con.execute(f"CREATE VIEW t1l AS SELECT t1.*, t1.rowid AS _rid, CAST({line} AS BIGINT) AS _line FROM t1 {join}")


def _refresh_index(con, paths: Paths, source: str, dates: set[str]) -> None:
    """After a commit of the partitions of `dates`: the index learns their new
    files now rather than at the next landing. Best effort: the next attach
    syncs everything anyway."""
    try:
        landing_index.sync(con, paths, source, only=dates)
    except (duckdb.Error, OSError) as exc:
        log.warning("landing index of %s not refreshed (%s); the next landing will", source, exc)


def _check_amount_total(con, control: dict, reject, padded: int = 0) -> dict:
    """Sum of amount over every delivered row, as the control file's amount_total.

    Every plain decimal counts at its exact value, however many digits it has
    (one beyond any DECIMAL is quarantined, amount_too_large, but delivered).
    An amount that is not a plain decimal (exponent, thousands separator,
    text) cannot be summed as written: the total matches when the control
    equals the sum with those rows counted as 0, or the sum with them read
    leniently (separators dropped, exponent expanded) - whichever reading the
    source used. Rows with the wrong number of fields cannot be summed (their
    amount cannot be located) and count as 0, except those whose extra
    fields are empty (`padded`, table t1_padded): every field is in place."""
    rows = "(SELECT amount, amount__v FROM t1 UNION ALL SELECT amount, amount__v FROM t1_padded)" if padded else "t1"
    # amount__v is the typed value of a plain decimal: the text is looked at only without one
    untyped = "amount__v IS NULL AND amount IS NOT NULL"
    plain = f"regexp_full_match(amount, '{AMOUNT_RE}')"
    lenient_v = "try_cast(replace(trim(amount), ',', '') AS DECIMAL(38,10))"
    query = f"""
        SELECT coalesce(sum(amount__v) FILTER (WHERE @fits), 0)::DECIMAL(38,2),
               coalesce(sum(CASE WHEN {untyped} AND NOT {plain} THEN {lenient_v} END), 0),
               count(*) FILTER (WHERE {untyped} AND NOT {plain}),
               count(*) FILTER (WHERE {untyped} AND {plain})
        FROM {rows}"""
    try:
        strict, lenient, unparsed, beyond = con.execute(query.replace("@fits", "true")).fetchone()
        large = None if beyond else ""
    except duckdb.OutOfRangeException:  # a sum beyond DECIMAL(38,2): amounts of 36 digits
        beyond = 1
    if beyond:
        # The amounts beyond DECIMAL(38) (no typed value) or large enough to
        # overflow a sum are summed here, exactly, as they stream by.
        fits = f"abs(amount__v) < {AMOUNT_LIMIT}0000"
        strict, lenient, unparsed, beyond = con.execute(query.replace("@fits", fits)).fetchone()
        large = f"({untyped} AND {plain}) OR NOT {fits}"
    with decimal.localcontext(
        decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[decimal.Inexact])
    ):
        strict = Decimal(strict)
        if large:
            cursor = con.execute(f"SELECT amount FROM {rows} WHERE {large}")
            while batch := cursor.fetchmany(10_000):
                for (text,) in batch:
                    strict += Decimal(text)
        lenient = strict + Decimal(lenient)
        expected = Decimal(control["amount_total"])
        # the lenient sum may carry more than 2 places (12.345): rounded either way it matches
        matched = expected == strict or abs(expected - lenient) <= Decimal("0.005")
    if not matched:
        note = f" ({unparsed} amount(s) not a plain decimal counted as 0)" if unparsed else ""
        raise reject(
            "amount_total", f"amounts sum to {strict:.2f}{note}, the control file says {control['amount_total']}"
        )
    return {"control": control["amount_total"], "delivered": f"{strict:.2f}", "unparsed_amounts": unparsed}


def _first_quarantined(con, source: str) -> str:
    row = con.execute(
        f"SELECT _line, _rule, {detail_sql(RULES[source])} FROM bad WHERE _rule IS NOT NULL ORDER BY _line LIMIT 1"
    ).fetchone()
    return f"line {row[0]}: {row[1]}: {row[2]}" if row else "field_count rows"


TOUCHES = {
    "credit_events": "min(CAST(event_at__v AS DATE)) - 1",
    "merchants": "min(least(enrolled_on__v, CAST(updated_at__v AS DATE))) - 1",
    "employment_reports": "min(period_month__v)",
}


def _touches_from(con, source: str, old: dict | None) -> str | None:
    """Earliest business date this delivery (and the partition it replaces) can
    affect: over the loaded and held rows (UTC dates, minus a day of margin)."""
    mine = con.execute(
        f"SELECT {TOUCHES[source]} FROM t1 WHERE rowid NOT IN (SELECT _rid FROM bad WHERE _rule IS NOT NULL)"
    ).fetchone()[0]
    dates = [d.isoformat() for d in [mine] if d is not None]
    if old and old.get("touches_from"):
        dates.append(old["touches_from"])
    return min(dates) if dates else None


def _copy(con, query: str, path: Path) -> None:
    con.execute(f"COPY ({query}) TO {sql_str(str(path))} (FORMAT parquet)")


def _raw_columns(source: str) -> str:
    cols = [output_expr(c) for c in contract.COLUMNS[source] if c.name not in contract.PII_COLUMNS]
    return ", ".join(cols + ["_ds", "_file", "_line", "_extra", "_landed_at"])


def _write_and_swap(
    con,
    paths: Paths,
    source: str,
    ds: str,
    work: Path,
    record: dict,
    bad_records: list[tuple],
    landed_at: dt.datetime,
    raw_text: str,
) -> None:
    t0 = time.monotonic()
    stamp = f"TIMESTAMPTZ {sql_str(landed_at.isoformat())}"
    stage = {name: work / name for name in ("raw", "quarantine", "held", "restricted")}
    for d in stage.values():
        d.mkdir()
    con.execute("UPDATE t1 SET _bad = true WHERE rowid IN (SELECT _rid FROM bad)")
    if source == "merchants" and (erased := erased_merchants(paths)):
        # merchants whose owner had their data erased (landing/erasure.py): a
        # re-delivery of it is erased again before anything is written, also
        # under another merchant id when the phone or national id is theirs
        hashes = sql_list(sorted(erased_hashes(paths)))
        owner = contract.PII_COLUMNS
        theirs = (
            f"(list_contains({sql_list(sorted(erased))}, merchant_id) "
            f"OR list_contains({hashes}, sha256(owner_phone)) OR list_contains({hashes}, sha256(owner_national_id))) "
            f"AND ({' OR '.join(f'{c} IS NOT NULL' for c in owner)})"
        )
        nulls = ", ".join(f"{c} = NULL" for c in owner)
        n = con.execute(f"UPDATE t1 SET {nulls} WHERE {theirs}").fetchone()[0]
        con.execute(f"UPDATE bad SET {nulls} WHERE {theirs}")  # the quarantined rows' copy, their raw text
        if n:
            record["erased_on_landing"] = n
            log.info("merchants %s: erased the personal data of %d row(s) of erased merchants", ds, n)
    valid = "FROM t1l WHERE NOT _bad"
    _copy(
        con, f"SELECT {_raw_columns(source)} FROM (SELECT *, {stamp} AS _landed_at {valid})", stage["raw"] / ROWS_FILE
    )
    has_pii = source == "merchants" and record["loaded"] > 0
    if has_pii:
        _copy(
            con,
            f"SELECT merchant_id, {', '.join(contract.PII_COLUMNS)}, _ds, _file, _line, {stamp} AS _landed_at {valid}",
            stage["restricted"] / ROWS_FILE,
        )
        make_private(stage["restricted"])

    con.execute("CREATE TABLE field_count_rows (line BIGINT, raw_text VARCHAR, detail VARCHAR)")
    if bad_records:
        con.executemany("INSERT INTO field_count_rows VALUES (?, ?, ?)", bad_records)
    if record["quarantined"]:
        file_rel = sql_str(record["file"])
        _copy(
            con,
            f"""
            SELECT {sql_str(source)} AS source, DATE '{ds}' AS ds, _file AS file, _line AS line, _rule AS rule,
                   {detail_sql(RULES[source])} AS detail, {raw_text} AS raw_text, {stamp} AS quarantined_at
            FROM bad WHERE _rule IS NOT NULL
            UNION ALL
            SELECT {sql_str(source)}, DATE '{ds}', {file_rel}, line, '{FIELD_COUNT.name}', detail, raw_text,
                   {stamp} FROM field_count_rows
            ORDER BY line""",
            stage["quarantine"] / QUARANTINE_FILE,
        )
        make_private(stage["quarantine"])
    if record["held"]:
        names = ", ".join(contract.column_names(source))
        _copy(
            con,
            f"SELECT {names}, _ds, _file, _line, _extra, {raw_text} AS _raw_text, "
            f"{stamp} AS _held_at FROM bad WHERE _held ORDER BY _line",
            stage["held"] / ROWS_FILE,
        )
        make_private(stage["held"])
    write_json(stage["raw"] / RECORD, record)  # the commit marker, last file of the partition
    t1 = time.monotonic()

    trash = work / "trash"
    swap(stage["quarantine"] if record["quarantined"] else None, partition(paths.quarantine, source, ds), trash)
    swap(stage["held"] if record["held"] else None, partition(paths.held, source, ds), trash)
    if source == "merchants":
        swap(
            stage["restricted"] if has_pii else None,
            partition(paths.restricted, PII_TABLE, ds),
            trash,
            private_parents=True,
        )
    swap(stage["raw"], partition(paths.raw, source, ds), trash)  # last: the raw partition commits the landing
    log.debug("wrote %s %s partitions in %.2fs, swapped in %.3fs", source, ds, t1 - t0, time.monotonic() - t1)


# --------------------------------------------------------------------------
# orphans


def release_orphans(ds: str, paths: Paths | None = None) -> dict:
    """Retry the held orphans of every ds <= `ds` against the merchants landed
    with _ds <= ds: released rows go to raw/<source>/ds=<their ds>/released-<ds>.parquet,
    orphans held for 7 days or more go to quarantine (orphan_merchant_unknown).
    Returns {source: {their ds: {"released", "quarantined", "held"}}} plus "touches_from".

    Both sources' held rows are evaluated in one pass with one connection and
    one lookup of their merchants (the release's cost is mostly fixed work,
    paid every night), then each partition is committed on its own, as a
    landing is. A backlog runs each source's half in the process that keeps
    the source (release_kept)."""
    paths = paths or settings.paths()
    expire_upto = _expire_upto(ds)
    summary: dict = {"ds": ds, "touches_from": None, **{source: {} for source in ORPHAN_SOURCES}}
    with contextlib.ExitStack() as stack:
        waiting: dict[str, list[str]] = {}
        for source in ORPHAN_SOURCES:  # one order of taking the locks: two releases cannot deadlock
            if not (paths.held / source).is_dir():
                continue
            stack.enter_context(source_lock(paths, source))
            if dates := _waiting(paths, source, ds):
                waiting[source] = dates
        if not waiting:
            return summary
        started = time.monotonic()
        works = {source: new_workdir(paths, f"release-{source}-{ds}") for source in waiting}
        stack.callback(lambda: [shutil.rmtree(w, ignore_errors=True) for w in works.values()])
        con = _connect(next(iter(works.values())) / "duckdb_tmp")
        stack.callback(con.close)
        leftovers = {source: _load_held(con, paths, source, dates, ds) for source, dates in waiting.items()}
        landing_index.known_merchants(
            con, paths, ds, among=" UNION ALL ".join(f"SELECT merchant_id FROM held_{s}" for s in waiting)
        )
        for source, dates in waiting.items():
            summary[source] = _release_source(
                con, paths, source, dates, ds, expire_upto, works[source], leftovers[source]
            )
        log.info(
            "released orphans on %s: %s in %.2fs",
            ds,
            ", ".join(f"{s} {len(d)} partition(s)" for s, d in waiting.items()),
            time.monotonic() - started,
        )
    return release_summary(summary)


def release_summary(summary: dict) -> dict:
    """Set summary["touches_from"]: the earliest date the release's partitions touch."""
    for source in ORPHAN_SOURCES:
        for result in summary.get(source, {}).values():
            tf = result.get("touches_from")
            if tf and (summary["touches_from"] is None or tf < summary["touches_from"]):
                summary["touches_from"] = tf
    return summary


def _expire_upto(ds: str) -> str:
    return (settings.parse_ds(ds) - dt.timedelta(days=settings.ORPHAN_RETRY_DAYS)).isoformat()


def release_kept(kept: Kept, ds: str) -> dict:
    """release_orphans for the one source that `kept` holds, in the process
    that holds it (a backlog): {their ds: {"released", "quarantined", "held"}}.
    Its merchants lookup is its own (release_orphans makes one for both
    sources); what it reads and writes is the same."""
    paths, source = kept.paths, kept.source
    if not (paths.held / source).is_dir() or not (waiting := _waiting(paths, source, ds)):
        return {}
    work = new_workdir(paths, f"release-{source}-{ds}")
    try:
        with kept.day() as con:
            leftovers = _load_held(con, paths, source, waiting, ds)
            landing_index.known_merchants(con, paths, ds, among=f"SELECT merchant_id FROM held_{source}")
            return _release_source(con, paths, source, waiting, ds, _expire_upto(ds), work, leftovers, attached=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _waiting(paths: Paths, source: str, ds: str) -> list[str]:
    """The held partitions of `source` with ds <= `ds` (the caller holds the source's lock)."""
    waiting = []
    for part in sorted(os.scandir(paths.held / source), key=lambda e: e.name):
        their_ds = part.name[3:]
        if not part.name.startswith("ds=") or their_ds > ds or not os.path.isfile(os.path.join(part.path, ROWS_FILE)):
            continue
        if read_record(partition(paths.raw, source, their_ds)) is None:
            log.warning("held %s %s has no committed raw partition; left held", source, their_ds)
            continue
        waiting.append(their_ds)
    return waiting


def _load_held(con, paths: Paths, source: str, waiting: list[str], ds: str) -> set[str]:
    """Table held_<source>: the held rows of the partitions in `waiting`, typed
    and checked row by row as a delivery is, less the rows an interrupted
    release already released or quarantined. Returns the partitions where
    there were such rows: their held file and counts need rewriting."""
    held = sql_list(str(partition(paths.held, source, d) / ROWS_FILE) for d in waiting)
    rows_sql = f"SELECT * FROM read_parquet({held}, union_by_name = true)"
    table = f"held_{source}"
    con.execute(f"CREATE TABLE {table} AS {t1_select(source, ds, rows_sql)}")
    # crash safety: rows already released or quarantined by an interrupted run are not taken twice
    taken = []
    for their_ds in waiting:
        raw_part = partition(paths.raw, source, their_ds)
        taken += [
            f"SELECT _ds AS ds, _line AS line FROM read_parquet({sql_str(str(f))})"
            for f in parquet_files(raw_part)
            if f.name.startswith("released-")
        ]
        qfile = partition(paths.quarantine, source, their_ds) / QUARANTINE_FILE
        if qfile.is_file():
            taken.append(f"SELECT ds, line FROM read_parquet({sql_str(str(qfile))})")
    if not taken:
        return set()
    gone = con.execute(
        f"DELETE FROM {table} USING ({' UNION ALL '.join(taken)}) d "
        f"WHERE {table}._ds = d.ds AND {table}._line = d.line RETURNING {table}._ds"
    ).fetchall()
    return {d.isoformat() for (d,) in gone}


def _release_source(
    con,
    paths: Paths,
    source: str,
    waiting: list[str],
    ds: str,
    expire_upto: str,
    work: Path,
    leftovers: set[str],
    attached: bool = False,
) -> dict:
    """Evaluate table held_<source> against the merchants in table `known`
    and the history that came since the rows were held; commit each partition
    where something changes, or where an interrupted release left rows
    behind (`leftovers`). The caller holds the source's lock (and its index,
    attached, when kept)."""
    started = time.monotonic()
    con.execute(f"ALTER TABLE held_{source} RENAME TO t1")
    con.execute("CREATE VIEW t1l AS SELECT *, rowid AS _rid FROM t1")
    if not attached:
        landing_index.attach(con, paths, source)
    try:  # the next source's index is attached under the same name
        # Held rows were compared with the history in force when they were held
        # (had they conflicted, they would be quarantined, not held): only the
        # files that came since can conflict with them now.
        held_since = con.execute("SELECT min(_held_at) FROM t1").fetchone()[0]
        evaluate(con, source, waiting, paths=paths, in_file=False, history_since=held_since)
        con.execute(f"""CREATE TABLE outcome AS SELECT *,
            CASE WHEN _rule IS NOT NULL THEN _rule WHEN _ds <= DATE '{expire_upto}' THEN '{ORPHAN_EXPIRED.name}' END
              AS _qrule
            FROM bad""")
        con.execute("CREATE TABLE released AS SELECT * FROM t1l ANTI JOIN outcome USING (_rid)")
        t_eval = time.monotonic()
        # per partition, in one pass each: rows released (and the earliest date they
        # touch), quarantined by rule, still held; only partitions where something
        # changes are rewritten
        released = {
            d.isoformat(): (n, touches.isoformat() if touches else None)
            for d, n, touches in con.execute(
                f"SELECT _ds, count(*), {TOUCHES[source]} FROM released GROUP BY 1"
            ).fetchall()
        }
        still: dict[str, int] = {}
        by_rule: dict[str, dict[str, int]] = {d: {} for d in waiting}
        for d, rule, n in con.execute("SELECT _ds, _qrule, count(*) FROM outcome GROUP BY 1, 2").fetchall():
            if rule is None:
                still[d.isoformat()] = n
            else:
                by_rule[d.isoformat()][rule] = n
        results = {}
        for their_ds in waiting:
            n_released, touches = released.get(their_ds, (0, None))
            if n_released == 0 and not by_rule[their_ds] and their_ds not in leftovers:
                results[their_ds] = {"released": 0, "quarantined": 0, "held": still.get(their_ds, 0)}
                continue
            results[their_ds] = _commit_release(
                con,
                paths,
                source,
                their_ds,
                ds,
                work / their_ds,
                n_released,
                still.get(their_ds, 0),
                touches,
                by_rule[their_ds],
                recount=their_ds in leftovers,
            )
        _refresh_index(con, paths, source, set(waiting))
    finally:
        if not attached:
            con.execute("DETACH idx")
    for kind, name in (
        ("VIEW", "t1l"),
        ("TABLE", "t1"),
        ("TABLE", "bad"),
        ("TABLE", "outcome"),
        ("TABLE", "released"),
        ("TABLE", "conflicts"),
    ):
        con.execute(f"DROP {kind} IF EXISTS {name}")
    log.info(
        "released orphans of %s on %s: %d partition(s) in %.2fs (evaluation %.2fs)",
        source,
        ds,
        len(waiting),
        time.monotonic() - started,
        t_eval - started,
    )
    return results


def _commit_release(
    con,
    paths: Paths,
    source: str,
    their_ds: str,
    ds: str,
    work: Path,
    released: int,
    still: int,
    touches: str | None,
    by_rule: dict[str, int],
    recount: bool,
) -> dict:
    """Write one held partition's outcome (tables released and outcome, rows of
    _ds = their_ds). The three partitions are staged, then swapped in the order
    quarantine, raw (the record: the commit), held, so that a release killed
    in between leaves every row where the next release looks: rows already in
    a released file or the quarantine are not taken again (_load_held), and
    that partition's counts are then recounted from its files (`recount`)."""
    raw_part = partition(paths.raw, source, their_ds)
    held_part = partition(paths.held, source, their_ds)
    q_part = partition(paths.quarantine, source, their_ds)
    record = read_record(raw_part)
    work.mkdir()
    now = utc_now()
    stamp = f"TIMESTAMPTZ {sql_str(now.isoformat())}"
    mine = f"_ds = DATE '{their_ds}'"
    quarantined = sum(by_rule.values())

    # quarantine: the old rows + the new ones
    new_q = None
    if quarantined:
        new_q = work / "quarantine"
        new_q.mkdir()
        expired = ORPHAN_EXPIRED.name
        detail = detail_sql(RULES[source])
        query = (
            f"SELECT {sql_str(source)} AS source, DATE '{their_ds}' AS ds, _file AS file, _line AS line, "
            f"_qrule AS rule, CASE WHEN _qrule = '{expired}' THEN 'merchant ' || merchant_id || "
            f"' still unknown on {ds}, {settings.ORPHAN_RETRY_DAYS} days or more after {their_ds}' "
            f"ELSE {detail} END AS detail, "
            f"_raw_text AS raw_text, {stamp} AS quarantined_at FROM outcome WHERE {mine} AND _qrule IS NOT NULL"
        )
        if (q_part / QUARANTINE_FILE).is_file():
            query = f"SELECT * FROM read_parquet({sql_str(str(q_part / QUARANTINE_FILE))}) UNION ALL BY NAME {query}"
        _copy(con, query + " ORDER BY line", new_q / QUARANTINE_FILE)
        make_private(new_q)

    # raw: the old files (hard links) + released-<ds>.parquet + the updated record
    new_raw = work / "raw"
    new_raw.mkdir()
    for f in parquet_files(raw_part):
        os.link(f, new_raw / f.name)
    if released:
        target = new_raw / f"released-{ds}.parquet"
        query = f"SELECT {_raw_columns(source)} FROM (SELECT *, {stamp} AS _landed_at FROM released WHERE {mine})"
        if target.exists():  # a second release on the same day adds to the first
            os.unlink(target)
            query += f" UNION ALL BY NAME SELECT * FROM read_parquet({sql_str(str(raw_part / target.name))})"
        _copy(con, query, target)
    if recount:
        # an interrupted release may have committed some of its writes: the files say what is where
        record["loaded"] = con.execute(
            f"SELECT count(*) FROM read_parquet({sql_list(map(str, parquet_files(new_raw)))})"
        ).fetchone()[0]
        qfile = (new_q or q_part) / QUARANTINE_FILE
        record["quarantine_by_rule"] = dict(
            con.execute(f"SELECT rule, count(*) FROM read_parquet({sql_str(str(qfile))}) GROUP BY 1").fetchall()
            if qfile.is_file()
            else []
        )
        record["quarantined"] = sum(record["quarantine_by_rule"].values())
    else:
        record["loaded"] += released
        record["quarantined"] += quarantined
        for rule, n in by_rule.items():
            record["quarantine_by_rule"][rule] = record["quarantine_by_rule"].get(rule, 0) + n
    record["held"] = still
    # the release's own reach: a build that has seen the partition before restates from here only
    record.setdefault("releases", []).append(
        {"ds": ds, "released": released, "quarantined": quarantined, "at": now.isoformat(), "touches_from": touches}
    )
    if touches and (record.get("touches_from") is None or touches < record["touches_from"]):
        record["touches_from"] = touches
    write_json(new_raw / RECORD, record)

    # held: what is still waiting
    new_held = None
    if still:
        new_held = work / "held"
        new_held.mkdir()
        _copy(
            con,
            f"SELECT {', '.join(contract.column_names(source))}, _ds, _file, _line, _extra, _raw_text, "
            f"_held_at FROM outcome WHERE {mine} AND _qrule IS NULL ORDER BY _line",
            new_held / ROWS_FILE,
        )
        make_private(new_held)

    trash = work / "trash"
    if new_q is not None:
        swap(new_q, q_part, trash)
    swap(new_raw, raw_part, trash)
    swap(new_held, held_part, trash)
    shutil.rmtree(trash, ignore_errors=True)
    log.info(
        "orphans of %s %s on %s: %d released, %d quarantined, %d still held",
        source,
        their_ds,
        ds,
        released,
        quarantined,
        still,
    )
    return {"released": released, "quarantined": quarantined, "held": still, "touches_from": touches}


# --------------------------------------------------------------------------
# reconciliation


def reconciliation(paths: Paths | None = None) -> list[dict]:
    """Every landed delivery's reconciliation record, by source then ds."""
    paths = paths or settings.paths()
    out = []
    for source in settings.SOURCES:
        for _ds, part in committed(paths, source).items():
            record = read_record(part)
            if record:
                out.append(record)
    return out
