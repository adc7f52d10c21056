"""Sentinel SecurityEvent / Event CSV exports read as events."""

from __future__ import annotations

import io
import json

from exhunt.sources.base import ArtifactInfo
from exhunt.sources.sentinel_csv import MAX_FIELD_CHARS, SentinelEventCsvSource, portal_time

HEADER = "TenantId,SourceSystem,TimeGenerated [UTC],Source,EventLog,Computer,EventLevel,EventLevelName,EventID,RenderedDescription,Type\n"
SYSMON_ROW = (
    't,OpsManager,"3/3/2021, 4:11:58.214 PM",Microsoft-Windows-Sysmon,Microsoft-Windows-Sysmon/Operational,EXCH01,4,'
    'Information,1,"Process Create:\nRuleName: -\nImage: C:\\Windows\\System32\\cmd.exe\nCommandLine: cmd /c ""whoami""\n'
    'ParentImage: C:\\Windows\\System32\\inetsrv\\w3wp.exe",Event\n'
)


def read(blob: bytes) -> tuple[list[dict], ArtifactInfo]:
    info = ArtifactInfo("Event.csv")
    rows = []
    for _, table in SentinelEventCsvSource().read(io.BytesIO(blob), info, None):
        rows.extend(table.to_pylist())
    return rows, info


def test_sniff_wants_an_event_header():
    assert SentinelEventCsvSource.sniff(b"\xef\xbb\xbf" + HEADER.encode(), "x.csv")
    assert not SentinelEventCsvSource.sniff(b"TimeGenerated [UTC],csMethod,csUriStem,scStatus\n", "W3CIISLog.csv")
    assert not SentinelEventCsvSource.sniff(b"#Software: Microsoft Exchange\n", "x.log")


def test_records_spanning_lines_keep_their_first_line_and_fields_come_from_the_description():
    rows, info = read((HEADER + SYSMON_ROW + SYSMON_ROW.replace("4:11:58.214 PM", "12:00:01 AM")).encode())
    assert [r["_line"] for r in rows] == [2, 7]
    data = json.loads(rows[0]["data"])
    assert data["CommandLine"] == 'cmd /c "whoami"' and data["ParentImage"].endswith("\\w3wp.exe")
    assert rows[0]["ts"].isoformat() == "2021-03-03T16:11:58.214000" and rows[1]["ts"].hour == 0
    assert (rows[0]["channel"], rows[0]["event_id"], rows[0]["level"]) == ("Microsoft-Windows-Sysmon/Operational", 1, 4)
    assert info.log_type == "Sentinel CSV (message-only)" and "2 of 2 event(s)" in info.notes[0]


def test_hostile_csv_is_read_without_raising():
    huge = (
        HEADER + 't,s,"3/3/2021, 1:00:00 AM",Src,Log,H,4,Information,1,"' + "x" * (MAX_FIELD_CHARS + 10) + '",Event\n'
    )
    rows, info = read((huge + SYSMON_ROW).encode() + b"\xff\xfe garbage,\n" + b'"unterminated')
    assert any(r["event_id"] == 1 and "cmd.exe" in r["data"] for r in rows)
    assert info.errors  # the oversize field is reported, the next record still read


def test_portal_time_forms():
    assert portal_time("2021-03-03T04:11:58.2140000Z").isoformat() == "2021-03-03T04:11:58.214000"
    assert portal_time("12/31/2021, 12:30:00.5 PM").isoformat() == "2021-12-31T12:30:00.500000"
    assert portal_time("13/45/2021, 1:00:00 AM") is None and portal_time("") is None
