"""Hostile and broken input: every problem is listed with its path and reason; the rest is scanned."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from exhunt.cli import app
from exhunt.scan import ScanOptions, scan
from tests.conftest import INSTALL, SHARED, httpproxy_log, iis_log, write

HP = f"{INSTALL}/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG"
runner = CliRunner()


def build_broken_collection(root: Path) -> dict[str, str]:
    """A collection holding one of each kind of bad file next to good evidence; returns path -> expected reason."""
    expected = {}
    write(root, HP, httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "AnchorMailbox": "ServerInfo~a]@x:444/mapi/emsmdb/?#",
                                    "ClientIpAddress": "130.255.189.21", "HttpStatus": "200"}]))  # fmt: skip
    empty = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210301.log"
    write(root, empty, b"")
    expected[empty] = "empty file"
    binary = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210302.log"
    write(root, binary, bytes(range(256)) * 64)
    expected[binary] = "binary content"
    long_line = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
    body = iis_log([
        "2021-03-03 01:00:00 10.0.0.5 GET /owa/" + "A" * (10 << 20) + " - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9",
        "2021-03-03 01:00:01 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31",
    ])  # fmt: skip
    write(root, long_line, body)
    evtx = SHARED / "data" / "evtx" / "DE_1102_security_log_cleared.evtx"
    if evtx.exists():
        write(root, "EXCH01/EventLogs/Security.evtx", evtx.read_bytes()[:99_632])
        expected["EXCH01/EventLogs/Security.evtx"] = "truncated EVTX"
    return expected


def test_broken_collection_scans_to_completion(collection: Path):
    expected = build_broken_collection(collection)
    result = scan(collection)
    reasons = {e["path"]: e["reason"] for e in result.errors}
    for path, why in expected.items():
        assert why in reasons.get(path, ""), (path, reasons)
    rules = {f.rule.id for f in result.findings}
    assert {
        "proxylogon-ssrf-anchor",
        "proxylogon-ecp-js-post",
    } <= rules  # the good evidence, incl. after the 10 MB line
    iis = next(c for c in result.coverage if c.family == "log_iis")
    assert iis.records == 2
    if "EXCH01/EventLogs/Security.evtx" in expected:
        assert next(c for c in result.coverage if c.family == "events").records == 95
        assert "log-cleared" in rules


def test_zip_with_parent_paths_is_scanned_and_the_bad_members_listed(collection: Path, tmp_path: Path):
    build_broken_collection(collection)
    z = tmp_path / "triage.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in collection.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(collection).as_posix())
        zf.writestr("../../outside.aspx", "<%eval%>")
    result = scan(z)
    assert {
        "path": "../../outside.aspx",
        "line": None,
        "reason": "unsafe path in zip (absolute or '..'): not read",
    } in result.errors
    assert result.verdict == "COMPROMISED"


def test_cli_missing_path_and_bad_zip_exit_2_with_one_line(tmp_path: Path):
    res = runner.invoke(app, ["scan", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert "no such file or folder" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04garbage")
    res = runner.invoke(app, ["scan", str(bad)])
    assert res.exit_code == 2 and "cannot read zip" in res.output and "Traceback" not in res.output


def test_cli_json_to_stdout_is_pure_json(collection: Path):
    build_broken_collection(collection)
    res = runner.invoke(app, ["scan", str(collection), "--json", "-", "-q"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "COMPROMISED" and doc["schema_version"] == "1.0"
    ev = doc["findings"][0]["evidence"][0]
    assert set(ev) >= {"path", "line", "record", "raw"} and "\\" not in ev["path"]
    assert all({"path", "line", "reason"} <= set(e) for e in doc["errors"])


def test_case_database_must_not_be_written_into_the_evidence(collection: Path):
    write(collection, HP, httpproxy_log([]))
    res = runner.invoke(app, ["scan", str(collection), "--case", str(collection / "case.duckdb")])
    assert res.exit_code == 2 and "outside the evidence folder" in res.output
    assert not (collection / "case.duckdb").exists()


@pytest.mark.parametrize("case", [False, True])
def test_field_names_spelled_like_provenance_columns(collection: Path, tmp_path: Path, case: bool):
    """#Fields is written by whoever wrote the log: `_line` or `_artifact` must not clash with exhunt's own."""
    hostile = ("#Software: Microsoft Exchange Server\n#Log-type: HttpProxy Logs\n"
               "#Fields: DateTime,_line,_artifact,_ts,,AnchorMailbox\n"
               "2021-03-03T01:00:00.000Z,x,y,z,blank!,ServerInfo~a]@x:444/mapi/?#\n")  # fmt: skip
    write(collection, HP, hostile)
    result = scan(collection, ScanOptions(all_evidence=True, case=tmp_path / "c.duckdb" if case else None))
    assert result.errors == []
    (finding,) = [f for f in result.findings if f.rule.id == "proxylogon-ssrf-anchor"]
    ev = finding.evidence[0]
    assert (ev.path, ev.line) == (HP, 4)
    assert {"field_line": "x", "field_artifact": "y", "field_ts": "z", "blank": "blank!"}.items() <= ev.record.items()


def test_a_batch_the_store_refuses_is_reported_and_the_rest_scanned(collection: Path, monkeypatch):
    from exhunt.spool import Lane

    build_broken_collection(collection)
    real = Lane._write

    def refuse_iis(self, table, batch):
        if table == "log_iis":
            raise pa.ArrowInvalid("simulated refusal")
        return real(self, table, batch)

    monkeypatch.setattr(Lane, "_write", refuse_iis)  # the default scan spools its records
    result = scan(collection)
    refused = [e for e in result.errors if "records not stored: ArrowInvalid: simulated refusal" in e["reason"]]
    assert [e["path"] for e in refused] == ["EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"]
    assert "proxylogon-ssrf-anchor" in {f.rule.id for f in result.findings}  # HttpProxy evidence still judged


def test_a_rule_that_fails_on_the_data_is_reported_and_the_rest_run(collection: Path):
    import dataclasses

    from exhunt.rules.model import load_rules

    build_broken_collection(collection)
    good = load_rules()
    broken = dataclasses.replace(good[0], id="broken-rule", source="iis", where=None, python=None,
                                 sql="CAST(t.\"cs-method\" AS INTEGER) > 1")  # 'GET' cannot be an integer # fmt: skip
    result = scan(collection, ScanOptions(rules=[broken, *good]))
    assert any(e["reason"].startswith("rule broken-rule failed: Conversion Error") for e in result.errors)
    assert result.verdict == "COMPROMISED"


def test_a_failure_after_parsing_is_reported_and_the_scan_finishes(collection: Path, monkeypatch):
    """Rows fail between parsing and the store (here: the reader-side time): the files are named in
    errors[] and the reader thread carries on, instead of dying and leaving the scan waiting."""
    import exhunt.reader

    build_broken_collection(collection)
    real = exhunt.reader.log_time

    def fail_on_iis(rows, family):
        if "cs-method" in rows.column_names:
            raise RuntimeError("simulated")
        return real(rows, family)

    monkeypatch.setattr(exhunt.reader, "log_time", fail_on_iis)
    result = scan(collection)
    failed = [e for e in result.errors if "rows not stored: RuntimeError: simulated" in e["reason"]]
    assert {e["path"] for e in failed} == {"EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"}
    assert "proxylogon-ssrf-anchor" in {f.rule.id for f in result.findings}


def test_a_hostile_fields_list_costs_only_its_own_file(collection: Path):
    """One IIS log whose #Fields names 10,003 fields beside a normal attack log: the hostile file is
    listed with the limit, and the rest of the family is stored and judged (before: every IIS record
    of the scan was "not stored" and the attack missed)."""
    wide = "#Fields: " + " ".join(f"x-f{i}" for i in range(10_003))
    write(collection, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210302.log",
          "#Software: Microsoft Internet Information Services 10.0\n" + wide + "\n" + " ".join(["v"] * 10_003) + "\n")  # fmt: skip
    write(collection, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log",
          iis_log(["2021-03-03 01:00:01 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 - 200 0 0 31"]))  # fmt: skip
    result = scan(collection)
    assert "proxylogon-ecp-js-post" in {f.rule.id for f in result.findings}
    hostile = [e["reason"] for e in result.errors if e["path"].endswith("u_ex210302.log")]
    assert any("10,003 fields" in r for r in hostile), result.errors
    assert not any("not stored" in e["reason"] for e in result.errors)


def test_a_stray_carriage_return_in_an_evidence_row_does_not_abort_the_scan(collection: Path):
    """A damaged HttpProxy line (a bare CR inside an unquoted value) that is itself the evidence of an
    SSRF finding: before, re-splitting it ended the whole scan with "new-line character seen in
    unquoted field"."""
    log = httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "AnchorMailbox": "ServerInfo~a]@x.local:444/ecp/y.js#",
                          "ClientIpAddress": "130.255.189.21", "UserAgent": "python\rrequests", "HttpStatus": "200"}])  # fmt: skip
    write(collection, "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG", log, crlf=False)  # fmt: skip
    result = scan(collection)
    (finding,) = [f for f in result.findings if f.rule.id == "proxylogon-ssrf-anchor"]
    assert finding.evidence and "ServerInfo~" in (finding.evidence[0].raw or "")
