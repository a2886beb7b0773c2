"""Reading one delivery's data file: checksum, header, and the DuckDB CSV scan.

DuckDB parses (RFC 4180, strict mode, every field VARCHAR); Python only
hashes the bytes and reads the header record. Line numbers are CSV record
numbers with the header as line 1: a quoted field's embedded newlines do not
start a new line, a blank line counts as one line (DuckDB's numbering) but is
not a record and is not delivered.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

CHUNK = 1 << 20
# DuckDB reject error types that are a bad record (quarantined, rule field_count)
# rather than a file that is not parseable CSV (delivery rejected).
FIELD_COUNT_ERRORS = ("TOO MANY COLUMNS", "MISSING COLUMNS")
ENCODING_ERRORS = ("INVALID ENCODING", "INVALID UNICODE")


class CsvError(Exception):
    """The file is not valid UTF-8 or not parseable CSV; `cause` says which."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


@dataclass
class Scan:
    """What a streamed pass over the file's bytes found (run in a thread)."""

    path: Path
    sha256: str = ""
    size: int = 0
    blank_line_inside: bool = False  # a blank line before the last record: line numbers need the slow path
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    _cancelled: bool = field(default=False, repr=False)

    def start(self) -> "Scan":
        self._thread = threading.Thread(target=self._run, name=f"scan-{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> "Scan":
        """Wait for the scan; raises CsvError("unreadable") if the bytes could not be read or inflated."""
        if self._thread:
            self._thread.join()
        if self.error:
            raise CsvError("unreadable", f"cannot read the data file: {self.error}") from self.error
        return self

    def cancel(self) -> None:
        """Stop the scan (the delivery is rejected anyway) and wait for the thread to end."""
        self._cancelled = True
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            # Inflated output is bounded per call (max_length): a gzip bomb streams, never balloons.
            inflate = zlib.decompressobj(wbits=47) if self.path.name.endswith(".gz") else None
            tail = b""
            first_blank = -1  # offset (in text bytes) of the first blank line seen
            last_content = -1  # offset of the last byte that is not a line end
            offset = 0

            def consume(text: bytes) -> None:
                nonlocal tail, first_blank, last_content, offset
                if not text:
                    return
                window = tail + text
                base = offset - len(tail)
                if first_blank < 0:
                    hits = [i for i in (window.find(b"\n\n"), window.find(b"\n\r\n")) if i >= 0]
                    if hits:
                        first_blank = base + min(hits) + 1
                stripped = len(text.rstrip(b"\r\n"))
                if stripped:
                    last_content = offset + stripped - 1
                tail = window[-2:]
                offset += len(text)

            with open(self.path, "rb") as fh:
                while not self._cancelled and (chunk := fh.read(CHUNK)):
                    digest.update(chunk)
                    self.size += len(chunk)
                    if inflate is None:
                        consume(chunk)
                        continue
                    consume(inflate.decompress(chunk, CHUNK))
                    while inflate.unconsumed_tail and not self._cancelled:
                        consume(inflate.decompress(inflate.unconsumed_tail, CHUNK))
                if inflate and not self._cancelled:
                    inflate.flush()
            self.sha256 = digest.hexdigest()
            self.blank_line_inside = 0 <= first_blank < last_content
        except BaseException as exc:  # reported by wait()
            self.error = exc


def open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def read_header(path: Path) -> list[str]:
    """The header record (BOM dropped). Raises CsvError on invalid UTF-8."""
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    try:
        with raw:
            head = raw.read(CHUNK)
    except (OSError, EOFError, zlib.error) as exc:
        raise CsvError("unreadable", f"cannot read the data file: {exc}") from exc
    # Undecodable bytes after the header are DuckDB's to report, with their line.
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape").decode(head, final=False)
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), strict=True), [])
    except csv.Error as exc:
        raise CsvError("unparseable_csv", f"the header is not parseable CSV: {exc}") from exc
    for name in header:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CsvError("invalid_utf8", f"the header is not valid UTF-8 (column {name!r})") from exc
    return header


def record_lines(path: Path) -> list[int]:
    """Line numbers of the non-blank data records, in file order (slow path, pure Python).

    Used only when a blank line sits between records, since DuckDB skips blank
    lines without telling us where they were."""
    lines = []
    with open_text(path) as fh:
        for number, record in enumerate(csv.reader(fh), start=1):
            if number > 1 and record:
                lines.append(number)
    return lines


def scan_csv(con: duckdb.DuckDBPyConnection, path: Path, ncols: int, select: str = "SELECT * FROM ({rows})",
             table: str = "src") -> tuple[int, list[tuple]]:
    """Read the file into `table` through `select` (its {rows}: columns c0..c<n-1>,
    all VARCHAR; a plain projection keeps the file order in rowid). Returns
    (rows read, field-count rejects as (line, raw_text, message)).
    Raises CsvError for invalid UTF-8 or a file that is not parseable CSV."""
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(ncols)) + "}"
    path_sql = str(path).replace("'", "''")
    reader = f"""SELECT * FROM read_csv('{path_sql}',
                columns = {columns}, header = true, auto_detect = false,
                delim = ',', quote = '"', escape = '"', comment = '',
                strict_mode = true, null_padding = false, encoding = 'utf-8',
                compression = 'auto', store_rejects = true,
                rejects_table = 'csv_rejects', rejects_scan = 'csv_reject_scans')"""
    try:
        con.execute(f"""
            CREATE TABLE {table} AS {select.replace("{rows}", reader)}""")
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise CsvError("unparseable_csv", f"not parseable CSV: {first}") from exc
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    errors = con.execute("""
        SELECT line, min(error_type), min(csv_line), min(error_message)
        FROM csv_rejects GROUP BY line ORDER BY line""").fetchall()
    bad = []
    for line, kind, text, message in errors:
        if kind in ENCODING_ERRORS:
            raise CsvError("invalid_utf8", f"not valid UTF-8 at line {line}")
        if kind not in FIELD_COUNT_ERRORS:
            raise CsvError("unparseable_csv", f"not parseable CSV at line {line}: {kind.lower()}: {message}")
        bad.append((line, (text or "").lstrip("\r\n"), message))
    return rows, bad
