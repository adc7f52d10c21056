"""The scan result as typed data: verdict, coverage, findings with evidence, exposure, problems, stats.

Every stage hands these on; writers (`exhunt.writers`) render the JSON document `ScanResult.to_dict`
gives (schema in docs/json-schema.md), so a fresh scan and a saved case print the same way. Nothing
here depends on the CLI or on the case database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exhunt import __version__
from exhunt.rules.model import Rule

SCHEMA_VERSION = "1.0"  # new fields may appear within 1.x (docs/json-schema.md)
EXIT_CODES = {"NO EVIDENCE FOUND": 0, "COMPROMISED": 1, "SUSPICIOUS": 1, "INCOMPLETE": 3}


def iso(t: datetime | None) -> str | None:
    """ISO 8601 UTC (naive times are UTC throughout exhunt)."""
    return t.isoformat() + "Z" if t is not None and t.tzinfo is None else (t.isoformat() if t else None)


@dataclass(frozen=True)
class Problem:
    """Something that was not read, stored, run or re-read, and why. `stage`: inventory, read, store,
    detect, evidence."""

    path: str
    line: int | None
    reason: str
    stage: str = "read"
    missed: bool = True  # something that could hold evidence was not read (False: a note, e.g. an empty file)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "reason": self.reason, "stage": self.stage}


@dataclass
class FamilyCoverage:
    """What one log family covers. `first`/`last` are where the bulk of records lies (0.1 %-99.9 %);
    records outside that span are counted in `outliers` and the extremes kept in `earliest`/`latest`."""

    family: str  # case table
    title: str
    files: int
    records: int
    first: datetime | None
    last: datetime | None
    earliest: datetime | None = None
    latest: datetime | None = None
    outliers: int = 0
    notes: list[str] = field(default_factory=list)  # how the records were read when not from the raw log

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "title": self.title,
            "files": self.files,
            "records": self.records,
            "first": iso(self.first),
            "last": iso(self.last),
            "earliest": iso(self.earliest),
            "latest": iso(self.latest),
            "outliers": self.outliers,
            "notes": list(self.notes),
        }


@dataclass
class Evidence:
    path: str
    line: int | None
    record_id: int | None
    time: datetime | None
    record: dict[str, Any]
    raw: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "record_id": self.record_id,
            "time": iso(self.time),
            "record": self.record,
            "raw": self.raw,
        }


@dataclass
class Finding:
    """One rule's hits from one host and one group (by default one client IP)."""

    rule: Rule
    host: str
    group: dict[str, Any]
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    severity: str
    evidence: list[Evidence] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "title": self.rule.title,
            "severity": self.severity,
            "confidence": self.rule.confidence,
            "kind": self.rule.kind,
            "campaign": self.rule.campaign,
            "cves": list(self.rule.cves),
            "attack": list(self.rule.attack),
            "host": self.host,
            "group": dict(self.group),
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "count": self.count,
            "note": self.note,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True)
class Verdict:
    text: str  # COMPROMISED, SUSPICIOUS, NO EVIDENCE FOUND, INCOMPLETE
    reason: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.text]


@dataclass
class Exposure:
    """Builds the collection shows as exposure windows, and the mitigations found in its configuration."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    mitigations: list[dict[str, Any]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # one line per window

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows, "mitigations": self.mitigations, "text": self.text}


@dataclass
class Stats:
    artifacts: int
    bytes_read: int
    records: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifacts": self.artifacts,
            "bytes_read": self.bytes_read,
            "records": self.records,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ScanResult:
    collection: str
    judgement: Verdict
    hosts: list[str]
    coverage: list[FamilyCoverage]
    missing: list[str]
    warnings: list[str]
    findings: list[Finding]
    problems: list[Problem]
    stats: Stats
    exposure: Exposure
    case: str | None
    rules: list[dict[str, str]] = field(default_factory=list)  # the rules that ran: id, title, severity, source
    rules_version: str = ""  # exhunt's version and a digest of the rule set
    notes: list[Problem] = field(default_factory=list)  # remarks on inputs that lose no record
    extras: dict[str, Any] = field(default_factory=dict)  # further sections (analytics), JSON-ready

    @property
    def verdict(self) -> str:
        return self.judgement.text

    @property
    def reason(self) -> str:
        return self.judgement.reason

    @property
    def exit_code(self) -> int:
        return self.judgement.exit_code

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The problems as `{path, line, reason}` (the JSON `errors[]` adds each one's `stage`)."""
        return [{"path": p.path, "line": p.line, "reason": p.reason} for p in self.problems]

    @property
    def artifacts(self) -> int:
        return self.stats.artifacts

    @property
    def records(self) -> int:
        return self.stats.records

    @property
    def seconds(self) -> float:
        return self.stats.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "exhunt.scan",
            "schema_version": SCHEMA_VERSION,
            "exhunt_version": __version__,
            "collection": self.collection,
            "verdict": self.verdict,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "hosts": self.hosts,
            "stats": self.stats.to_dict(),
            "coverage": [c.to_dict() for c in self.coverage],
            "missing": self.missing,
            "warnings": self.warnings,
            "findings": [f.to_dict() for f in self.findings],
            "errors": [p.to_dict() for p in self.problems],
            "notes": [p.to_dict() for p in self.notes],
            "exposure": self.exposure.to_dict(),
            "rules": self.rules,
            "rules_version": self.rules_version,
            "case": self.case,
            **self.extras,
        }
