"""What the HTML report shows, computed from the result document: plain data for the template.

Evidence is sampled to a size budget (most severe findings first) so a result with thousands of
findings still gives a report of a few MB; every finding says how many records are not shown and
how to get them from the case database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import escape

from exhunt.report.common import SEVERITIES, SEVERITY_RANK, findings, joined, parse_time

PER_FINDING = 5  # evidence samples shown per finding at most
MAX_FINDINGS = 3000  # finding rows in the page (about 1.2 KB each); the rest are counted
MAX_POINTS = 20_000  # marks on the timeline
EVIDENCE_BUDGET = 6_000_000  # bytes of escaped evidence text in the whole report
RAW_LIMIT = 4096  # characters of a raw line shown
VALUE_LIMIT = 1024  # characters of one parsed field shown
FIELDS_LIMIT = 80  # parsed fields shown per record
FIELD_OVERHEAD = 12  # bytes per shown field besides its text: padding, newline (for the budget)


def cut(value: object, limit: int) -> str:
    """Text cut to `limit` characters with a note of what was left out."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > limit:
        return text[:limit] + f" … [+{len(text) - limit} chars]"
    return text


@dataclass
class Evidence:
    path: str
    line: int | None
    record_id: int | None
    time: str | None
    fields: list[tuple[str, str]]
    raw: str | None

    @classmethod
    def of(cls, item: dict[str, Any]) -> Evidence:
        record = item.get("record") if isinstance(item.get("record"), dict) else {}
        fields = [(cut(str(k), 200), cut(v, VALUE_LIMIT)) for k, v in list(record.items())[:FIELDS_LIMIT]]
        if len(record) > FIELDS_LIMIT:
            fields.append(("…", f"{len(record) - FIELDS_LIMIT} more fields"))
        raw = item.get("raw")
        return cls(
            path=str(item.get("path") or ""),
            line=item.get("line") if isinstance(item.get("line"), int) else None,
            record_id=item.get("record_id") if isinstance(item.get("record_id"), int) else None,
            time=item.get("time") if isinstance(item.get("time"), str) else None,
            fields=fields,
            raw=None if raw is None else cut(raw, RAW_LIMIT),
        )

    def fields_text(self) -> str:
        """The parsed fields as aligned `name  value` lines (one element, not a table of hundreds)."""
        width = min(max((len(k) for k, _ in self.fields), default=0), 28)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in self.fields)

    def size(self) -> int:
        """Bytes this sample adds to the page, about (escaped text plus markup)."""
        text = sum(len(escape(k)) + len(escape(v)) + FIELD_OVERHEAD for k, v in self.fields)
        return text + len(escape(self.raw or "")) + len(escape(self.path)) + 200


@dataclass
class Finding:
    number: int
    rule: str
    title: str
    severity: str
    confidence: str
    kind: str
    campaign: str
    cves: str
    attack: str
    host: str
    group: str
    count: int
    first_seen: str
    last_seen: str
    note: str
    evidence: list[Evidence] = field(default_factory=list)
    listed: int = 0  # samples in the document
    dropped: int = 0  # samples in the document (and the case) not shown here
    unkept: int = 0  # matching records not even sampled (all are kept with --all-evidence)


def _finding(number: int, raw: dict[str, Any]) -> Finding:
    group = raw.get("group") if isinstance(raw.get("group"), dict) else {}
    evidence = [e for e in raw.get("evidence") or [] if isinstance(e, dict)]
    count = raw.get("count") if isinstance(raw.get("count"), int) else len(evidence)
    severity = str(raw.get("severity") or "info").lower()
    return Finding(
        number=number,
        rule=str(raw.get("rule") or ""),
        title=str(raw.get("title") or raw.get("rule") or ""),
        severity=severity if severity in SEVERITY_RANK else "info",
        confidence=str(raw.get("confidence") or ""),
        kind=str(raw.get("kind") or ""),
        campaign=str(raw.get("campaign") or ""),
        cves=joined(raw.get("cves")),
        attack=joined(raw.get("attack")),
        host=str(raw.get("host") or ""),
        group=", ".join(f"{k}={cut(v, 200)}" for k, v in group.items()),
        count=count,
        first_seen=str(raw.get("first_seen") or ""),
        last_seen=str(raw.get("last_seen") or ""),
        note=str(raw.get("note") or ""),
        listed=len(evidence),
    )


def sample_findings(doc: dict[str, Any], budget: int = EVIDENCE_BUDGET) -> list[Finding]:
    """Findings most severe first with evidence samples while the page's evidence budget lasts:
    first one sample for every finding (most severe first), then up to PER_FINDING each."""
    raws = findings(doc)
    order = sorted(range(len(raws)), key=lambda i: -SEVERITY_RANK.get(str(raws[i].get("severity")).lower(), 0))
    order = order[:MAX_FINDINGS]
    shown = {i: _finding(i + 1, raws[i]) for i in order}
    candidates = {i: [e for e in raws[i].get("evidence") or [] if isinstance(e, dict)][:PER_FINDING] for i in order}
    for first_pass in (True, False):
        for i in order:
            finding, wanted = shown[i], candidates[i]
            stop = min(1, len(wanted)) if first_pass else len(wanted)
            while len(finding.evidence) < stop and budget > 0:
                sample = Evidence.of(wanted[len(finding.evidence)])
                cost = sample.size()
                if cost > budget:
                    budget = 0
                    break
                budget -= cost
                finding.evidence.append(sample)
    for finding in shown.values():
        finding.dropped = finding.listed - len(finding.evidence)
        finding.unkept = max(finding.count - finding.listed, 0)
    return [shown[i] for i in order]


def by_severity(items: list[Finding]) -> list[tuple[str, list[Finding]]]:
    return [(s, [f for f in items if f.severity == s]) for s in SEVERITIES if any(f.severity == s for f in items)]


# --- time axis of the coverage chart -------------------------------------------------------------


@dataclass
class Bar:
    label: str
    detail: str
    x: float  # percent of the axis
    width: float
    gaps: list[tuple[float, float]] = field(default_factory=list)
    kind: str = "log"  # log | exposure | empty


@dataclass
class Axis:
    start: datetime
    end: datetime
    bars: list[Bar]
    ticks: list[tuple[float, str]]


def _span(values: list[datetime | None]) -> tuple[datetime, datetime] | None:
    present = [v for v in values if v is not None]
    return (min(present), max(present)) if present else None


def _pct(axis: tuple[datetime, datetime], t: datetime) -> float:
    total = (axis[1] - axis[0]).total_seconds() or 1.0
    return max(0.0, min(100.0, (t - axis[0]).total_seconds() / total * 100.0))


def _gaps(raw: object) -> list[tuple[datetime, datetime]]:
    """Gaps inside a family's span, when the document lists them ({first, last} or [first, last])."""
    out = []
    for gap in raw if isinstance(raw, list) else []:
        a, b = (gap.get("first"), gap.get("last")) if isinstance(gap, dict) else (gap[:2] if len(gap) > 1 else ("", ""))
        start, end = parse_time(a), parse_time(b)
        if start and end:
            out.append((start, end))
    return out


def coverage_axis(doc: dict[str, Any]) -> Axis | None:
    """Each log family's span (and the build windows) on one time axis covering the logs and findings."""
    coverage = [c for c in doc.get("coverage") or [] if isinstance(c, dict)]
    times: list[datetime | None] = []
    for c in coverage:
        times += [parse_time(c.get("first")), parse_time(c.get("last"))]
    if not any(times):  # no timed logs: the findings' times make the axis
        for f in findings(doc):
            times += [parse_time(f.get("first_seen")), parse_time(f.get("last_seen"))]
    span = _span(times)
    if span is None:
        return None
    start, end = span
    if end - start < timedelta(hours=1):
        end = start + timedelta(hours=1)
    axis = (start, end)
    bars: list[Bar] = []
    for c in coverage:
        first, last = parse_time(c.get("first")), parse_time(c.get("last"))
        label = str(c.get("title") or c.get("family") or "")
        detail = f"{c.get('files', 0)} files · {c.get('records', 0)} records · {c.get('first') or '?'} → {c.get('last') or '?'}"
        if first is None or last is None:
            bars.append(Bar(label, detail + " (no timed records)", 0, 0, kind="empty"))
            continue
        x = _pct(axis, first)
        gaps = [(_pct(axis, a), _pct(axis, b) - _pct(axis, a)) for a, b in _gaps(c.get("gaps"))]
        bars.append(Bar(label, detail, x, max(_pct(axis, last) - x, 0.3), gaps))
    for w in (doc.get("exposure") or {}).get("windows") or []:
        if not isinstance(w, dict):
            continue
        first, last = parse_time(w.get("first_seen")), parse_time(w.get("last_seen"))
        if first is None or last is None or last < start or first > end:
            continue
        x = _pct(axis, first)
        bars.append(
            Bar(
                f"build {w.get('build', '?')}",
                str(w.get("text") or ""),
                x,
                max(_pct(axis, last) - x, 0.3),
                kind="exposure",
            )
        )
    steps = 6
    ticks = []
    for i in range(steps + 1):
        t = start + (end - start) * i / steps
        ticks.append((i * 100.0 / steps, t.strftime("%Y-%m-%d %H:%M")))
    return Axis(start, end, bars, ticks)


# --- data for the interactive timeline -----------------------------------------------------------


def chart_data(doc: dict[str, Any], shown: list[Finding]) -> dict[str, Any]:
    """Points [seconds, severity rank, finding number] for every evidence time in the document (a
    finding without timed evidence contributes its first and last time), and finding labels."""
    points: list[tuple[float, int, int]] = []
    for number, raw in enumerate(findings(doc), 1):
        rank = SEVERITY_RANK.get(str(raw.get("severity")).lower(), 0)
        times = [parse_time(e.get("time")) for e in raw.get("evidence") or [] if isinstance(e, dict)]
        timed = [t for t in times if t is not None]
        if not timed:
            timed = [t for t in (parse_time(raw.get("first_seen")), parse_time(raw.get("last_seen"))) if t]
        points += [(round(t.timestamp(), 3), rank, number) for t in dict.fromkeys(timed)]
    points.sort()
    if len(points) > MAX_POINTS:  # an even sample, keeping the first and last
        step = (len(points) - 1) / (MAX_POINTS - 1)
        points = [points[round(i * step)] for i in range(MAX_POINTS)]
    labels = {str(f.number): [f.title, f.severity, f.host, f.count] for f in shown}
    return {"points": points, "findings": labels, "severities": list(reversed(SEVERITIES)), "view": _view(doc, points)}


def _view(doc: dict[str, Any], points: list[tuple[float, int, int]]) -> list[float] | None:
    """The chart's first zoom: the logs' time span (padded) when points fall inside it, so one file
    time months away does not squeeze the attack into a few pixels; double-click shows everything."""
    span = _span(
        [parse_time(c.get(k)) for c in doc.get("coverage") or [] if isinstance(c, dict) for k in ("first", "last")]
    )
    if span is None or not points:
        return None
    pad = max((span[1] - span[0]).total_seconds() * 0.02, 600.0)
    low, high = span[0].timestamp() - pad, span[1].timestamp() + pad
    inside = sum(low <= p[0] <= high for p in points)
    if inside == 0 or inside == len(points):
        return None
    return [low, high]


def rules_ran(doc: dict[str, Any]) -> tuple[list[dict[str, str]], bool]:
    """The rules that ran ((rows, complete)): the document's `rules` list when it has one, else only
    the rules that produced findings (complete False)."""
    listed = doc.get("rules")
    if isinstance(listed, list):
        rows = []
        for r in listed:
            if isinstance(r, dict):
                rows.append({k: joined(r.get(k)) for k in ("id", "title", "severity", "version", "source")})
            else:
                rows.append({"id": str(r), "title": "", "severity": "", "version": "", "source": ""})
        return rows, True
    seen: dict[str, dict[str, str]] = {}
    for f in findings(doc):
        rid = str(f.get("rule") or "")
        seen.setdefault(
            rid, {"id": rid, "title": str(f.get("title") or ""), "severity": "", "version": "", "source": ""}
        )
    return sorted(seen.values(), key=lambda r: r["id"]), False


def cell_text(value: object) -> str:
    """A table cell: lists joined, evidence references as path:line, numbers with separators."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        if "path" in value:
            line = value.get("line")
            return cut(str(value.get("path") or "") + (f":{line}" if isinstance(line, int) else ""), 600)
        return cut(", ".join(f"{k}={cell_text(v)}" for k, v in value.items()), 600)
    if isinstance(value, list):
        return cut("; ".join(cell_text(v) for v in value), 600)
    return cut(value, 600)


def table(rows: object) -> tuple[list[str], list[list[str]]] | None:
    """A list of objects as (columns, rows of cut text), for sections whose shape may grow."""
    if not isinstance(rows, list):
        return None
    dicts = [r for r in rows if isinstance(r, dict)]
    columns: list[str] = []
    for r in dicts:
        columns += [str(k) for k in r if str(k) not in columns]
    body = [[cell_text(r.get(c)) for c in columns] for r in dicts]
    body += [[cell_text(r)] + [""] * (len(columns) - 1) for r in rows if not isinstance(r, dict)]
    return columns or ["value"], body


@dataclass
class Heatmap:
    hours: list[str]
    labels: list[str]  # the hour of day, HH
    rows: list[tuple[str, list[tuple[int, int]]]]  # host, [(count, level 0-5)]


def heatmap(raw: object) -> Heatmap | None:
    """Hourly counts per host as a heatmap: {host: {hour: count}} or [{host, hour, count}]."""
    cells: dict[str, dict[str, int]] = {}
    if isinstance(raw, dict):
        for host, hours in raw.items():
            if isinstance(hours, dict):
                cells[str(host)] = {str(h): int(c) for h, c in hours.items() if isinstance(c, int | float)}
    elif isinstance(raw, list):
        for r in raw:
            if isinstance(r, dict) and isinstance(r.get("count"), int | float):
                cells.setdefault(str(r.get("host", "")), {})[str(r.get("hour", ""))] = int(r["count"])
    if not cells:
        return None
    hours = sorted({h for per in cells.values() for h in per})[-24 * 14 :]
    peak = max((c for per in cells.values() for c in per.values()), default=0) or 1
    rows = []
    for host in sorted(cells):
        counts = [cells[host].get(h, 0) for h in hours]
        rows.append((host, [(c, 0 if c == 0 else 1 + min(4, int(c / peak * 4.999))) for c in counts]))
    labels = [h.split("T", 1)[1][:2] if "T" in h else h[-2:] for h in hours]
    return Heatmap(hours, labels, rows)


def generated_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Step:
    time: str
    phase: str
    technique: str
    host: str
    title: str
    finding: int | None
    evidence: str


def timeline_rows(raw: object) -> list[Step] | None:
    """The intrusion timeline ({time, phase, technique, host, title, finding, evidence: {path, line}})."""
    if not isinstance(raw, list):
        return None
    steps = []
    for r in raw:
        if not isinstance(r, dict):
            continue
        ev = r.get("evidence") if isinstance(r.get("evidence"), dict) else {}
        where = str(ev.get("path") or "") + (f":{ev['line']}" if isinstance(ev.get("line"), int) else "")
        finding = r.get("finding")
        steps.append(
            Step(
                time=str(r.get("time") or ""),
                phase=str(r.get("phase") or ""),
                technique=joined(r.get("technique")),
                host=str(r.get("host") or ""),
                title=cut(r.get("title") or "", 600),
                finding=finding if isinstance(finding, int) and not isinstance(finding, bool) else None,
                evidence=cut(where, 600),
            )
        )
    return steps
