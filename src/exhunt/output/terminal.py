"""The rich terminal summary: verdict, coverage, findings by severity, errors."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from exhunt.findings import Finding
from exhunt.output.safe import terminal_text as t
from exhunt.scan import ScanResult

VERDICT_STYLE = {
    "COMPROMISED": "bold white on red",
    "SUSPICIOUS": "bold black on yellow",
    "NO EVIDENCE FOUND": "bold white on green",
    "INCOMPLETE": "bold black on cyan",
}
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def render(result: ScanResult, console: Console, max_evidence: int = 2) -> None:
    console.print(
        Panel(
            f"[{VERDICT_STYLE[result.verdict]}] {result.verdict} [/]  {t(result.reason)}",
            title=f"exhunt scan · {t(result.collection)}",
            subtitle=f"{result.artifacts} files · {result.records:,} records · {result.seconds:.1f} s",
        )
    )
    cov = Table(title="Coverage", title_justify="left", show_edge=False)
    for col in ("log family", "files", "records", "first (UTC)", "last (UTC)"):
        cov.add_column(col, justify="right" if col in ("files", "records") else "left")
    for c in result.coverage:
        cov.add_row(
            c.title, str(c.files), f"{c.records:,}",
            f"{c.first:%Y-%m-%d %H:%M}" if c.first else "-", f"{c.last:%Y-%m-%d %H:%M}" if c.last else "-",
        )  # fmt: skip
    console.print(cov)
    for line in result.missing:
        console.print(f"[yellow]missing:[/] {t(line)}")
    for line in result.warnings:
        console.print(f"[yellow]warning:[/] {t(line)}")
    exposure = result.extras.get("exposure") or {}
    for line in exposure.get("text", []):
        console.print(f"[bold]exposure:[/] {t(line, 400)}")
    for m in exposure.get("mitigations", []):
        console.print(
            f"[bold]mitigation:[/] {t(m['family'])}: {t(m['status'])} ({t(m['rule_name'])}, {t(m['path'], 120)}:{m['line']})"
        )
    if result.findings:
        console.rule(f"Findings ({len(result.findings)})", align="left")
        minor: dict[str, list[Finding]] = {}
        for f in result.findings:
            if f.severity in ("low", "info"):
                minor.setdefault(f.rule.id, []).append(f)
            else:
                _finding(f, console, max_evidence)
        for group in minor.values():
            _summary(group, console)
    else:
        console.print("[green]No findings.[/]")
    if result.errors:
        console.print(f"[yellow]{len(result.errors)} problem(s) reading the collection[/] (all else was scanned):")
        for e in result.errors[:10]:
            where = f"{e['path']}:{e['line']}" if e.get("line") else e["path"]
            console.print(f"  [dim]{t(where, 120)}[/]  {t(e['reason'], 200)}")
        if len(result.errors) > 10:
            console.print(f"  … {len(result.errors) - 10} more in the JSON output (errors[])")


def _finding(f: Finding, console: Console, max_evidence: int) -> None:
    style = SEVERITY_STYLE[f.severity]
    console.print(f"[{style}]{f.severity.upper():<8}[/] [bold]{t(f.rule.title)}[/]")
    tags = " · ".join(filter(None, [f.rule.id, ", ".join(f.rule.cves), ", ".join(f.rule.attack)]))
    console.print(f"{'':9}[dim]{tags}[/]")
    span = "-"
    if f.first_seen:
        span = f"{f.first_seen:%Y-%m-%d %H:%M:%S}"
        if f.last_seen and f.last_seen != f.first_seen:
            span += f" → {f.last_seen:%Y-%m-%d %H:%M:%S}"
    group = " ".join(f"{k}={t(v, 80)}" for k, v in f.group.items() if v is not None)
    console.print(f"{'':9}{t(f.host)} · {group + ' · ' if group else ''}{f.count:,} hit(s) · {span} UTC")
    if f.note:
        console.print(f"{'':9}[dim]{t(f.note)}[/]")
    for e in f.evidence[:max_evidence]:
        where = f"{e.path}:{e.line}" if e.line is not None else (f"{e.path} #{e.record_id}" if e.record_id else e.path)
        console.print(f"{'':9}↳ {t(where, 160)}", soft_wrap=True)
        if e.raw:
            console.print(f"{'':11}[dim]{t(e.raw, 200)}[/]", soft_wrap=True)
    if len(f.evidence) > max_evidence:
        console.print(f"{'':9}[dim]… {len(f.evidence) - max_evidence} more sample(s) in --json / --case[/]")


def _summary(group: list[Finding], console: Console) -> None:
    """Low and informational findings of one rule on one line; the JSON output has each of them."""
    f = group[0]
    hits = sum(x.count for x in group)
    first = min((x.first_seen for x in group if x.first_seen), default=None)
    last = max((x.last_seen for x in group if x.last_seen), default=None)
    span = f" · {first:%Y-%m-%d} → {last:%Y-%m-%d}" if first and last else ""
    console.print(f"[{SEVERITY_STYLE[f.severity]}]{f.severity.upper():<8}[/] [bold]{t(f.rule.title)}[/]")
    note = f" · {t(f.note)}" if f.note else ""
    console.print(f"{'':9}[dim]{f.rule.id} · {len(group)} group(s), {hits:,} hit(s){span}{note} (details: --json)[/]")
