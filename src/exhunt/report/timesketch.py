"""Timesketch JSONL: one line per finding and one per evidence record.

Timesketch's JSONL import needs `message`, `datetime` (ISO-8601; exhunt always writes the +00:00
offset), `timestamp` (microseconds since the epoch) and `timestamp_desc`; every other key becomes a
searchable attribute (https://timesketch.org/guides/user/import-from-json-csv/). Evidence lines carry
the parsed record's fields; a field whose name collides with one of those keys gets a `record_`
prefix. A record with no time of its own is placed at its finding's first time; a finding with no
time at all cannot be placed on a timeline and is left out (it is in the JSON result).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TextIO

from exhunt.report.common import evidence_of, findings, iso, joined, micros, parse_time

RESERVED = {"message", "datetime", "timestamp", "timestamp_desc", "data_type", "tag", "__ts_timeline_id"}
MESSAGE_LIMIT = 1000


def _base(when: datetime, desc: str, message: str, data_type: str) -> dict[str, Any]:
    return {
        "message": message[:MESSAGE_LIMIT],
        "datetime": iso(when),
        "timestamp": micros(when),
        "timestamp_desc": desc,
        "data_type": data_type,
    }


def _finding_fields(number: int, finding: dict[str, Any]) -> dict[str, Any]:
    group = finding.get("group") if isinstance(finding.get("group"), dict) else {}
    return {
        "exhunt_finding": number,
        "rule": str(finding.get("rule") or ""),
        "title": str(finding.get("title") or ""),
        "severity": str(finding.get("severity") or ""),
        "kind": str(finding.get("kind") or ""),
        "campaign": str(finding.get("campaign") or ""),
        "cves": joined(finding.get("cves")),
        "attack": joined(finding.get("attack")),
        "host": str(finding.get("host") or ""),
        "group": ", ".join(f"{k}={v}" for k, v in group.items()),
        "hit_count": finding.get("count"),
    }


def _flat(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) or value is None else json.dumps(value, default=str)


def lines(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The Timesketch events of a result document."""
    out: list[dict[str, Any]] = []
    for number, finding in enumerate(findings(doc), 1):
        first = parse_time(finding.get("first_seen"))
        if first is None:
            continue
        fields = _finding_fields(number, finding)
        message = f"{fields['severity'].upper()} {fields['title']} on {fields['host']} ({fields['hit_count']} hits)"
        out.append(
            {
                **_base(first, "First seen", message, "exhunt:finding"),
                **fields,
                "last_seen": finding.get("last_seen"),
                "note": finding.get("note"),
            }
        )
    for number, finding, item in evidence_of(doc):
        when = parse_time(item.get("time")) or parse_time(finding.get("first_seen"))
        if when is None:
            continue
        fields = _finding_fields(number, finding)
        raw = item.get("raw")
        where = f"{item.get('path')}" + (f":{item['line']}" if item.get("line") is not None else "")
        message = f"{fields['title']}: {raw if raw else where}"
        line: dict[str, Any] = {
            **_base(when, "Event Recorded" if item.get("time") else "Finding first seen", message, "exhunt:evidence"),
            **fields,
            "evidence_path": item.get("path"),
            "evidence_line": item.get("line"),
            "evidence_record_id": item.get("record_id"),
            "raw": raw,
        }
        record = item.get("record") if isinstance(item.get("record"), dict) else {}
        for key, value in record.items():
            name = str(key)
            while name in RESERVED or name in line:
                name = "record_" + name
            line[name] = _flat(value)
        out.append(line)
    return out


def write(doc: dict[str, Any], out: TextIO) -> None:
    for line in lines(doc):
        out.write(json.dumps(line, ensure_ascii=True, default=str) + "\n")
