"""Events exported as one JSON array (Log Analytics API, Sentinel hunting exports)."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from exhunt.sources import json_array_events
from exhunt.sources.base import ArtifactInfo
from exhunt.sources.events import JsonLinesEventSource
from exhunt.sources.json_array_events import JsonArrayEventSource

ROWS = [
    {
        "TimeGenerated": f"2021-03-03T04:00:0{i}Z", "Computer": "EXCH01", "EventLog": "MSExchange Management",
        "Source": "MSExchange CmdletLogs", "EventID": 1, "EventLevelName": "Information",
        "RenderedDescription": f'Cmdlet succeeded. Cmdlet Set-OabVirtualDirectory, parameters -ExternalUrl "http://f/<script>{i}".',
    }
    for i in range(5)
]  # fmt: skip


def read(blob: bytes) -> tuple[list[dict], ArtifactInfo, str]:
    info, hasher = ArtifactInfo("export.json"), hashlib.sha256()
    rows = [r for _, t in JsonArrayEventSource().read(io.BytesIO(blob), info, hasher) for r in t.to_pylist()]
    return rows, info, hasher.hexdigest()


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_pretty_array_read_across_chunks_with_lines_and_hash(monkeypatch, chunk):
    monkeypatch.setattr(json_array_events, "READ_BYTES", chunk)
    blob = b"\xef\xbb\xbf" + json.dumps(ROWS, indent=2).encode() + b"\n"
    assert JsonArrayEventSource.sniff(blob[:4096], "x.json") and not JsonLinesEventSource.sniff(blob[:4096], "x.json")
    rows, info, digest = read(blob)
    assert [r["_line"] for r in rows] == [2, 11, 20, 29, 38]
    assert json.loads(rows[4]["data"])["param2"] == '-ExternalUrl "http://f/<script>4"'
    assert digest == hashlib.sha256(blob).hexdigest() and not info.errors
    assert info.log_type == "JSON array (message-only)"


def test_truncated_nested_and_garbage_arrays_keep_what_was_read():
    good = json.dumps(ROWS[:2])
    rows, info, _ = read((good[:-1] + ', {"EventID": 1, "Computer": "cut').encode())
    assert len(rows) == 2 and "rest of the file skipped" in info.errors[0][1]
    rows, info, _ = read((good[:-1] + ", " + "[" * 100_000 + "]").encode())
    assert len(rows) == 2 and info.errors
    rows, info, _ = read((good[:-1] + ", 3, " + json.dumps(ROWS[2]) + "] trailing bytes").encode())
    assert len(rows) == 3 and info.errors == [(1, "not a JSON object: item skipped")]


def test_a_jsonl_line_nested_too_deep_is_one_bad_line():
    info = ArtifactInfo("x.jsonl")
    blob = b"[" * 100_000 + b"\n" + json.dumps({"EventID": 1, "Channel": "Security"}).encode() + b"\n"
    rows = [r for _, t in JsonLinesEventSource().read(io.BytesIO(blob), info, None) for r in t.to_pylist()]
    assert len(rows) == 1 and info.errors == [(1, "not a JSON object: line skipped")]
