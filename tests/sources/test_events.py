"""EVTX (real public samples) and JSON-lines exports mapped to the one event model."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exhunt.sources.base import ArtifactInfo
from exhunt.sources.events import EvtxSource, JsonLinesEventSource, flatten_event_data, parse_time
from tests.conftest import shared_path

EXPECTED_COUNTS = {
    "CA_4624_4625_LogonType2_LogonProc_chrome.evtx": 4,
    "DE_1102_security_log_cleared.evtx": 112,
    "LM_typical_IIS_webshell_sysmon_1_10_traces.evtx": 4,
    "Runas_4624_4648_Webshell_CreateProcessAsUserA.evtx": 3,
    "sysmon_10_1_memdump_comsvcs_minidump.evtx": 6,
}


def read(source, data: bytes) -> tuple[list[dict], ArtifactInfo]:
    info = ArtifactInfo("x")
    rows = []
    for table, t in source.read(io.BytesIO(data), info, hashlib.sha256()):
        assert table == "events"
        rows.extend(t.to_pylist())
    return rows, info


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_real_evtx_parse_without_errors(name):
    data = shared_path("data", "evtx", name).read_bytes()
    assert EvtxSource.sniff(data[:8], name)
    rows, info = read(EvtxSource(), data)
    assert info.errors == []
    assert len(rows) == EXPECTED_COUNTS[name]
    assert all(r["ts"] is not None and r["channel"] and r["event_id"] is not None for r in rows)


def test_real_evtx_fields_are_mapped():
    rows, _ = read(
        EvtxSource(), shared_path("data", "evtx", "LM_typical_IIS_webshell_sysmon_1_10_traces.evtx").read_bytes()
    )
    first = rows[0]
    assert first["channel"] == "Microsoft-Windows-Sysmon/Operational"
    assert first["provider"] == "Microsoft-Windows-Sysmon"
    assert first["event_id"] == 1 and first["record_id"] == 1044
    data = json.loads(first["data"])
    assert data["ParentImage"].lower().endswith("w3wp.exe")
    assert data["CommandLine"].endswith("/c net user")


def test_userdata_is_flattened():
    rows, _ = read(EvtxSource(), shared_path("data", "evtx", "DE_1102_security_log_cleared.evtx").read_bytes())
    cleared = [r for r in rows if r["event_id"] == 1102]
    assert json.loads(cleared[0]["data"])["SubjectUserName"] == "user01"


def test_truncated_and_garbage_evtx_report_errors_not_exceptions():
    data = shared_path("data", "evtx", "DE_1102_security_log_cleared.evtx").read_bytes()
    rows, info = read(EvtxSource(), data[: 4096 + 65536 + 3000])  # header, one chunk, part of the next
    assert rows  # what could be read was read
    _, info = read(EvtxSource(), b"ElfFile\x00" + b"\xff" * 50)
    assert info.errors and "EVTX" in info.errors[0][1]


def test_unnamed_data_items_become_params():
    assert flatten_event_data({"Data": ["Set-OabVirtualDirectory", "-ExternalUrl x"]}) == {
        "param1": "Set-OabVirtualDirectory",
        "param2": "-ExternalUrl x",
    }
    assert flatten_event_data({"Data": {"#text": ["a", "b"]}}) == {"param1": "a", "param2": "b"}


def test_parse_time_forms():
    assert parse_time("2019-05-24T01:33:53.1825874Z UTC").isoformat() == "2019-05-24T01:33:53.182587"
    assert parse_time("2021-03-03T04:12:01+01:00").isoformat() == "2021-03-03T03:12:01"
    assert parse_time("2021-03-03 04:12:01").isoformat() == "2021-03-03T04:12:01"
    assert parse_time("yesterday") is None
    assert parse_time("0001-01-01T00:00:00+01:00") is None  # before year 1 in UTC: no time, no crash


TIME_FORMATS = ["%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"]


@given(
    when=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))])),
    form=st.sampled_from(TIME_FORMATS),
    extra=st.sampled_from(["", "7", "123", " UTC"]),
)
def test_parse_time_one_call_and_loose_forms_agree(when, form, extra):
    from exhunt.sources.events import _loose_time

    text = when.strftime(form)
    text = text.replace("Z", extra + "Z", 1) if extra.isdigit() and "Z" in text else text + extra.strip(" ")[:0]
    assert parse_time(text) == _loose_time(text)


def test_jsonl_winlogbeat_nxlog_and_flat_shapes():
    lines = [
        {"@timestamp": "2021-03-03T04:12:01.123Z", "message": "Cmdlet succeeded",
         "winlog": {"channel": "MSExchange Management", "provider_name": "MSExchange CmdletLogs", "event_id": 1,
                    "record_id": 7, "computer_name": "EXCH01", "level": "information",
                    "event_data": {"param1": "Set-OabVirtualDirectory", "param2": "-ExternalUrl 'http://f/<script>'"}}},
        {"EventTime": "2021-03-03 05:00:00", "Hostname": "EXCH01", "Channel": "Security", "EventID": 4688,
         "SourceName": "Microsoft-Windows-Security-Auditing", "SeverityValue": 2, "RecordNumber": 9,
         "NewProcessName": "C:\\Windows\\System32\\cmd.exe", "Message": "A new process has been created."},
    ]  # fmt: skip
    data = ("\n".join(json.dumps(x) for x in lines) + "\nnot json\n\n").encode()
    assert JsonLinesEventSource.sniff(data[:4096], "x.ndjson")
    rows, info = read(JsonLinesEventSource(), data)
    assert [r["_line"] for r in rows] == [1, 2]
    a, b = rows
    assert (a["channel"], a["provider"], a["event_id"], a["record_id"], a["level"]) == (
        "MSExchange Management", "MSExchange CmdletLogs", 1, 7, 4,
    )  # fmt: skip
    assert json.loads(a["data"])["param1"] == "Set-OabVirtualDirectory"
    assert (b["channel"], b["event_id"], b["computer"], b["record_id"], b["level"]) == (
        "Security",
        4688,
        "EXCH01",
        9,
        2,
    )
    assert json.loads(b["data"])["NewProcessName"].endswith("cmd.exe")
    assert info.errors == [(3, "not a JSON object: line skipped")]


def test_jsonl_export_cut_short_says_so_with_the_line():
    """A JSON-lines export cut inside its last line: the line is not an event, and the artifact says
    the file may be cut short (the note the log readers give), at that line's number."""
    whole = json.dumps({"EventID": 4688, "Channel": "Security", "Computer": "EXCH01", "CommandLine": "whoami"})
    rows, info = read(JsonLinesEventSource(), (whole + "\n" + whole[:25]).encode())
    assert [r["_line"] for r in rows] == [1]
    assert info.errors == [(2, "not a JSON object: line skipped")]
    assert info.notes == ["the last line (line 2) has no line end: the file may be cut short"]


def test_flat_jsonl_keeps_sysmon_source_image():
    line = {"EventTime": "2021-03-03 05:00:00", "Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 10,
            "SourceImage": "C:\\Windows\\System32\\rundll32.exe", "TargetImage": "C:\\Windows\\System32\\lsass.exe"}  # fmt: skip
    rows, _ = read(JsonLinesEventSource(), (json.dumps(line) + "\n").encode())
    assert json.loads(rows[0]["data"])["SourceImage"].endswith("rundll32.exe")


def test_flattened_dotted_keys_are_read_like_nested_ones():
    """Some exports flatten the Winlogbeat document (`"winlog.channel": ...`): same event, same row."""
    nested = {"@timestamp": "2021-03-03T04:12:01Z", "message": "m",
              "winlog": {"channel": "Security", "event_id": 4688, "record_id": 5, "computer_name": "EXCH01",
                         "provider_name": "Microsoft-Windows-Security-Auditing",
                         "event_data": {"NewProcessName": "C:\\\\w\\\\cmd.exe"}}}  # fmt: skip
    flat = {"@timestamp": "2021-03-03T04:12:01Z", "message": "m", "winlog.channel": "Security",
            "winlog.event_id": 4688, "winlog.record_id": 5, "winlog.computer_name": "EXCH01",
            "winlog.provider_name": "Microsoft-Windows-Security-Auditing",
            "winlog.event_data": {"NewProcessName": "C:\\\\w\\\\cmd.exe"}}  # fmt: skip
    (a,), _ = read(JsonLinesEventSource(), (json.dumps(nested) + "\n").encode())
    (b,), _ = read(JsonLinesEventSource(), (json.dumps(flat) + "\n").encode())
    assert a == b
    assert (b["channel"], b["event_id"], b["computer"]) == ("Security", 4688, "EXCH01")
    assert json.loads(b["data"]) == {"NewProcessName": "C:\\\\w\\\\cmd.exe"}


def test_hostile_values_cost_no_row():
    """A value that does not fit its column or is not text Arrow can hold becomes null or U+FFFD in
    its own row; the other rows of the batch are kept."""
    lines = [
        '{"EventTime": "2021-03-03 05:00:00", "Channel": "Security", "EventID": 99999999999, "RecordNumber": 1e400}',
        '{"EventTime": "2021-03-03 05:00:00", "Channel": "Security", "EventID": 4688, "x": "a\\ud800b"}',
        '{"EventTime": "2021-03-03 05:00:00", "Channel": "Security", "EventID": 4624, "Level": "Information"}',
    ]
    rows, info = read(JsonLinesEventSource(), ("\n".join(lines) + "\n").encode())
    assert [r["_line"] for r in rows] == [1, 2, 3] and info.errors == []
    assert rows[0]["event_id"] is None and rows[0]["record_id"] is None
    assert json.loads(rows[1]["data"])["x"] == "a\ufffdb"
    assert (rows[2]["event_id"], rows[2]["level"]) == (4624, 4)


_scalars = st.one_of(st.text(max_size=12), st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.none())
_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=5), _scalars, max_size=3)
)
_keys = st.one_of(
    st.sampled_from(["Channel", "EventID", "EventTime", "Level", "Message", "Computer", "RecordNumber", "winlog",
                     "EventData", "@timestamp", "host.name", "winlog.event_id", "CommandLine", "param1"]),
    st.text(max_size=8),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(_keys, _values, max_size=8), min_size=1, max_size=6))
def test_any_json_object_line_becomes_a_row(docs):
    data = "".join(json.dumps(d) + "\n" for d in docs).encode()
    rows, info = read(JsonLinesEventSource(), data)
    assert [r["_line"] for r in rows] == list(range(1, len(docs) + 1)) and info.errors == []
