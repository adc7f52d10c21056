"""Evidence for findings: the parsed record and the raw physical line behind each hit.

A file found in a disk image also carries its NTFS record (`ntfs`: `$SI`/`$FN` times, MFT entry,
timestomping tells), so a web shell's finding shows when the file was really created.

Only lines that back a reported finding are read again, read-only and bounded: each file is opened
once, and each wanted line is reached by seeking to the run of lines that holds it (the case keeps the
byte offset of every run in `line_index`) and counting line breaks from there. Long lines are cut to
`MAX_RAW_CHARS` with a marker. A line that cannot be read again is a problem, never a silent gap.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

from exhunt.case import CaseReader
from exhunt.collection import Collection
from exhunt.families import Family, family
from exhunt.result import Evidence, Finding, Problem
from exhunt.rules.native import RawFinding
from exhunt.sources.delimited import column_names, fit_values

MAX_RAW_CHARS = 16_384
FETCH_CHUNK = 1 << 20
Index = dict[str, tuple[list[int], list[int]]]  # path -> (first lines, byte offsets) of its runs


def fetch_lines(
    collection: Collection, wanted: dict[str, set[int]], index: Index | None = None
) -> tuple[dict[tuple[str, int], str], list[Problem]]:
    """{(path, line): text} for every wanted line, and a problem for each one that cannot be read."""
    out: dict[tuple[str, int], str] = {}
    problems: list[Problem] = []
    for path, lines in wanted.items():
        if not lines:
            continue
        starts, offsets = (index or {}).get(path, ([], []))
        try:
            with collection.open(path) as stream:
                for number, raw in _seeking_lines(stream, sorted(lines), starts, offsets):
                    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                    if len(text) > MAX_RAW_CHARS:
                        text = text[:MAX_RAW_CHARS] + f"... [cut: {len(text)} characters]"
                    out[(path, number)] = text
        except (OSError, KeyError, ValueError, EOFError, AttributeError) as exc:
            why = f"{type(exc).__name__}: {exc}"[:200]
            problems.extend(Problem(path, n, f"evidence line could not be read again: {why}", "evidence", False)
                            for n in sorted(lines))  # fmt: skip
            continue
        problems.extend(
            Problem(path, n, "evidence line could not be read again: the file is shorter now", "evidence", False)
            for n in sorted(lines)
            if (path, n) not in out
        )
    return out, problems


def _seeking_lines(
    stream: BinaryIO, targets: list[int], starts: list[int], offsets: list[int]
) -> Iterator[tuple[int, bytes]]:
    """The wanted lines, each reached from the start of its run (one seek) or, reading on, from the
    previous one when it lies in the same run; without an index, from the start of the file."""
    k = 0
    while k < len(targets):
        run = bisect.bisect_right(starts, targets[k]) - 1
        first, offset = (starts[run], offsets[run]) if run >= 0 else (1, 0)
        end = starts[run + 1] if run + 1 < len(starts) else None
        group = []
        while k < len(targets) and (end is None or targets[k] < end):
            group.append(targets[k])
            k += 1
        _seek(stream, offset)
        yield from _numbered_lines(stream, set(group), first)


def _seek(stream: BinaryIO, offset: int) -> None:
    """Seek, or read forward where the stream can only tell its position (zip members can seek)."""
    try:
        stream.seek(offset)
        return
    except (OSError, AttributeError, ValueError):
        pass
    left = offset - stream.tell()  # a stream that can do neither fails here: a problem, never a wrong line
    if left < 0:
        raise OSError("cannot go back in this stream to re-read an earlier line")
    while left > 0:
        chunk = stream.read(min(left, FETCH_CHUNK))
        if not chunk:
            return
        left -= len(chunk)


def _numbered_lines(stream: BinaryIO, wanted: set[int], first: int = 1) -> Iterator[tuple[int, bytes]]:
    """The wanted lines (1-based) of a stream whose next byte starts line `first`. Chunks without
    one are skipped by counting their line breaks, not split (line by line, a line deep in a 17 MB
    IIS log cost 50 ms)."""
    targets = sorted(wanted)
    nxt = 0  # index of the next wanted line in `targets`
    line, carry = first, b""  # `line` is the number of the line that starts `carry`
    while nxt < len(targets):
        chunk = stream.read(FETCH_CHUNK)
        buf = carry + chunk
        if not chunk:  # the last line, without a line break
            if buf and targets[nxt] == line:
                yield line, buf
            return
        breaks = buf.count(b"\n")
        if targets[nxt] >= line + breaks:  # no complete wanted line in this chunk
            carry = buf[buf.rfind(b"\n") + 1 :] if breaks else buf
            line += breaks
            continue
        *complete, carry = buf.split(b"\n")
        while nxt < len(targets) and targets[nxt] < line + breaks:
            yield targets[nxt], complete[targets[nxt] - line]
            nxt += 1
        line += breaks


def build_findings(
    raw: list[RawFinding], case: CaseReader, collection: Collection
) -> tuple[list[Finding], list[Problem]]:
    """Fill each finding's evidence with its parsed record and raw line."""
    fetched: dict[tuple[str, int], dict[str, Any]] = {}
    by_family: dict[str, set[int]] = {}
    for rf in raw:
        for name, rowid in rf.rows:
            by_family.setdefault(name, set()).add(rowid)
    for name, rowids in by_family.items():
        fam = family(name)
        recs = case.records(fam, sorted(rowids))
        if fam.line_based:
            _attach_fields_directive(case, recs)
        fetched.update(((name, rec["_rowid"]), rec) for rec in recs)
    wanted: dict[str, set[int]] = {}
    for (name, _), rec in fetched.items():
        if family(name).kind != "files" and rec.get("_line") is not None:
            wanted.setdefault(rec["_path"], set()).add(int(rec["_line"]))
    lines, problems = fetch_lines(collection, wanted, case.line_index(sorted(wanted)))
    ntfs = case.ntfs_times(sorted({rec["_path"] for (name, _), rec in fetched.items() if name == "files"}))
    findings = []
    for rf in raw:
        evidence = []
        for name, rid in rf.rows:
            if (rec := fetched.get((name, rid))) is None:
                continue
            e = _evidence(family(name), rec, lines)
            if name == "files" and e.path in ntfs:  # a file of a disk image: its `$SI`/`$FN` times
                e.record["ntfs"] = _plain(ntfs[e.path])
            evidence.append(e)
        findings.append(
            Finding(
                rf.rule, rf.host, _plain(rf.group), rf.count, rf.first_seen, rf.last_seen, rf.rule.severity, evidence
            )
        )
    return findings, problems


def fill_raw_lines(findings: list[Finding], case: CaseReader, collection: Collection) -> list[Problem]:
    """Give evidence that names a file and line but no raw text (the analytics') its physical line."""
    wanted: dict[str, set[int]] = {}
    for f in findings:
        for e in f.evidence:
            if e.raw is None and e.line is not None and e.path:
                wanted.setdefault(e.path, set()).add(int(e.line))
    if not wanted:
        return []
    lines, problems = fetch_lines(collection, wanted, case.line_index(sorted(wanted)))
    for f in findings:
        for e in f.evidence:
            if e.raw is None and e.line is not None:
                e.raw = lines.get((e.path, int(e.line)))
    return problems


def _attach_fields_directive(case: CaseReader, recs: list[dict[str, Any]]) -> None:
    """Give each log record the `#Fields` line in force at its line, as `_fields` (one query for all:
    a subquery per record cost 75 ms per table)."""
    by_artifact: dict[int, tuple[list[int], list[str]]] = {}
    for artifact, line, value in case.fields_directives(sorted({rec["_artifact"] for rec in recs})):
        lines, values = by_artifact.setdefault(artifact, ([], []))
        lines.append(line)
        values.append(value)
    for rec in recs:
        lines, values = by_artifact.get(rec["_artifact"], ([], []))
        k = bisect.bisect_left(lines, rec["_line"]) if rec["_line"] is not None else 0
        rec["_fields"] = values[k - 1] if k else None


def _evidence(fam: Family, rec: dict[str, Any], lines: dict[tuple[str, int], str]) -> Evidence:
    path = rec["_path"]
    if fam.kind == "files":
        record = {k: _plain(v) for k, v in rec.items() if not k.startswith("_") and v is not None and k != "id"}
        return Evidence(path, None, None, rec.get(fam.time_sql.removeprefix("t.")), record, None)
    line = rec.get("_line")
    if fam.kind == "events":
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
    if raw is not None and fields and fam.line_based:
        record = record_from_line(raw, fields, fam) or record
    return Evidence(path, line, None, rec.get("_ts"), record, raw)


def record_from_line(raw: str, fields_directive: str, fam: Family) -> dict[str, str] | None:
    """The parsed fields of one raw log line, bound to the `#Fields` in force at that line."""
    names = column_names(fields_directive)
    values = fit_values(fam.split_line(raw), names) if fam.split_line else []
    if not names or not values:
        return None
    return {n: v for n, v in zip(names, values, strict=False) if v not in fam.empty_values}


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
