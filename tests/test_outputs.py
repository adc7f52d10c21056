"""Outputs never land on evidence or on someone else's file; temporary cases are removed on Ctrl-C
and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from exhunt.cli import app
from tests.conftest import iis_log, write

runner = CliRunner()
LOG = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
ATTACK = iis_log(["2021-03-03 04:11:58 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 Mozilla/5.0 - 200 0 0 9"])


@pytest.fixture
def evidence(collection: Path) -> Path:
    write(collection, LOG, ATTACK)
    return collection


def _scan(*args: str):
    return runner.invoke(app, ["scan", *args, "-q"])


def test_json_inside_the_collection_is_refused_and_the_log_kept(evidence: Path):
    log = evidence / LOG
    before = log.read_bytes()
    for opt in (["--json", str(log)], ["--out", f"json={log}"], ["--json", str(evidence / "new.json")]):
        res = _scan(str(evidence), *opt)
        assert res.exit_code == 2 and "inside the evidence" in res.output, res.output
    assert log.read_bytes() == before
    assert not (evidence / "new.json").exists()


def test_an_existing_file_is_replaced_only_when_it_is_exhunt_output_or_forced(evidence: Path, tmp_path: Path):
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    res = _scan(str(evidence), "--json", str(mine))
    assert res.exit_code == 2 and "not an earlier exhunt json output" in res.output
    assert mine.read_text() == '{"my": "notes"}'
    assert _scan(str(evidence), "--json", str(mine), "--force").exit_code == 1
    assert json.loads(mine.read_text())["schema"] == "exhunt.scan"
    assert _scan(str(evidence), "--json", str(mine)).exit_code == 1  # an earlier exhunt result: replaced
    res = _scan(str(evidence), "--json", str(mine), "--out", f"json={mine}")
    assert res.exit_code == 2 and "given to both" in res.output


def test_an_html_report_is_replaced_on_a_rerun_but_a_foreign_page_is_not(evidence: Path, tmp_path: Path):
    report = tmp_path / "report.html"
    assert _scan(str(evidence), "--out", f"html={report}").exit_code == 1
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html><!-- exhunt.report: ")
    assert _scan(str(evidence), "--out", f"html={report}").exit_code == 1  # exhunt's own report: replaced
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><!-- exhunt.report is mentioned later --><p>mine</p>")
    res = _scan(str(evidence), "--out", f"html={page}")
    assert res.exit_code == 2 and "refusing to overwrite" in res.output and "mine" in page.read_text()


def test_case_refuses_a_users_own_duckdb_and_look_alikes(evidence: Path, tmp_path: Path):
    own = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(own))
    con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)")  # even a meta table without exhunt's id
    con.execute("CREATE TABLE sales AS SELECT 42 AS amount")
    con.close()
    look_alike = tmp_path / "fake.duckdb"
    look_alike.write_bytes(b"\x00" * 8 + b"DUCK" + b"\x00" * 4084)
    for target in (own, look_alike):
        before = target.read_bytes()
        res = _scan(str(evidence), "--case", str(target))
        assert res.exit_code == 2 and "not a DuckDB case file written by exhunt" in res.output, res.output
        assert target.read_bytes() == before
    assert _scan(str(evidence), "--case", str(own), "--force").exit_code == 1
    con = duckdb.connect(str(own), read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_id'").fetchone() == ('"exhunt.case"',)
    con.close()
    assert _scan(str(evidence), "--case", str(own)).exit_code == 1  # now exhunt's: replaced on a re-run


def test_case_never_deletes_an_unrelated_wal(evidence: Path, tmp_path: Path):
    case = tmp_path / "X.duckdb"
    wal = tmp_path / "X.duckdb.wal"
    wal.write_bytes(b"someone else's write-ahead log")
    for extra in ([], ["--force"]):
        res = _scan(str(evidence), "--case", str(case), *extra)
        assert res.exit_code == 2 and ".wal" in res.output, res.output
        assert wal.read_bytes() == b"someone else's write-ahead log"
        assert not case.exists()


def test_a_single_file_scan_keeps_outputs_out_of_its_folder(evidence: Path, tmp_path: Path):
    log = evidence / LOG
    for opt in (["--case", str(log.parent / "case.duckdb")], ["--json", str(log.parent / "r.json")]):
        res = _scan(str(log), *opt)
        assert res.exit_code == 2 and "inside the evidence" in res.output, res.output
    assert sorted(p.name for p in log.parent.iterdir()) == [log.name]
    assert _scan(str(log), "--case", str(tmp_path / "c.duckdb")).exit_code == 1


def test_report_refuses_to_overwrite_a_foreign_file(evidence: Path, tmp_path: Path):
    case = tmp_path / "c.duckdb"
    assert _scan(str(evidence), "--case", str(case)).exit_code == 1
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    res = runner.invoke(app, ["report", str(case), "--out", f"json={precious}"])
    assert res.exit_code == 2 and precious.read_text() == "keep me"


SLOW = "rule slow { condition: for any i in (0..filesize) : ( for any j in (0..filesize) : ( uint8(i) == uint8(j) + 200 ) ) }"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_temporary_case_is_removed_after_sigterm_and_ctrl_c(evidence: Path, tmp_path: Path, sig):
    """A scan held ~10 s in a slow user YARA rule is killed while its temporary case exists."""
    write(evidence, "EXCH01/C/inetpub/wwwroot/aspnet_client/s.aspx", "<% x %>" + " " * 60_000)
    rule = tmp_path / "slow.yar"
    rule.write_text(SLOW)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "exhunt", "scan", str(evidence), "--yara", str(rule), "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not list(tmp.glob("exhunt-*/case.duckdb")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(tmp.glob("exhunt-*/case.duckdb")), "the scan never created its temporary case"
        time.sleep(0.3)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert list(tmp.iterdir()) == [], list(tmp.rglob("*"))
    assert b"interrupted" in stderr
