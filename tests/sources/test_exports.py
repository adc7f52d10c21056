"""Exports read through field maps, user maps (`--map`), Test-ProxyLogon's files and headerless
fragments: rows land in the family's table under its own columns, rules fire with evidence at the
file's own line, and odd or hostile content is counted, not lost silently."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from exhunt.cli import app
from exhunt.scan import ScanOptions, ScanResult, scan
from exhunt.sources.fieldmap import FieldMap, apply_map, builtin_maps, parse_times
from exhunt.sources.headerless import _csv_rows, infer_iis_fields
from tests.conftest import write


def _scan(root: Path, **kw) -> ScanResult:
    return scan(root, ScanOptions(all_evidence=True, analytics=False, **kw))


def _hits(result: ScanResult) -> dict[str, set[tuple[str, int | None]]]:
    out: dict[str, set[tuple[str, int | None]]] = {}
    for f in result.findings:
        out.setdefault(f.rule.id, set()).update((e.path, e.line) for e in f.evidence)
    return out


def _notes(result: ScanResult) -> list[str]:
    return [n.reason for n in result.notes]


RENAMED = """when,client,verb,path,code,agent
2021-03-03T04:11:58Z,130.255.189.21,POST,/ecp/y.js,200,ExchangeServicesClient/0.0.0.0
2021-03-03T04:12:30Z,10.1.1.7,GET,/owa/,200,Mozilla/5.0
"""
USER_MAP = """name: proxy-export
title: reverse proxy export
family: iis
columns:
  c-ip: client
  cs-method: verb
  cs-uri-stem: path
  sc-status: code
  cs(User-Agent): agent
time: when
"""


def test_a_user_map_reads_a_renamed_export_and_is_recorded(collection: Path, tmp_path: Path):
    write(collection, "exports/web.csv", RENAMED)
    mapfile = write(tmp_path, "map.yaml", USER_MAP, crlf=False)
    result = _scan(collection, maps=[mapfile])
    assert ("exports/web.csv", 2) in _hits(result)["proxylogon-ecp-js-post"]
    ev = next(e for f in result.findings if f.rule.id == "proxylogon-ecp-js-post" for e in f.evidence)
    assert ev.raw.startswith("2021-03-03T04:11:58Z,130.255.189.21,POST") and ev.record["cs-uri-stem"] == "/ecp/y.js"
    assert any("field map used for 1 file(s): proxy-export" in n for n in _notes(result))
    assert any("proxy-export" in n for c in result.coverage for n in c.notes)
    without = _scan(collection)  # the same file without the map is no IIS log
    assert "proxylogon-ecp-js-post" not in _hits(without)


def test_a_reduced_export_is_read_and_says_which_rules_it_cannot_feed(collection: Path, tmp_path: Path):
    write(collection, "web.csv", "timestamp,urlpath,useragent\n2021-03-03T04:11:58Z,/ecp/y.js,python-requests/2.25\n")
    mapfile = write(
        tmp_path, "m.yaml", "family: iis\ncolumns: {cs-uri-stem: urlpath, cs(User-Agent): useragent}\ntime: timestamp\n"
    )
    result = _scan(collection, maps=[mapfile])
    assert [c.records for c in result.coverage if c.family == "log_iis"] == [1]
    assert result.verdict != "INCOMPLETE"
    assert any("leaves columns empty" in w for w in result.warnings)
    assert any("cs-method" in n and "sc-status" in n for n in _notes(result))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("family: nosuch\ncolumns: {a: b}\n", "not a log family"),
        ("family: iis\n", "columns"),
        ("a: &x [1]\nb: *x\n", "aliases"),
        ("family: httpproxy\ncolumns: {UrlStem: a}\nfields: [a, A]\n", "distinct field names"),
    ],
)
def test_a_bad_user_map_is_a_usage_error(collection: Path, tmp_path: Path, text: str, why: str):
    mapfile = write(tmp_path, "bad.yaml", text, crlf=False)
    res = CliRunner().invoke(app, ["scan", str(collection), "--map", str(mapfile), "-q"])
    assert res.exit_code == 2 and why in res.output


TPL_26855 = (
    "#TYPE Selected.System.Management.Automation.PSCustomObject\n"
    '"DateTime","RequestId","ClientIPAddress","UrlHost","UrlStem","RoutingHint","UserAgent","AnchorMailbox","HttpStatus"\n'
    '"2021-03-03T04:11:58.123Z","5f1e","130.255.189.21","mail.contoso.com","/ecp/y.js","","python-requests/2.25.1",'
    '"ServerInfo~a]@EXCH01.contoso.local:444/ecp/DDI/DDIService.svc/GetList?x=","200"\n'
)
TPL_26857 = (
    "#TYPE Selected.System.Diagnostics.Eventing.Reader.EventLogRecord\n"
    '"TimeCreated","MachineName","Message"\n'
    '"3/3/2021 4:14:39 AM","EXCH01.contoso.local","An unhandled exception occurred: System.InvalidCastException: cast\n'
    '   at Microsoft.Exchange.UM.UMCore.PipelineContext.Deserialize(Byte[] data)"\n'
)


def test_test_proxylogon_outputs_become_rows_of_their_families(collection: Path):
    write(collection, "TPL/EXCH01-Cve-2021-26855.csv", TPL_26855)
    write(collection, "TPL/EXCH01-Cve-2021-26857.csv", TPL_26857)
    write(
        collection,
        "TPL/EXCH01-Cve-2021-26858.log",
        "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Logging\\OABGeneratorLog\\OABGeneratorLog_20210303-1.LOG\n",
    )
    result = _scan(collection)
    hits = _hits(result)
    assert ("TPL/EXCH01-Cve-2021-26855.csv", 3) in hits["proxylogon-ssrf-anchor"]
    assert ("TPL/EXCH01-Cve-2021-26857.csv", 3) in hits["proxylogon-um-deserialization"]
    ev = next(e for f in result.findings if f.rule.id == "proxylogon-um-deserialization" for e in f.evidence)
    assert ev.time == datetime(2021, 3, 3, 4, 14, 39)
    listed = [p for p in result.problems if p.path.endswith("26858.log")]
    assert listed and "collect it" in listed[0].reason and listed[0].line == 1
    assert result.verdict == "COMPROMISED"


def test_exports_are_recognised_by_content_not_by_name(collection: Path):
    splunk = (
        '"_time","sourcetype","c_ip","cs_method","cs_uri_stem","sc_status","cs_User_Agent_"\n'
        '"2021-03-03T04:11:58.000+00:00","ms:iis:auto","130.255.189.21","POST","/ecp/y.js","200","x"\n'
    )
    write(collection, "renamed.txt", splunk)
    write(collection, "other.csv", '"_time","sourcetype","host"\n"2021-03-03T04:11:58.000+00:00","x","y"\n')
    result = _scan(collection)
    assert ("renamed.txt", 2) in _hits(result)["proxylogon-ecp-js-post"]
    assert [c.files for c in result.coverage if c.family == "log_iis"] == [1]


def test_elastic_json_lines_odd_and_hostile_lines_are_counted(collection: Path):
    doc = {"@timestamp": "2021-03-03T04:11:58.000Z", "source": {"address": "130.255.189.21"},
           "url": {"path": "/ecp/y.js"}, "http": {"request": {"method": "POST"}, "response": {"status_code": 200}}}  # fmt: skip
    deep: dict = {"x": "y"}
    for _ in range(200):
        deep = {"d": deep}
    lines = [
        json.dumps(doc),
        "this is not json",
        json.dumps({**doc, "url": {"path": "/owa/auth/x.aspx"}, "user_agent": {"original": "A" * 300_000}}),
        json.dumps(
            {"@timestamp": "2021-03-03T05:00:00Z", "source": {"address": "1.2.3.4"}, "url": {"path": "/"}, **deep}
        ),
        "",
        json.dumps({**doc, "http": {"response": {"status_code": "-"}}})[:-5],  # cut short
    ]
    write(collection, "export/filebeat.ndjson", "\n".join(lines))
    result = _scan(collection)
    assert ("export/filebeat.ndjson", 1) in _hits(result)["proxylogon-ecp-js-post"]
    assert ("export/filebeat.ndjson", 3) in _hits(result)["webshell-access"]
    bad = [p for p in result.problems if p.path == "export/filebeat.ndjson"]
    assert [p.line for p in bad] == [2, 6] and all("not JSON objects skipped" in p.reason for p in bad)
    assert [c.records for c in result.coverage if c.family == "log_iis"] == [3]
    assert any(n.path.endswith("filebeat.ndjson") and "(line 6) has no line end" in n.reason for n in result.notes)


@given(st.lists(st.text(alphabet=",\"a \t\r\x00;\\'é\x1c\x85\u2028", max_size=30), min_size=1, max_size=10))
def test_sample_rows_of_a_headerless_fragment_are_those_of_the_csv_module(lines: list[str]):
    """The fast split of the sample lines binds the same columns the csv module would."""
    import csv

    try:
        want = list(csv.reader(lines))
    except csv.Error:
        want = []
    assert _csv_rows(lines) == want


def test_headerless_iis_fragments_of_each_default_field_set(collection: Path):
    iis75 = "2021-03-03 04:15:02 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 python-requests/2.25.1 200 0 0 31"
    full = (
        "2021-03-03 04:16:00 W3SVC1 EXCH01 10.0.0.5 POST /owa/auth/x.aspx - 443 - 130.255.189.21 HTTP/1.1 "
        "python-requests/2.25.1 - - mail.contoso.com 200 0 0 512 300 15"
    )
    write(collection, "notes/excerpt.log", f"--- copied from the server ---\n{iis75}\n\n{full}\n{full}\n")
    result = _scan(collection)
    hits = _hits(result)
    assert ("notes/excerpt.log", 2) in hits["proxylogon-ecp-js-post"]
    assert ("notes/excerpt.log", 4) in hits["webshell-access"]
    notes = _notes(result)
    assert any("iis-7.5-default" in n for n in notes) and any("iis-all-fields" in n for n in notes)
    assert any("1 line(s) that are not log rows" in n and ": 1" in n for n in notes)
    assert any("fields inferred" in n for c in result.coverage for n in c.notes)


def test_infer_iis_fields_refuses_lines_that_fit_no_set():
    assert infer_iis_fields(["2021-03-03 04:15:02 a b c"]) is None
    assert infer_iis_fields(["hello world"]) is None
    row = "2021-03-03 04:15:02 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 31"
    assert infer_iis_fields([row]).name == "iis-8.5-10-default"


EXCHANGE_NO_FIELDS = """#Software: Microsoft Exchange Server
#Version: 15.01.2106.002
#Log-type: ECP Server Log
#Date: 2021-03-03T00:00:00.000Z
#Note: the header was removed by the collection script
2021-03-03T05:20:01.000Z,EXCH01,ECP.Request,"S:CMD=Set-OabVirtualDirectory.ExternalUrl='http://f/<script language=""JScript"" runat=""server"">function Page_Load(){}</script>'.Identity='OAB (Default Web Site)';S:URL=/ecp/DDI/DDIService.svc/SetObject"
=========
2021-03-03T05:21:01.000Z,EXCH01
"""


def test_exchange_log_without_fields_gets_its_family_list(collection: Path):
    write(collection, "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/ECP/Server/ECPServer1.LOG",
          EXCHANGE_NO_FIELDS)  # fmt: skip
    result = _scan(collection)
    path = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/ECP/Server/ECPServer1.LOG"
    assert (path, 6) in _hits(result)["proxylogon-vdir-script-ecp"]
    assert [c.records for c in result.coverage if c.family == "log_ecp_server"] == [2]
    assert any("2 line(s) that are not log rows" in n for n in _notes(result))  # the #Note and the ==== line


def test_export_times_in_every_spelling():
    got = parse_times(
        pa.array(
            [
                "2021-03-03T04:11:58Z",
                "2021-03-03T04:11:58.5+01:00",
                "2021-03-03 04:11:58",
                "3/3/2021 4:11:58 PM",
                "3/3/2021, 4:11:58.000 AM",
                "1614744718",
                "garbage",
                None,
            ]
        )
    ).to_pylist()
    assert got[0] == datetime(2021, 3, 3, 4, 11, 58)
    assert got[1] == datetime(2021, 3, 3, 3, 11, 58, 500000)
    assert got[2] == datetime(2021, 3, 3, 4, 11, 58)
    assert got[3] == datetime(2021, 3, 3, 16, 11, 58)
    assert got[4] == datetime(2021, 3, 3, 4, 11, 58)
    assert got[5] == datetime(2021, 3, 3, 4, 11, 58)
    assert got[6] is None and got[7] is None


def test_an_export_with_a_hostile_header_is_refused_not_widened(collection: Path):
    header = ",".join(["_time", "sourcetype", "c_ip", "cs_uri_stem"] + [f"f{i}" for i in range(5000)])
    write(collection, "wide.csv", header + "\n2021-03-03T04:11:58Z,x,1.2.3.4,/owa/\n")
    result = _scan(collection)
    assert any("5,004 columns" in p.reason for p in result.problems if p.path == "wide.csv")
    assert not any(c.family == "log_iis" for c in result.coverage)


ECP_EXCERPT = """#Software: Microsoft Exchange Server
#Log-type: ECP Server Log
Columns kept: time, command
lines of the session below
2021-03-03T06:49:51.389Z,S:CMD=Get-OabVirtualDirectory.ADPropertiesOnly=$true;;S:EX=
2021-03-03T06:49:53.772Z,'S:CMD=Set-OabVirtualDirectory.ExternalUrl=''http://f/<script language="JScript" runat="server">x</script>'''
2021-03-03T06:49:58.420Z,'S:CMD=Get-ExchangeServer.Identity=''ex1''';;S:EX=
"""


def test_an_excerpt_that_kept_two_columns_binds_the_command_by_its_shape(collection: Path):
    """Notes where `#Fields` was, and only the time and the command kept: the command column is the
    ECP Server log's EventData (its values look like `S:CMD=`), not the second default column."""
    path = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/ECP/Server/ECPServer2.LOG"
    write(collection, path, ECP_EXCERPT)
    result = _scan(collection)
    assert _hits(result)["proxylogon-vdir-script-ecp"] == {(path, 6)}
    assert any("column 2 bound to EventData by the shape of its values" in n for n in _notes(result))
    assert any("2 line(s) that are not log rows" in n for n in _notes(result))


_TIMES = st.lists(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)), max_size=8)


@given(_TIMES)
def test_an_export_time_becomes_the_familys_own_time_text(times: list[datetime]):
    """An export's ISO time becomes the family's time columns as the log writes them: IIS `date` and
    `time` (whole seconds), an Exchange log's `DateTime` with milliseconds and a `Z`."""
    iso = [f"{t.year:04d}-{t:%m-%dT%H:%M:%S}.{t.microsecond:06d}Z" for t in times]
    rows = pa.table({"@timestamp": iso, "url.path": ["/x"] * len(times), "_line": list(range(1, len(times) + 1))})
    iis = next(m for m in builtin_maps() if m.name == "elastic-iis")
    table, _ = apply_map(rows, iis, ())
    assert table.column("date").to_pylist() == [f"{t.year:04d}-{t:%m-%d}" for t in times]
    assert table.column("time").to_pylist() == [f"{t:%H:%M:%S}" for t in times]
    proxy = FieldMap("t", "t", "httpproxy", ("json",), {"UrlStem": ("url.path",)}, time=("@timestamp",))
    table, _ = apply_map(rows, proxy, ())
    expected = [f"{t.year:04d}-{t:%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z" for t in times]
    assert table.column("DateTime").to_pylist() == expected
