"""Findings, evidence and the verdict.

A finding is one rule's hits from one host and one group (by default one client IP), with a count,
first/last time and sample evidence. Context rules (LSASS dumps, staging archives) are reported
always but raised to their `escalate_to` severity only when the same host shows exploitation,
which is how Test-ProxyLogon keeps vendor archives from looking like compromise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exhunt.rules.model import SEVERITIES, Rule

COMPROMISE_KINDS = {"exploitation", "webshell", "post-exploitation"}


def severity_rank(sev: str) -> int:
    return SEVERITIES.index(sev)


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
            "time": _iso(self.time),
            "record": self.record,
            "raw": self.raw,
        }


@dataclass
class Finding:
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
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "count": self.count,
            "note": self.note,
            "evidence": [e.to_dict() for e in self.evidence],
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() + "Z" if t is not None and t.tzinfo is None else (t.isoformat() if t else None)


def escalate_context(findings: list[Finding]) -> None:
    """Raise context findings on hosts that show exploitation (in place)."""
    exploited = {
        f.host
        for f in findings
        if f.rule.kind in COMPROMISE_KINDS and severity_rank(f.severity) >= severity_rank("high")
    }
    for f in findings:
        if f.rule.kind == "context" and f.rule.escalate_to and f.host in exploited:
            if severity_rank(f.rule.escalate_to) > severity_rank(f.severity):
                f.severity = f.rule.escalate_to
                f.note = "raised: the same host shows exploitation"
        elif f.rule.kind == "context" and f.rule.escalate_to:
            f.note = "context only: no exploitation found on this host"


def compose_severity(findings: list[Finding]) -> None:
    """An exploited vulnerability with a follow-up on the same host (a shell written or used, a
    post-exploitation step) is critical; a lone indicator stays as its rule says (in place)."""
    followed = {
        f.host
        for f in findings
        if f.rule.kind in ("webshell", "post-exploitation") and severity_rank(f.severity) >= severity_rank("high")
    }
    for f in findings:
        if f.rule.kind == "exploitation" and f.severity == "high" and f.host in followed:
            f.severity = "critical"
            f.note = "raised: exploitation followed by a web shell or post-exploitation step on this host"


def verdict(findings: list[Finding], has_web_logs: bool) -> tuple[str, str]:
    """The one-line answer and its reason."""
    top = max((severity_rank(f.severity) for f in findings if f.rule.kind != "scanning"), default=-1)
    if top >= severity_rank("high"):
        worst = sorted(
            (f for f in findings if severity_rank(f.severity) == top), key=lambda f: f.first_seen or datetime.max
        )
        titles = list(dict.fromkeys(f.rule.title for f in worst))  # in time order: how the intrusion began
        return "COMPROMISED", f"{len(worst)} {SEVERITIES[top]} finding(s): " + "; ".join(titles[:3])
    if top == severity_rank("medium"):
        titles = sorted({f.rule.title for f in findings if f.severity == "medium"})
        return "SUSPICIOUS", "medium finding(s): " + "; ".join(titles[:3])
    if not has_web_logs:
        return "INCOMPLETE", "no IIS or HttpProxy logs were found: the exploitation checks could not run"
    return "NO EVIDENCE FOUND", "no rule matched above low severity in the logs, events and files read"


def exit_code(verdict_text: str) -> int:
    return {"NO EVIDENCE FOUND": 0, "COMPROMISED": 1, "SUSPICIOUS": 1, "INCOMPLETE": 3}[verdict_text]
