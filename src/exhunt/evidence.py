"""Evidence for findings: the parsed record and the raw physical line behind each hit.

Raw lines are fetched read-only and bounded.

Only lines that back a reported finding are read again, grouped by file so each file is streamed once
and only up to its last wanted line. Long lines are cut to `MAX_RAW_CHARS` with a marker.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from exhunt.collection import Collection
from exhunt.findings import Evidence, Finding
from exhunt.rules.native import VIEWS, RawFinding
from exhunt.sources.delimited import column_names, split_csv_line, split_w3c_line
from exhunt.store import Store, _q

MAX_RAW_CHARS = 16_384


def fetch_lines(collection: Collection, wanted: dict[str, set[int]]) -> dict[tuple[str, int], str]:
    """{(path, line): text} for every wanted line that exists; unreadable files are skipped."""
    out: dict[tuple[str, int], str] = {}
    for path, lines in wanted.items():
        if not lines:
            continue
        last = max(lines)
        try:
            with collection.open(path) as stream:
                for number, raw in enumerate(stream, 1):
                    if number in lines:
                        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                            raw = raw[3:]
                        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                        if len(text) > MAX_RAW_CHARS:
                            text = text[:MAX_RAW_CHARS] + f"... [cut: {len(text)} characters]"
                        out[(path, number)] = text
                    if number >= last:
                        break
        except (OSError, KeyError, ValueError):
            continue
    return out


def build_findings(raw: list[RawFinding], store: Store, collection: Collection) -> list[Finding]:
    """Fill each finding's evidence with its parsed record and raw line."""
    fetched: dict[tuple[str, int], dict[str, Any]] = {}
    by_table: dict[str, set[int]] = {}
    for rf in raw:
        by_table.setdefault(VIEWS[rf.rule.source].table, set()).update(rf.rowids)
    for table, rowids in by_table.items():
        art = "id" if table == "artifacts" else "_artifact"
        join = "" if table == "artifacts" else f" JOIN artifacts a ON a.id = t.{art}"
        path = "t.path" if table == "artifacts" else "a.path"
        ids = sorted(rowids)
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            fields = (
                "(SELECT d.value FROM directives d WHERE d.artifact = t._artifact AND d.key = 'Fields' "
                "AND d.line < t._line ORDER BY d.line DESC LIMIT 1) AS _fields, "
                if table.startswith("log_")
                else ""
            )
            cur = store.con.execute(
                f"SELECT t.rowid AS _rowid, {path} AS _path, {fields}t.* FROM {_q(table)} t{join} "
                f"WHERE t.rowid IN (SELECT unnest(?::BIGINT[]))",
                [chunk],
            )
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                rec = dict(zip(names, row, strict=True))
                fetched[(table, rec["_rowid"])] = rec
    wanted: dict[str, set[int]] = {}
    for (table, _), rec in fetched.items():
        if table != "artifacts" and rec.get("_line") is not None:
            wanted.setdefault(rec["_path"], set()).add(int(rec["_line"]))
    lines = fetch_lines(collection, wanted)
    findings = []
    for rf in raw:
        table = VIEWS[rf.rule.source].table
        evidence = []
        for rid in rf.rowids:
            rec = fetched.get((table, rid))
            if rec is None:
                continue
            evidence.append(_evidence(table, rec, lines))
        findings.append(
            Finding(
                rf.rule, rf.host, _plain(rf.group), rf.count, rf.first_seen, rf.last_seen, rf.rule.severity, evidence
            )
        )
    return findings


def _evidence(table: str, rec: dict[str, Any], lines: dict[tuple[str, int], str]) -> Evidence:
    path = rec["_path"]
    if table == "artifacts":
        record = {k: _plain(v) for k, v in rec.items() if not k.startswith("_") and v is not None and k != "id"}
        return Evidence(path, None, None, rec.get("mtime"), record, None)
    line = rec.get("_line")
    if table == "events":
        data = json.loads(rec["data"]) if rec.get("data") else {}
        record = {
            k: _plain(rec[k]) for k in ("channel", "provider", "event_id", "level", "computer", "record_id", "message")
        }
        record = {k: v for k, v in record.items() if v is not None}
        record["data"] = data
        raw = lines.get((path, int(line))) if line is not None else json.dumps(record, ensure_ascii=False, default=str)
        return Evidence(path, line, rec.get("record_id"), rec.get("ts"), record, raw)
    raw = lines.get((path, int(line))) if line else None
    record = {k: v for k, v in rec.items() if not k.startswith("_") and v is not None}
    fields = rec.get("_fields")
    if raw is not None and fields:
        record = record_from_line(raw, fields, table == "log_iis") or record
    return Evidence(path, line, None, rec.get("_ts"), record, raw)


def record_from_line(raw: str, fields_directive: str, w3c: bool) -> dict[str, str] | None:
    """The parsed fields of one raw log line, bound to the `#Fields` in force at that line."""
    names = column_names(fields_directive)
    values = split_w3c_line(raw) if w3c else split_csv_line(raw)
    if not names or not values:
        return None
    empty = ("-", "") if w3c else ("",)
    return {n: v for n, v in zip(names, values, strict=False) if v not in empty}


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
