"""`program-reporting verify-reports` on reports written by the real code: the
chained index, SHA256SUMS, the dbt docs pages; then each kind of tampering,
on a copy, is caught and named."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest
from helpers.marts import mutate, write_audit

from program_reporting.cli import main
from program_reporting.core.settings import Paths, paths
from program_reporting.publishing.wap import audit_and_publish
from program_reporting.reporting.report import GENESIS, MANIFEST, index_reports, read_manifest, write_report
from program_reporting.warehouse.catalog import DOCS_PAGE

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Paths:
    """r1 published (GX Data Docs, a dbt docs page), r2 withheld by the marts gate
    (Data Docs), r3 withheld with no gate (report.json and report.html only).
    Built once; the tests alter copies."""
    root = tmp_path_factory.mktemp("verify")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAM_REPORTING_DROP", str(root / "drop"))
        mp.setenv("PROGRAM_REPORTING_HOME", str(root / "home"))
        mp.delenv("PROGRAM_REPORTING_WEBHOOK_URL", raising=False)
        p = paths()
        write_audit(p, "r1", "2020-06-05")
        (p.audit / "r1" / DOCS_PAGE).write_text("<!DOCTYPE html><title>dbt docs</title>", encoding="utf-8")
        assert audit_and_publish("r1", "2020-06-05", paths=p, landed=False).published
        db = write_audit(p, "r2", "2020-06-06", bump=1)
        mutate(db, "UPDATE kpi_program_daily SET enrolled_merchants = enrolled_merchants + 7")
        assert not audit_and_publish("r2", "2020-06-06", paths=p, landed=False).published
        write_report("r3", "2020-06-07", [], published=False, reason="dbt_build failed: out of disk", paths=p)
    return p


@pytest.fixture
def home(written, tmp_path, monkeypatch) -> Paths:
    """A writable copy of the written home, PROGRAM_REPORTING_HOME pointing at it."""
    copy = Paths(drop=tmp_path / "drop", home=tmp_path / "home")
    shutil.copytree(written.home, copy.home, symlinks=True)
    for f in copy.home.rglob("*"):
        f.chmod(f.stat().st_mode | stat.S_IWUSR)
    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(copy.home))
    monkeypatch.setenv("PROGRAM_REPORTING_DROP", str(copy.drop))
    return copy


def verify_reports(capsys, *args: str) -> tuple[int, str]:
    code = main(["verify-reports", *args])
    return code, capsys.readouterr().out


def lines(p: Paths) -> list[bytes]:
    return (p.reports / "index.jsonl").read_bytes().splitlines()


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_untouched_reports_verify_and_the_index_is_a_chain(home, capsys):
    index = lines(home)
    assert [json.loads(x)["run_id"] for x in index] == ["r1", "r2", "r3"]
    prevs = [json.loads(x)["prev_sha256"] for x in index]
    assert prevs == [GENESIS, hashlib.sha256(index[0]).hexdigest(), hashlib.sha256(index[1]).hexdigest()]
    # every file of the report is in its SHA256SUMS, which the index line and the published set name
    r1 = home.reports / "r1"
    listed = read_manifest((r1 / MANIFEST).read_bytes())
    assert {"report.json", "report.html", "data_docs/index.html"} <= set(listed)
    assert set(listed) == {f.relative_to(r1).as_posix() for f in r1.rglob("*") if f.is_file()} - {MANIFEST}
    sums = hashlib.sha256((r1 / MANIFEST).read_bytes()).hexdigest()
    assert json.loads(index[0])["sha256sums_sha256"] == sums
    assert json.loads((home.runs / "r1" / "manifest.json").read_text())["report"]["sha256sums_sha256"] == sums
    assert subprocess.run(["sha256sum", "--quiet", "-c", MANIFEST], cwd=r1).returncode == 0
    # the lineage archive the report task adds later is allowed, and said to be uncovered
    (home.reports / "r2" / "lineage").mkdir()
    (home.reports / "r2" / "lineage" / "events.jsonl").write_text("{}\n")

    code, out = verify_reports(capsys)
    assert code == 0, out
    assert "3 reports, 3 index lines, 1 dbt docs pages" in out
    assert f"chain head: {hashlib.sha256(index[2]).hexdigest()}" in out
    assert "1 files added after their report not covered" in out
    assert verify_reports(capsys, "--head", json.loads(index[2])["prev_sha256"])[0] == 0  # an older head


def test_one_byte_altered_in_an_old_report_is_the_first_break(home, capsys):
    r1 = home.reports / "r1"
    page = next(f for f in sorted((r1 / "data_docs").rglob("*.html")) if f.name != "index.html")
    before = hashlib.sha256(page.read_bytes()).hexdigest()
    flip_a_byte(page)
    code, out = verify_reports(capsys)
    assert code == 1
    rel = page.relative_to(home.reports).as_posix()
    assert out.startswith(
        f"FIRST BREAK: index line 1 (run r1): reports/{rel} is altered\n"
        f"    expected {before}\n    found    {hashlib.sha256(page.read_bytes()).hexdigest()}\n"
    ), out
    assert "1 problem(s)" in out
    flip_a_byte(r1 / "report.html")  # a second one: both listed, report.html (the line's own) first
    code, out = verify_reports(capsys)
    assert code == 1 and out.startswith("FIRST BREAK: index line 1 (run r1): reports/r1/report.html is altered")
    assert "2 problem(s)" in out and f"reports/{rel} is altered" in out


def test_a_removed_index_line_breaks_the_chain(home, capsys):
    index = lines(home)
    (home.reports / "index.jsonl").write_bytes(index[0] + b"\n" + index[2] + b"\n")
    code, out = verify_reports(capsys)
    assert code == 1
    assert out.startswith("FIRST BREAK: index line 2 (run r3): does not follow line 1 (its prev_sha256 is no line's")
    assert (
        f"expected {hashlib.sha256(index[0]).hexdigest()}\n    found    {hashlib.sha256(index[1]).hexdigest()}" in out
    )
    assert "reports/r2/: is a report that is not in the index" in out


@pytest.mark.parametrize(
    "tamper, first_break",
    [
        pytest.param(
            "edit_line_1",
            "index line 1 (run r1): the line's reason is not what reports/r1/report.json says",
            id="line edited in place",
        ),
        pytest.param("edit_last_line", "index line 3 (run r3): the line's decision is not what", id="last line edited"),
        pytest.param("folder_gone", "index line 2 (run r2): its report folder reports/r2/ is gone", id="folder gone"),
        pytest.param(
            "extra_file",
            "index line 2 (run r2): reports/r2/data_docs/extra.html was added after the report was written",
            id="extra file",
        ),
        pytest.param("unindexed", "reports/r4/: is a report that is not in the index", id="folder not indexed"),
        pytest.param("report_json", "index line 3 (run r3): reports/r3/report.json is altered", id="report.json"),
        pytest.param("docs_page", "reports/catalog/", id="dbt docs page altered"),
        pytest.param("sums", "index line 1 (run r1): reports/r1/SHA256SUMS is altered", id="SHA256SUMS rewritten"),
    ],
)
def test_tampering_is_caught(home, capsys, tamper, first_break):
    r = home.reports
    index = lines(home)
    if tamper == "edit_line_1":
        edited = json.loads(index[0]) | {"reason": "all checks passed, nothing to see"}
        (r / "index.jsonl").write_bytes(b"\n".join([json.dumps(edited).encode(), *index[1:]]) + b"\n")
    elif tamper == "edit_last_line":
        edited = json.loads(index[2]) | {"decision": "published"}
        (r / "index.jsonl").write_bytes(b"\n".join([*index[:2], json.dumps(edited).encode()]) + b"\n")
    elif tamper == "folder_gone":
        shutil.rmtree(r / "r2")
    elif tamper == "extra_file":
        (r / "r2" / "data_docs" / "extra.html").write_text("<p>added later</p>")
    elif tamper == "unindexed":
        shutil.copytree(r / "r3", r / "r4")
    elif tamper == "report_json":
        path = r / "r3" / "report.json"
        path.write_text(path.read_text().replace("out of disk", "out of luck"))
    elif tamper == "docs_page":
        flip_a_byte(next((r / "catalog").iterdir()))
    elif tamper == "sums":  # a Data Docs file altered and SHA256SUMS made to match: the index names SHA256SUMS
        r1 = r / "r1"
        page = r1 / "data_docs" / "index.html"
        flip_a_byte(page)
        digest = hashlib.sha256(page.read_bytes()).hexdigest()
        sums = [
            f"{digest}  data_docs/index.html" if line.endswith("  data_docs/index.html") else line
            for line in (r1 / MANIFEST).read_text().splitlines()
        ]
        (r1 / MANIFEST).write_text("\n".join(sums) + "\n")
    code, out = verify_reports(capsys)
    assert code == 1
    assert out.startswith(f"FIRST BREAK: {first_break}"), out
    if tamper == "sums":
        assert "1 problem(s)" in out
    if tamper == "edit_line_1":  # and the chain breaks at the next line
        assert "index line 2 (run r2): does not follow line 1" in out


def test_head_catches_the_index_cut_back(home, capsys):
    """The last line and its report removed together leave a consistent index: only a head kept elsewhere tells."""
    head = verify_reports(capsys)[1].split("chain head: ")[1].split()[0]
    index = lines(home)
    (home.reports / "index.jsonl").write_bytes(b"\n".join(index[:2]) + b"\n")
    shutil.rmtree(home.reports / "r3")
    assert verify_reports(capsys)[0] == 0
    code, out = verify_reports(capsys, "--head", head)
    assert code == 1 and "index.jsonl: has no line with the SHA-256 given as --head" in out
    assert verify_reports(capsys, "--head", "not-a-hash")[0] == 2


def test_lines_from_before_the_chain_are_accepted_at_the_top_only(home, capsys):
    """An index written before the chain: its lines have no prev_sha256 (and their
    reports no SHA256SUMS); the next line appended chains to the last of them."""
    index = lines(home)
    legacy = []
    for raw in index[:2]:
        entry = json.loads(raw)
        del entry["prev_sha256"], entry["sha256sums_sha256"]
        legacy.append(json.dumps(entry, ensure_ascii=False).encode())
        os.remove(home.reports / entry["run_id"] / MANIFEST)
    (home.reports / "index.jsonl").write_bytes(b"\n".join(legacy) + b"\n")
    manifest = home.runs / "r1" / "manifest.json"  # the published set, as publish wrote it then
    doc = json.loads(manifest.read_text())
    del doc["report"]["sha256sums_sha256"]
    manifest.write_text(json.dumps(doc))
    assert index_reports(home) == ["r3"]  # r3 was not listed any more: appended, chained
    assert json.loads(lines(home)[2])["prev_sha256"] == hashlib.sha256(legacy[1]).hexdigest()
    code, out = verify_reports(capsys)
    assert code == 0, out
    assert "index lines 1-2 predate the chain" in out and "2 reports predate SHA256SUMS" in out
    # a line without prev_sha256 after the chain began is not accepted
    (home.reports / "index.jsonl").write_bytes(b"\n".join([*lines(home), legacy[0]]) + b"\n")
    code, out = verify_reports(capsys)
    assert code == 1 and "index line 4 (run r1): has no prev_sha256, after lines that have" in out


def test_a_line_cut_short_stays_on_its_own(home, capsys):
    """A write torn by a crash: the next line starts on a line of its own, and verify names the torn one."""
    (home.reports / "index.jsonl").write_bytes(b"\n".join(lines(home)) + b'\n{"prev_sha256": "00')
    write_report("r4", "2020-06-08", [], published=False, reason="killed", paths=home)  # indexes it
    index = lines(home)
    assert len(index) == 5 and json.loads(index[4])["run_id"] == "r4"
    assert json.loads(index[4])["prev_sha256"] == hashlib.sha256(index[3]).hexdigest()
    code, out = verify_reports(capsys)
    assert code == 1 and out.startswith("FIRST BREAK: index line 4: is not a JSON object")


def test_help_says_what_is_checked_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["verify-reports", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "prev_sha256" in out and "SHA256SUMS" in out and "first break" in out
    assert "Examples:\n  program-reporting verify-reports\n" in out and "--head" in out
