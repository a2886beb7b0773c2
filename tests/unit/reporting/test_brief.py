"""The KPI brief's page and charts: escaped, self-contained, the same bytes every time."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

from program_reporting.reporting import brief

DATES = [dt.date(2020, 6, 1) + dt.timedelta(days=i) for i in range(5)]
CHART = (DATES, [("a", [1.0, None, 3.0, None, 5.0]), ("b", [2.0, 2.5, None, 1.0, 1.0])])


def _daily(code: str) -> list[dict]:
    return [
        {
            "program_code": code,
            "as_of_date": d,
            "enrolled_merchants": 10 * i,
            "drawn_to_date": 1000.5 * i,
            "outstanding_balance": 700.25 * i,
            "par30_rate": None if i < 2 else 0.01 * i,
            "jobs_retained": 50 * i,
        }
        for i, d in enumerate(DATES)
    ]


def test_a_chart_is_the_same_bytes_in_every_process():
    here = str(brief._svg("c", "t", *CHART, brief._int, reference=2.0))
    code = (
        "import datetime, sys; from program_reporting.reporting import brief; "
        f"sys.stdout.write(str(brief._svg('c', 't', *{CHART!r}, brief._int, reference=2.0)))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert here == there
    assert here.startswith("<svg ") and "<use " in here  # an isolated point is drawn, not dropped


def test_the_page_escapes_values_and_links_nothing():
    page = brief.render(_daily("<b>X&Y</b>") + _daily("SPARK-2020"), [], {"run_id": "r<1>"})
    assert "<b>X&Y</b>" not in page and "&lt;b&gt;X&amp;Y&lt;/b&gt;" in page and "r&lt;1&gt;" in page
    assert page.count("<section>") == 2 and page.count("<svg ") == 8
    assert "<script" not in page.lower()
    assert not re.findall(r"https?://", page.replace("http://www.w3.org/2000/svg", ""))
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "two charts share an element id"
    assert set(re.findall(r'href="#([^"]+)"', page)) <= set(ids)


def test_drawing_nothing_imports_no_matplotlib():
    code = (
        "import sys; from program_reporting.reporting import brief, report; "
        "brief.render([], [], {}); sys.exit('matplotlib' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_restated_dates_are_marked_under_the_heading_and_on_every_chart():
    restated = {"SPARK-2020": {"2020-06-02": 3, "2020-06-04": 1}}
    page = brief.render(_daily("SPARK-2020") + _daily("PPP-2020"), [], {"run_id": "r1"}, restated)
    marked = re.findall(r'<div class="restated" id="restated-([^"]+)">(.*?)</div>', page, re.S)
    assert [(code, re.findall(r'data-date="([0-9-]+)"', text)) for code, text in marked] == [
        ("SPARK-2020", ["2020-06-02", "2020-06-04"])
    ]
    assert "3 cells" in marked[0][1] and "1 cell)" in marked[0][1]
    spark, ppp = page.split("<section>")[1:]
    # one dotted line per restated date on each of the program's four charts, none on the other program's
    assert spark.count(brief.RESTATED) == 4 * 2 and brief.RESTATED not in ppp
    assert 'id="restated-unknown"' not in page
    # no report to read the restatements from: the page says they are not marked
    assert 'id="restated-unknown"' in brief.render(_daily("SPARK-2020"), [], {"run_id": "r1"})
