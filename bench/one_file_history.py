"""Turn a simulated history of daily deliveries into one delivery per source:
the first delivery of a program carrying its whole history (extracts.md: "The
first delivery of a program is a full load"; credit events: "event_at may be
any time up to the end of ds: the first delivery carries the history").

The one delivery is dated on the history's last date, so that every row's
timestamps are within its ds:

- merchants: a full load, every merchant once (its latest version: greatest
  updated_at, then later ds, then later line, as the warehouse would keep it);
- credit events and employment reports: every delivered row, in delivery
  order (ds, then line), rows that will be quarantined included. An event_id
  repeated on a later day stays a later line of the one file: a harmless
  repeat is still counted once, a conflict still quarantined (the later line);

each with a control file (row_count, sha256, credit events' amount_total over
every row as delivered). The daily folders of the history are removed.

DuckDB reads the daily files as text (all_varchar: nothing is reformatted) and
writes plain CSV.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from program_reporting.core import contract
from program_reporting.core.checksums import sha256_file
from program_reporting.core.settings import SOURCES

# the delivery's rows in the order delivered: the files in date order, each
# file's rows in its order (DuckDB keeps a scan's order while
# preserve_insertion_order is on, its default)
_READ = (
    "read_csv(?, header = true, all_varchar = true, union_by_name = true, filename = '_file', "
    "hive_partitioning = false)"
)

_SELECT = {
    "merchants": f"""
        SELECT * EXCLUDE (_file, _ds, _row, _at) FROM (
            SELECT *, regexp_extract(_file, 'ds=([0-9-]+)', 1) AS _ds, row_number() OVER () AS _row,
                   try_cast(updated_at AS TIMESTAMPTZ) AS _at
            FROM {_READ})
        QUALIFY merchant_id IS NULL
             OR row_number() OVER (PARTITION BY merchant_id ORDER BY _at DESC NULLS LAST, _ds DESC, _row DESC) = 1
        ORDER BY _ds, _row""",
    "credit_events": f"SELECT * EXCLUDE (_file) FROM {_READ}",
    "employment_reports": f"SELECT * EXCLUDE (_file) FROM {_READ}",
}


def deliver_as_one_file(
    drop: Path,
    dates: list[dt.date],
    time_zone: str = "Asia/Shanghai",
    memory_limit: str = "4GB",
    temp_dir: Path | None = None,
) -> dict[str, int]:
    """Replace the daily deliveries of `dates` in `drop` by one delivery per
    source dated max(dates); returns each source's row count."""
    ds = max(dates)
    rows = {}
    con = duckdb.connect(
        config={"memory_limit": memory_limit, **({"temp_directory": str(temp_dir)} if temp_dir else {})}
    )
    try:
        for source in SOURCES:
            files = [
                str(f)
                for d in sorted(dates)
                for f in sorted((drop / source / f"ds={d.isoformat()}").glob(f"{source}.csv*"))
            ]
            staging = drop / source / f".one-file-{ds.isoformat()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            data = staging / contract.data_file_name(source)
            con.execute(f"COPY ({_SELECT[source]}) TO '{data}' (HEADER, DELIMITER ',')", [files])
            # counted on the file as written: what landing will count
            count, total = con.execute(
                "SELECT count(*), sum(try_cast(amount AS DECIMAL(38, 10))) FROM read_csv(?, header = true, "
                "all_varchar = true)"
                if source == "credit_events"
                else "SELECT count(*), NULL FROM read_csv(?, header = true, all_varchar = true)",
                [str(data)],
            ).fetchone()
            control = {
                "source": source,
                "ds": ds.isoformat(),
                "schema_version": contract.SCHEMA_VERSION,
                "row_count": count,
                "sha256": sha256_file(data),
            }
            if source == "credit_events":
                amount = Decimal(total or 0).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
                control["amount_total"] = format(amount, "f")
            control["produced_at"] = dt.datetime.combine(
                ds + dt.timedelta(days=1), dt.time(1, 10), tzinfo=ZoneInfo(time_zone)
            ).isoformat()
            (staging / contract.CONTROL_FILE).write_text(json.dumps(control, indent=2) + "\n")
            for d in dates:
                shutil.rmtree(drop / source / f"ds={d.isoformat()}", ignore_errors=True)
            staging.rename(drop / source / f"ds={ds.isoformat()}")
            rows[source] = count
    finally:
        con.close()
    return rows
