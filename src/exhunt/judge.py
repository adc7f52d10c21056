"""Severity in context and the verdict.

Context rules (LSASS dumps, staging archives) are reported always but raised to their `escalate_to`
severity only when the same host shows exploitation, which is how Test-ProxyLogon keeps vendor
archives from looking like compromise. An exploited flaw followed by a shell or a post-exploitation
step on the same host is critical. "No evidence" is only said when everything that could hold
evidence was read and the exploitation checks had web logs to run on.
"""

from __future__ import annotations

from datetime import datetime

from exhunt.result import Finding, Problem, Verdict
from exhunt.rules.model import SEVERITIES

COMPROMISE_KINDS = {"exploitation", "webshell", "post-exploitation"}


def severity_rank(sev: str) -> int:
    return SEVERITIES.index(sev)


def judge(findings: list[Finding], has_web_logs: bool, problems: list[Problem]) -> Verdict:
    """Escalate and compose severities (in place), order the findings, and give the verdict."""
    escalate_context(findings)
    compose_severity(findings)
    findings.sort(key=lambda f: (-severity_rank(f.severity), f.first_seen or datetime.max, f.rule.id))
    return verdict(findings, has_web_logs, problems)


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


def verdict(findings: list[Finding], has_web_logs: bool, problems: list[Problem] | None = None) -> Verdict:
    """The one-line answer and its reason."""
    top = max((severity_rank(f.severity) for f in findings if f.rule.kind != "scanning"), default=-1)
    if top >= severity_rank("high"):
        worst = sorted(
            (f for f in findings if severity_rank(f.severity) == top), key=lambda f: f.first_seen or datetime.max
        )
        titles = list(dict.fromkeys(f.rule.title for f in worst))  # in time order: how the intrusion began
        return Verdict("COMPROMISED", f"{len(worst)} {SEVERITIES[top]} finding(s): " + "; ".join(titles[:3]))
    if top == severity_rank("medium"):
        titles = sorted({f.rule.title for f in findings if f.severity == "medium"})
        return Verdict("SUSPICIOUS", "medium finding(s): " + "; ".join(titles[:3]))
    if not has_web_logs:
        return Verdict("INCOMPLETE", "no IIS or HttpProxy logs were found: the exploitation checks could not run")
    missed = list(dict.fromkeys(p.path for p in problems or [] if p.missed))
    if missed:
        shown = ", ".join(missed[:3]) + (f" and {len(missed) - 3} more" if len(missed) > 3 else "")
        return Verdict(
            "INCOMPLETE", f"nothing found, but {len(missed)} input(s) could not be read in full: {shown} (see errors)"
        )
    return Verdict("NO EVIDENCE FOUND", "no rule matched above low severity in the logs, events and files read")
