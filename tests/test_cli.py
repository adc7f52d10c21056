"""The command line: help that teaches, exit codes, the case database and queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exhunt.cli import app
from tests.conftest import INSTALL, httpproxy_log, iis_log, write

runner = CliRunner()


@pytest.mark.parametrize(
    "args", [[], ["scan"], ["query"], ["synth"], ["rules"], ["rules", "list"], ["rules", "show"], ["exposure"]]
)
def test_every_command_has_help(args):
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0
    assert "Usage" in res.output and len(res.output) > 200


def test_scan_help_documents_exit_codes():
    out = runner.invoke(app, ["scan", "--help"]).output
    for text in ("0 NO EVIDENCE FOUND", "1 COMPROMISED or SUSPICIOUS", "2 bad usage", "3 INCOMPLETE"):
        assert text in " ".join(out.split())


def test_scan_help_says_what_live_mode_reads_and_its_limits():
    out = " ".join(runner.invoke(app, ["scan", "--help"], env={"COLUMNS": "200"}).output.split())
    for text in (
        "Windows only", "elevated prompt", "HKLM\\SOFTWARE\\Microsoft\\ExchangeServer\\v15\\Setup",
        "applicationHost.config", "share-read", "up to the size it had when listed", "wevtutil epl",
        "nothing is written elsewhere", "no $SI/$FN", "only tested through a stand-in",
    ):  # fmt: skip
        assert text in out, text


def test_clean_server_exits_0_and_case_is_queryable(collection: Path, tmp_path: Path):
    write(collection, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log",
          iis_log(["2021-03-03 01:00:03 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9"]))  # fmt: skip
    write(collection, f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2021030301-1.LOG",
          httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "AnchorMailbox": "SMTP:a@corp.example"}]))  # fmt: skip
    case = tmp_path / "case.duckdb"
    res = runner.invoke(app, ["scan", str(collection), "--case", str(case), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["query", str(case), "SELECT count(*) AS n FROM log_httpproxy", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == {"n": 1}
    res = runner.invoke(app, ["query", str(case), "SELECT path, sha256 FROM artifacts ORDER BY path", "--json"])
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) == 2 and all(len(r["sha256"]) == 64 for r in rows)
    res = runner.invoke(app, ["query", str(case), "SELEC nonsense"])
    assert res.exit_code == 2 and "query failed" in res.output


def test_collection_without_web_logs_is_incomplete(collection: Path):
    write(collection, "EXCH01/C/Windows/notes.txt", "nothing here")
    res = runner.invoke(app, ["scan", str(collection), "-q"])
    assert res.exit_code == 3


def test_rules_list_and_show():
    res = runner.invoke(app, ["rules", "list", "--json"])
    ids = [json.loads(x)["id"] for x in res.stdout.splitlines()]
    assert "proxylogon-ssrf-anchor" in ids
    res = runner.invoke(app, ["rules", "show", "proxylogon-ssrf-anchor"])
    assert res.exit_code == 0 and "ServerInfo~*/autodiscover*" in res.stdout
    res = runner.invoke(app, ["rules", "show", "no-such-rule"])
    assert res.exit_code == 2
    shown = {r["id"]: r for r in map(json.loads, runner.invoke(app, ["rules", "list", "--json"]).stdout.splitlines())}
    assert shown["webshell-tcp-tunnel"]["runs_on"] == ["iis", "httpproxy"]  # a web rule: every log that saw it
    assert shown["proxylogon-ssrf-anchor"]["runs_on"] == ["httpproxy"]


@pytest.mark.parametrize(
    ("option", "name", "content"),
    [
        ("--sigma", "bad.yml", "title: x\ndetection: [unclosed\n"),
        ("--yara", "bad.yar", "rule { broken"),
        ("--ioc", "bad-stix.json", '{"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator"}]}'),
        ("--ioc", "bad-misp.json", '{"Event": {"Attribute": "not a list"}}'),
        ("--ioc", "broken.json", "{not json"),
    ],
)
def test_malformed_rule_and_feed_files_exit_2_naming_the_file(collection: Path, tmp_path: Path, option, name, content):
    write(collection, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", iis_log([]))
    bad = tmp_path / name
    bad.write_text(content)
    res = runner.invoke(app, ["scan", str(collection), option, str(bad), "-q"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert "Traceback" not in res.output and name in res.output
    assert lines[0].startswith("exhunt: error:")


def test_check_sigma_lists_what_cannot_run(tmp_path: Path):
    (tmp_path / "linux.yml").write_text(
        "title: L\nid: 11111111-1111-1111-1111-111111111111\nstatus: test\nlevel: low\n"
        "logsource: {product: linux, category: process_creation}\ndetection: {sel: {Image: /bin/sh}, condition: sel}\n"
    )
    res = runner.invoke(app, ["rules", "check-sigma", str(tmp_path), "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert (
        doc["loaded"] == []
        and doc["skipped"][0]["path"].endswith("linux.yml")
        and "linux" in doc["skipped"][0]["reason"]
    )


def test_only_selected_rules_run(collection: Path):
    write(collection, f"{INSTALL}/Logging/HttpProxy/Ecp/HttpProxy_2021030301-1.LOG",
          httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "AnchorMailbox": "ServerInfo~a]@x:444/mapi/?#",
                          "BackEndCookie": "Server~x/ews/exchange.asmx?a=~1~x", "ClientIpAddress": "10.9.9.9"}]))  # fmt: skip
    res = runner.invoke(app, ["scan", str(collection), "--rule", "proxylogon-ssrf-anchor", "--json", "-", "-q"])
    assert {f["rule"] for f in json.loads(res.stdout)["findings"]} == {"proxylogon-ssrf-anchor"}
    res = runner.invoke(app, ["scan", str(collection), "--rule", "nope", "-q"])
    assert res.exit_code == 2 and "no rule with id nope" in res.output


def test_query_csv_neutralises_formulas(collection: Path, tmp_path: Path):
    write(collection, f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2021030301-1.LOG",
          httpproxy_log([{"DateTime": "2021-03-03T01:00:00.000Z", "UserAgent": "=HYPERLINK(\"http://evil\")"}]))  # fmt: skip
    case = tmp_path / "c.duckdb"
    assert runner.invoke(app, ["scan", str(collection), "--case", str(case), "-q"]).exit_code in (0, 3)
    res = runner.invoke(app, ["query", str(case), "SELECT UserAgent FROM log_httpproxy", "--csv"])
    assert res.exit_code == 0
    assert res.stdout.splitlines() == ["UserAgent", '"\'=HYPERLINK(""http://evil"")"']


def test_error_messages_show_outside_text_inert(tmp_path: Path):
    bad = tmp_path / "[bold]x\x1b[31m.yar"
    bad.write_text("rule { broken")
    res = runner.invoke(app, ["scan", str(tmp_path), "--yara", str(bad), "-q"], color=True)
    assert res.exit_code == 2
    assert "\x1b[31m.yar" not in res.output and "\\x1b[31m.yar" in res.output
    assert "[bold]x" in res.output  # shown literally, not taken as markup


def test_case_option_never_overwrites_a_file_that_is_not_a_case(collection: Path, tmp_path: Path):
    write(collection, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log",
          iis_log(["2021-03-03 01:00:03 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9"]))  # fmt: skip
    precious = tmp_path / "report.json"
    precious.write_text('{"keep": "me"}')
    res = runner.invoke(app, ["scan", str(collection), "--case", str(precious), "-q"])
    assert res.exit_code == 2 and "not a DuckDB case file" in res.output
    assert precious.read_text() == '{"keep": "me"}'
    case = tmp_path / "case.duckdb"
    assert runner.invoke(app, ["scan", str(collection), "--case", str(case), "-q"]).exit_code == 0
    assert runner.invoke(app, ["scan", str(collection), "--case", str(case), "-q"]).exit_code == 0  # re-run replaces it


def test_a_saved_case_prints_the_same_summary_and_every_writer_is_registered(tmp_path: Path):
    from exhunt.synth import generate
    from exhunt.writers import WRITERS

    assert {"json", "terminal", "html", "timesketch", "ecs", "stix", "csv"} <= set(WRITERS)
    root = tmp_path / "EXCH01-triage"
    generate(root, seed=4, users=3, days=2, plant=frozenset({"proxylogon"}))
    case = tmp_path / "c.duckdb"
    first = runner.invoke(
        app, ["scan", str(root), "-q", "--case", str(case), "--out", f"terminal={tmp_path / 'a.txt'}"]
    )
    assert first.exit_code == 1, first.output
    again = runner.invoke(app, ["report", str(case), "--out", f"terminal={tmp_path / 'b.txt'}"])
    assert again.exit_code == 0, again.output
    a, b = (tmp_path / "a.txt").read_text(), (tmp_path / "b.txt").read_text()
    assert "COMPROMISED" in a and a == b
