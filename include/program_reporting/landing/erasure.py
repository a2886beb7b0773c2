"""Erase one merchant's personal data (owner name, phone, national id) from
everything the pipeline keeps, on the owner's request (PIPL art. 47, GDPR
art. 17). docs/privacy.md says where personal data lives and why each place
is handled as it is.

What is changed, under the merchants source's landing lock (no landing of
merchants runs meanwhile), each file rewritten to a temporary file beside it
and renamed over it (fsynced), so a reader sees the old file or the new one:

  restricted/merchants_pii/ds=*/rows.parquet
      the merchant's rows are dropped: such a row is nothing but personal
      data (merchant_id, the three owner columns, where it came from).
  quarantine/merchants/ds=*/quarantine.parquet
      in the raw text of the merchant's quarantined rows (and of rows under
      another merchant id holding the merchant's phone or national id: a
      mistyped id does not hide the person) the owner fields become empty; rule, line, detail and every other field stay. A row
      whose fields cannot be placed under the delivery's header (a
      field_count row) loses its raw text whole (null).
  held/<source>/ds=*/rows.parquet
      any owner column of the merchant's rows becomes null. Today no held
      file has one (merchants rows are never held): this covers a future one.
  landing_failures/**/*.json
      every occurrence of one of the merchant's personal values (found in the
      places above and in the drop folder) becomes "[erased]".

Never changed: raw/, the warehouse, published/, reports/ and exports/ hold
no personal data (landing writes raw/ without the owner columns; the test
tests/integration/test_erasure.py scans every file of the home for the
values); the drop folder, which belongs to the source: the files there still
holding the merchant's data are listed, for the source to erase.

The erasure record is appended to <home>/audit_trail/erasures.jsonl
(append-only, fsynced): when, the merchant, by whom, the reason, the places
and files changed, the files of the drop still holding data, and SHA-256
hashes of the erased values, never the values. Landing reads these records:
a later delivery of an erased merchant's personal data is erased again on
landing (owner columns null, in the restricted and quarantine layers alike; counted in the
reconciliation record as `erased_on_landing`).
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import gzip
import hashlib
import io
import json
import os
import re
from pathlib import Path

import duckdb

from program_reporting.core import contract
from program_reporting.core.durable import fsync_dir, fsync_file
from program_reporting.core.settings import Paths
from program_reporting.landing.store import PRIVATE_FILE, source_lock

PII_TABLE = "merchants_pii"  # landing.land.PII_TABLE (not imported: land imports this module)
ERASED = "[erased]"
STRONG = ("owner_phone", "owner_national_id")  # identify a person; a name does not
RECORDS_FILE = "erasures.jsonl"
_QUOTE = re.compile(r'[",\r\n]')


def records_path(paths: Paths) -> Path:
    return paths.home / "audit_trail" / RECORDS_FILE


def erased_merchants(paths: Paths) -> set[str]:
    """The merchant ids of every erasure record: landing erases their personal data again."""
    try:
        lines = records_path(paths).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return set()
    return {json.loads(line)["merchant_id"] for line in lines if line.strip()}


def erased_hashes(paths: Paths) -> set[str]:
    """SHA-256 of every erased phone and national id: landing erases a row
    holding one again, whatever its merchant id."""
    try:
        lines = records_path(paths).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return set()
    records = [json.loads(line) for line in lines if line.strip()]
    return {h for r in records for c in STRONG for h in r.get("value_sha256", {}).get(c, [])}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- files


def _rewrite_parquet(con, path: Path, query: str) -> None:
    """Replace `path` by the result of `query` (over view `f`, the file):
    written beside it, fsynced, renamed over it."""
    tmp = path.with_name(path.name + ".erasing")
    con.execute(f"COPY ({query}) TO '{_sql(str(tmp))}' (FORMAT parquet)")
    os.chmod(tmp, PRIVATE_FILE)
    fsync_file(tmp)
    os.rename(tmp, path)
    fsync_dir(path.parent)


def _sql(text: str) -> str:
    return text.replace("'", "''")


def _view(con, path: Path) -> list[str]:
    con.execute(
        f"CREATE OR REPLACE VIEW f AS SELECT * FROM read_parquet('{_sql(str(path))}', hive_partitioning = false)"
    )
    return [d[0] for d in con.execute("SELECT * FROM f LIMIT 0").description]


def _csv_line(fields: list[str | None]) -> str:
    """A row's raw text as landing writes it: RFC 4180 quoting where needed."""
    out = []
    for f in fields:
        if f is None:
            out.append("")
        elif _QUOTE.search(f):
            out.append('"' + f.replace('"', '""') + '"')
        else:
            out.append(f)
    return ",".join(out)


def _fields(raw_text: str) -> list[str]:
    return next(csv.reader(io.StringIO(raw_text)), [])


def _delivered_header(paths: Paths, file_rel: str | None, cache: dict) -> list[str] | None:
    """The header of a delivered file (its path relative to the drop), if it is still there."""
    if file_rel not in cache:
        cache[file_rel] = None
        path = paths.drop / file_rel if file_rel else None
        if path is not None and path.is_file():
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", newline="") as fh:
                cache[file_rel] = next(csv.reader(fh), None)
    return cache[file_rel]


# --------------------------------------------------------------------------- places


def _restricted(con, paths: Paths, merchant: str, values: dict, changed: list) -> None:
    for path in sorted((paths.restricted / PII_TABLE).glob("ds=*/*.parquet")):
        _view(con, path)
        rows = con.execute(
            f"SELECT {', '.join(contract.PII_COLUMNS)} FROM f WHERE merchant_id = ?", [merchant]
        ).fetchall()
        if not rows:
            continue
        for row in rows:
            _collect(values, dict(zip(contract.PII_COLUMNS, row, strict=True)))
        _rewrite_parquet(con, path, f"SELECT * FROM f WHERE merchant_id IS DISTINCT FROM '{_sql(merchant)}'")
        changed.append({"place": "restricted", "file": _rel(paths, path), "rows_dropped": len(rows)})


def _quarantine(con, paths: Paths, merchant: str, values: dict, changed: list) -> None:
    headers: dict = {}
    for path in sorted((paths.quarantine / "merchants").glob("ds=*/*.parquet")):
        strong = set().union(*(values.get(c, set()) for c in STRONG))
        columns = _view(con, path)
        con.execute("CREATE OR REPLACE TABLE q AS SELECT * FROM f")  # rowid: the file's row order
        rows = con.execute("SELECT rowid, file, raw_text FROM q WHERE raw_text IS NOT NULL").fetchall()
        new_text: dict[int, str | None] = {}
        for rowid, file_rel, raw_text in rows:
            fields = _fields(raw_text)
            if merchant not in fields and not (set(fields) & strong):
                continue
            header = _delivered_header(paths, file_rel, headers)
            if header is None and len(fields) == len(contract.MERCHANTS):
                header = contract.column_names("merchants")
            if header is None or len(header) != len(fields):
                if merchant not in fields:
                    continue
                # which field is which is unknown: the whole text goes
                new_text[rowid] = None
                continue
            row = dict(zip(header, fields, strict=True))
            if row.get("merchant_id") != merchant and not _same_person(row, values):
                continue
            _collect(values, {c: row.get(c) for c in contract.PII_COLUMNS})
            new_text[rowid] = _csv_line(
                [None if h in contract.PII_COLUMNS else f for h, f in zip(header, fields, strict=True)]
            )
        if not new_text:
            continue
        con.execute("CREATE OR REPLACE TABLE erased_text (rid BIGINT, raw_text VARCHAR)")
        con.executemany("INSERT INTO erased_text VALUES (?, ?)", list(new_text.items()))
        select = ", ".join(
            "CASE WHEN e.rid IS NULL THEN q.raw_text ELSE e.raw_text END AS raw_text" if c == "raw_text" else f"q.{c}"
            for c in columns
        )
        _rewrite_parquet(
            con,
            path,
            f"SELECT {select} FROM (SELECT *, rowid AS _rid FROM q) q LEFT JOIN erased_text e ON e.rid = q._rid "
            "ORDER BY q._rid",
        )
        changed.append({"place": "quarantine", "file": _rel(paths, path), "rows_changed": len(new_text)})


def _same_person(row: dict, values: dict) -> bool:
    """A row under another merchant id (a malformed or mistyped one) holding the
    merchant's phone or national id: the same person's data, erased with it.
    A name alone is not enough: names repeat."""
    return any(row.get(c) and row[c] in values.get(c, set()) for c in STRONG)


def _held(con, paths: Paths, merchant: str, values: dict, changed: list) -> None:
    for path in sorted(paths.held.glob("*/ds=*/*.parquet")):
        columns = _view(con, path)
        personal = [c for c in contract.PII_COLUMNS if c in columns]
        if not personal or "merchant_id" not in columns:
            continue  # the case today: held rows are credit events and employment reports
        rows = con.execute(f"SELECT {', '.join(personal)} FROM f WHERE merchant_id = ?", [merchant]).fetchall()
        if not rows:
            continue
        for row in rows:
            _collect(values, dict(zip(personal, row, strict=True)))
        m = _sql(merchant)
        select = ", ".join(
            f"CASE WHEN merchant_id = '{m}' THEN NULL ELSE {c} END AS {c}" if c in personal else c for c in columns
        )
        _rewrite_parquet(con, path, f"SELECT {select} FROM f")
        changed.append({"place": "held", "file": _rel(paths, path), "rows_changed": len(rows)})


def _drop_files(paths: Paths, merchant: str, values: dict) -> list[str]:
    """The delivered merchants files still holding the merchant's personal data (read, never changed)."""
    holding = []
    for path in sorted(paths.drop.glob("merchants/ds=*/merchants.csv*")):
        opener = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8", newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                found = False
                for fields in reader:
                    if merchant not in fields:
                        continue
                    row = dict(zip(header, fields, strict=False))
                    if row.get("merchant_id") != merchant:
                        continue
                    personal = {c: row.get(c) for c in contract.PII_COLUMNS}
                    if any(personal.values()):
                        _collect(values, personal)
                        found = True
        except (OSError, UnicodeDecodeError, csv.Error, EOFError):
            continue  # a delivery landing refused as unreadable: not ours to judge here
        if found:
            holding.append(str(path.relative_to(paths.drop)))
    return holding


# Text files that can quote a delivered line: a landing failure's message (up to 60
# characters of a malformed line), and the same message where it was also logged or
# alerted: alerts.log and Airflow's task logs in the home (AIRFLOW_HOME's default).
TEXT_PLACES = {
    "landing_failures": ("landing_failures", "*/ds=*/*.json"),
    "alerts": (".", "alerts.log*"),
    "airflow_logs": ("airflow/logs", "**/*.log"),
}


def _text_files(paths: Paths, values: dict, changed: list) -> None:
    texts = sorted({v for vs in values.values() for v in vs}, key=len, reverse=True)
    if not texts:
        return
    # a JSON file may hold a value as written or \u-escaped
    forms = {t: {t, json.dumps(t)[1:-1]} for t in texts}
    for place, (folder, pattern) in TEXT_PLACES.items():
        root = paths.home / folder
        for path in sorted(root.glob(pattern)) if root.is_dir() else []:
            if not path.is_file():
                continue
            try:
                body = path.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                continue
            new = body
            for t in texts:
                for form in forms[t]:
                    new = new.replace(form, ERASED)
            if new == body:
                continue
            tmp = path.with_name(path.name + ".erasing")
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(new)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, path.stat().st_mode & 0o777)
            os.rename(tmp, path)
            fsync_dir(path.parent)
            changed.append({"place": place, "file": _rel(paths, path)})


def _collect(values: dict, found: dict) -> None:
    for column, value in found.items():
        for v in value if isinstance(value, list) else [value]:
            if v:
                values.setdefault(column, set()).add(v)


def _rel(paths: Paths, path: Path) -> str:
    return str(path.relative_to(paths.home))


# --------------------------------------------------------------------------- retention (publishing/retention.py)


def has_raw_text(quarantine_file: Path) -> bool:
    con = duckdb.connect()
    try:
        _view(con, quarantine_file)
        return con.execute("SELECT count(raw_text) FROM f").fetchone()[0] > 0
    finally:
        con.close()


def purge_raw_text(quarantine_file: Path) -> None:
    """The quarantine file with every row's raw text null (the personal data it
    may hold); rule, line, detail and the rest stay. Atomic (rewrite, rename)."""
    con = duckdb.connect()
    try:
        columns = _view(con, quarantine_file)
        select = ", ".join("CAST(NULL AS VARCHAR) AS raw_text" if c == "raw_text" else c for c in columns)
        _rewrite_parquet(con, quarantine_file, f"SELECT {select} FROM f")
    finally:
        con.close()


# --------------------------------------------------------------------------- the command


def erase(paths: Paths, merchant: str, reason: str, by: str | None = None, now: dt.datetime | None = None) -> dict:
    """Erase `merchant`'s personal data from the home and append the erasure
    record; returns the record. Idempotent: erasing again changes nothing
    more and records that it found nothing."""
    if not merchant.strip() or not reason.strip():
        raise ValueError("a merchant id and a reason are required")
    values: dict[str, set[str]] = {}
    changed: list[dict] = []
    with source_lock(paths, "merchants"):
        con = duckdb.connect()
        try:
            drop_files = _drop_files(paths, merchant, values)
            _restricted(con, paths, merchant, values, changed)
            _quarantine(con, paths, merchant, values, changed)
            _held(con, paths, merchant, values, changed)
        finally:
            con.close()
        _text_files(paths, values, changed)
        record = {
            "erased_at": (now or dt.datetime.now(dt.UTC)).isoformat(),
            "merchant_id": merchant,
            "by": by or getpass.getuser(),
            "reason": reason,
            "changed": changed,
            "places_checked": ["restricted", "quarantine", "held", *TEXT_PLACES],
            "drop_files_holding_data": drop_files,
            "value_sha256": {c: sorted(sha256(v) for v in vs) for c, vs in sorted(values.items())},
        }
        _append(records_path(paths), record)
    return record


def _append(path: Path, record: dict) -> None:
    """Append one line to the audit trail and make it durable (the file is never rewritten)."""
    new = not path.parent.exists()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if new:
        fsync_dir(path.parent.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        os.write(fd, (json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
