"""The terminal summary (the `terminal` writer): verdict, coverage, exposure, findings by severity,
problems. It renders the result document, so a saved case prints exactly as the scan did. Every
value from the evidence goes through `terminal_text`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from exhunt.output.safe import terminal_text as t
from exhunt.result import ScanResult

VERDICT_STYLE = {
    "COMPROMISED": "bold white on red",
    "SUSPICIOUS": "bold black on yellow",
    "NO EVIDENCE FOUND": "bold white on green",
    "INCOMPLETE": "bold black on cyan",
}
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def write(doc: dict[str, Any], out: TextIO) -> None:
    """The summary as plain text (the `terminal` output format)."""
    render(doc, Console(file=out, width=120, color_system=None, emoji=False, highlight=False))


def render(result: ScanResult | dict[str, Any], console: Console, max_evidence: int = 2) -> None:
    doc = result.to_dict() if isinstance(result, ScanResult) else result
    stats = doc.get("stats", {})
    console.print(
        Panel(
            f"[{VERDICT_STYLE.get(doc['verdict'], 'bold')}] {t(doc['verdict'])} [/]  {t(doc['reason'])}",
            title=f"exhunt scan · {t(doc['collection'])}",
            subtitle=f"{stats.get('artifacts', 0)} files · {stats.get('records', 0):,} records · "
            f"{stats.get('seconds', 0):.1f} s",
        )
    )
    if doc.get("incident"):
        from exhunt.analytics.summary import render_incident

        render_incident(doc["incident"], console)
    cov = Table(title="Coverage", title_justify="left", show_edge=False)
    for col in ("log family", "files", "records", "first (UTC)", "last (UTC)"):
        cov.add_column(col, justify="right" if col in ("files", "records") else "left")
    for c in doc.get("coverage", []):
        cov.add_row(t(c["title"]), str(c["files"]), f"{c['records']:,}", _minute(c["first"]), _minute(c["last"]))
    console.print(cov)
    for line in doc.get("missing", []):
        console.print(f"[yellow]missing:[/] {t(line)}")
    for line in doc.get("warnings", []):
        console.print(f"[yellow]warning:[/] {t(line)}")
    exposure = doc.get("exposure") or {}
    for line in exposure.get("text", []):
        console.print(f"[bold]exposure:[/] {t(line, 400)}")
    for m in exposure.get("mitigations", []):
        console.print(
            f"[bold]mitigation:[/] {t(m['family'])}: {t(m['status'])} ({t(m['rule_name'])}, {t(m['path'], 120)}:{m['line']})"
        )
    findings = doc.get("findings", [])
    if findings:
        console.rule(f"Findings ({len(findings)})", align="left")
        minor: dict[str, list[dict[str, Any]]] = {}
        for f in findings:
            if f["severity"] in ("low", "info"):
                minor.setdefault(f["rule"], []).append(f)
            else:
                _finding(f, console, max_evidence)
        for group in minor.values():
            _summary(group, console)
    else:
        console.print("[green]No findings.[/]")
    errors = doc.get("errors", [])
    if errors:
        console.print(f"[yellow]{len(errors)} problem(s) reading the collection[/] (all else was scanned):")
        for e in errors[:10]:
            where = f"{e['path']}:{e['line']}" if e.get("line") else e["path"]
            console.print(f"  [dim]{t(where, 120)}[/]  {t(e['reason'], 200)}")
        if len(errors) > 10:
            console.print(f"  … {len(errors) - 10} more in the JSON output (errors[])")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.removesuffix("Z")) if value else None


def _minute(value: str | None) -> str:
    when = _time(value)
    return f"{when:%Y-%m-%d %H:%M}" if when else "-"


def _finding(f: dict[str, Any], console: Console, max_evidence: int) -> None:
    style = SEVERITY_STYLE.get(f["severity"], "")
    console.print(f"[{style}]{f['severity'].upper():<8}[/] [bold]{t(f['title'])}[/]")
    tags = " · ".join(filter(None, [t(f["rule"]), t(", ".join(f["cves"])), t(", ".join(f["attack"]))]))
    console.print(f"{'':9}[dim]{tags}[/]")
    first, last = _time(f["first_seen"]), _time(f["last_seen"])
    span = "-"
    if first:
        span = f"{first:%Y-%m-%d %H:%M:%S}"
        if last and last != first:
            span += f" → {last:%Y-%m-%d %H:%M:%S}"
    group = " ".join(f"{t(k, 40)}={t(v, 80)}" for k, v in f["group"].items() if v is not None)
    console.print(f"{'':9}{t(f['host'])} · {group + ' · ' if group else ''}{f['count']:,} hit(s) · {span} UTC")
    if f.get("note"):
        console.print(f"{'':9}[dim]{t(f['note'])}[/]")
    evidence = f.get("evidence", [])
    for e in evidence[:max_evidence]:
        where = (
            f"{e['path']}:{e['line']}"
            if e["line"] is not None
            else (f"{e['path']} #{e['record_id']}" if e["record_id"] else e["path"])
        )
        console.print(f"{'':9}↳ {t(where, 160)}", soft_wrap=True)
        if e.get("raw"):
            console.print(f"{'':11}[dim]{t(e['raw'], 200)}[/]", soft_wrap=True)
    if len(evidence) > max_evidence:
        console.print(f"{'':9}[dim]… {len(evidence) - max_evidence} more sample(s) in --json / --case[/]")


def _summary(group: list[dict[str, Any]], console: Console) -> None:
    """Low and informational findings of one rule on one line; the JSON output has each of them."""
    f = group[0]
    hits = sum(x["count"] for x in group)
    firsts = [x for x in (_time(x["first_seen"]) for x in group) if x]
    lasts = [x for x in (_time(x["last_seen"]) for x in group) if x]
    span = f" · {min(firsts):%Y-%m-%d} → {max(lasts):%Y-%m-%d}" if firsts and lasts else ""
    console.print(f"[{SEVERITY_STYLE.get(f['severity'], '')}]{f['severity'].upper():<8}[/] [bold]{t(f['title'])}[/]")
    note = f" · {t(f['note'])}" if f.get("note") else ""
    console.print(
        f"{'':9}[dim]{t(f['rule'])} · {len(group)} group(s), {hits:,} hit(s){span}{note} (details: --json)[/]"
    )
