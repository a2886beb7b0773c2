"""Great Expectations imports in any process. With pyspark installed (the `spark` target),
GX imports pyspark.sql.connect, and pyspark without its Connect dependencies calls
sys.exit(0) where __main__ has no file: `python -c`, pytest-xdist's workers. That
stopped every gate of a CI run (2026-12-08) until pyspark[connect] joined the lock."""

from __future__ import annotations

import subprocess
import sys


def test_great_expectations_imports_where_main_has_no_file():
    done = subprocess.run(
        [sys.executable, "-c", "import great_expectations; print('imported', great_expectations.__version__)"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported 1.24" in done.stdout, done.stderr[-2000:]
