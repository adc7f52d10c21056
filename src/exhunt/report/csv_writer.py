"""Findings and their evidence as one CSV table, safe to open in a spreadsheet.

One row per evidence sample (a finding without samples gets one row); the finding's columns repeat
on each. Every cell goes through `csv_cell` (no cell starts with = + - @ tab or CR, OWASP's CSV
injection guidance) after control characters are shown as escapes, so the file is also inert in a
terminal.
"""

from __future__ import annotations

import csv
import json
from typing import Any, TextIO

from exhunt.output.safe import csv_cell
from exhunt.report.common import findings, inert, joined

COLUMNS = [
    "finding", "severity", "rule", "title", "kind", "campaign", "cves", "attack", "host", "group", "count",
    "first_seen", "last_seen", "note", "evidence_path", "evidence_line", "evidence_record_id", "evidence_time",
    "record", "raw",
]  # fmt: skip
CELL_LIMIT = 32_000  # spreadsheets hold at most 32,767 characters in a cell


def cell(value: object) -> str:
    text = inert(value)
    if len(text) > CELL_LIMIT:
        text = text[:CELL_LIMIT] + f" … [+{len(text) - CELL_LIMIT} chars]"
    return csv_cell(text)


def rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for number, finding in enumerate(findings(doc), 1):
        group = finding.get("group") if isinstance(finding.get("group"), dict) else {}
        head = [
            number, finding.get("severity"), finding.get("rule"), finding.get("title"), finding.get("kind"),
            finding.get("campaign"), joined(finding.get("cves")), joined(finding.get("attack")), finding.get("host"),
            ", ".join(f"{k}={v}" for k, v in group.items()), finding.get("count"), finding.get("first_seen"),
            finding.get("last_seen"), finding.get("note"),
        ]  # fmt: skip
        evidence = [e for e in finding.get("evidence") or [] if isinstance(e, dict)] or [{}]
        for item in evidence:
            record = item.get("record")
            tail = [
                item.get("path"), item.get("line"), item.get("record_id"), item.get("time"),
                json.dumps(record, ensure_ascii=False, default=str) if record else "", item.get("raw"),
            ]  # fmt: skip
            out.append([cell(v) for v in head + tail])
    return out


def write(doc: dict[str, Any], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows(doc))
