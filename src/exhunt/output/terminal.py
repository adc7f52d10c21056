"""The rich terminal summary: verdict, coverage, findings by severity, errors."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

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
    if result.findings:
        table = Table(title="Findings", title_justify="left", show_lines=True, expand=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("finding")
        table.add_column("count", justify="right")
        table.add_column("first → last (UTC)", no_wrap=True)
        table.add_column("evidence")
        for f in result.findings:
            group = ", ".join(f"{k}={t(v, 60)}" for k, v in f.group.items() if v is not None)
            ids = " ".join(filter(None, [", ".join(f.rule.cves), ", ".join(f.rule.attack)]))
            title = f"[bold]{t(f.rule.title)}[/]\n[dim]{f.rule.id}  {ids}[/]"
            if group:
                title += f"\n{group}"
            if f.note:
                title += f"\n[dim]{t(f.note)}[/]"
            ev = "\n".join(
                f"{t(e.path, 90)}:{e.line if e.line is not None else (e.record_id or '-')}"
                for e in f.evidence[:max_evidence]
            )
            if len(f.evidence) > max_evidence:
                ev += f"\n… {len(f.evidence) - max_evidence} more"
            span = "-"
            if f.first_seen:
                span = f"{f.first_seen:%Y-%m-%d %H:%M}"
                if f.last_seen and f.last_seen != f.first_seen:
                    span += f"\n{f.last_seen:%Y-%m-%d %H:%M}"
            table.add_row(f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]", title, str(f.count), span, ev)
        console.print(table)
    else:
        console.print("[green]No findings.[/]")
    if result.errors:
        console.print(f"[yellow]{len(result.errors)} problem(s) reading the collection[/] (all else was scanned):")
        for e in result.errors[:10]:
            where = f"{e['path']}:{e['line']}" if e.get("line") else e["path"]
            console.print(f"  [dim]{t(where, 120)}[/]  {t(e['reason'], 200)}")
        if len(result.errors) > 10:
            console.print(f"  … {len(result.errors) - 10} more in the JSON output (errors[])")
