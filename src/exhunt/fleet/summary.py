"""Terminal summary of a fleet run (rich). Host, tenant and indicator text comes from the evidence
(folder names, log fields): every such value goes through terminal_text."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from exhunt.output.safe import terminal_text as tt

_STYLE = {"COMPROMISED": "bold red", "SUSPICIOUS": "yellow", "FAILED": "bold magenta", "INCOMPLETE": "magenta",
          "NO EVIDENCE FOUND": "green"}  # fmt: skip


def render(doc: dict[str, Any], console: Console, limit: int = 30) -> None:
    fleet, stats = doc["fleet"], doc["stats"]
    style = _STYLE.get(doc["verdict"], "")
    console.print(
        f"[{style}] {tt(doc['verdict'])} [/] fleet {tt(doc['root'], 200)}: {stats['hosts']} host(s), "
        f"{stats['scanned']} scanned, {stats['reused']} unchanged since the last run, {stats['failed']} failed · "
        f"{stats['bytes_read'] / 1e6:.1f} MB in {stats['seconds']:.1f} s"
        + (" · [bold]interrupted[/]" if doc.get("interrupted") else ""),
        highlight=False,
    )
    hosts = Table(title="Hosts by severity and first compromise", title_justify="left", show_edge=False)
    for col in ("#", "host", "tenant", "verdict", "severity", "first compromise", "joined wave"):
        hosts.add_column(col, overflow="fold")
    for h in fleet["hosts"][:limit]:
        v = h["verdict"]
        hosts.add_row(
            str(h["rank"]), tt(h["name"], 60), tt(h["tenant"] or "-", 40), f"[{_STYLE.get(v, '')}]{tt(v)}[/]",
            tt(h["severity"] or "-"), tt(h["first_compromise"] or "-"), tt(h["join_hour"] or "-"),
        )  # fmt: skip
    console.print(hosts)
    for h in fleet["hosts"]:
        if h["verdict"] in ("FAILED", "INCOMPLETE"):
            tries = f" (tried {h['attempts']}x)" if h.get("attempts", 0) > 1 else ""
            console.print(
                f"[{_STYLE[h['verdict']]}]{tt(h['verdict'])}[/] {tt(h['key'], 120)}{tries}: {tt(h['reason'] or '-', 300)}",
                highlight=False,
            )
    if len(fleet["hosts"]) > limit:
        console.print(f"… {len(fleet['hosts']) - limit} more host(s) in fleet.json / fleet.duckdb")
    wave = fleet["wave"]
    if wave:
        order = " → ".join(tt(o["host"], 60) for o in wave["order"])
        console.print(
            f"[bold]Wave[/] from {tt(wave['start_hour'])} to {tt(wave['end_hour'])}: {wave['hosts']} host(s), "
            f"{wave['records']['exploitation']} exploitation and {wave['records']['webshell']} web-shell records; "
            f"order: {order}",
            highlight=False,
        )
    else:
        console.print("No fleet-wide wave: fewer than two hosts show an exploitation or web-shell spike.")
    m = fleet["method"]
    console.print(
        f"[dim]spikes: {tt(m['name'])}; baseline {tt(m['baseline'])}; count >= {m['min_count']}, "
        f"p < {m['alpha']}, floor {m['floor']}[/]",
        highlight=False,
    )
    for c in fleet["campaigns"][:10]:
        inds = ", ".join(f"{tt(i['type'])}={tt(i['value'], 80)}" for i in c["indicators"][:6])
        console.print(
            f"[bold]Campaign {tt(c['id'])}[/]: {len(c['hosts'])} host(s) in {len(c['tenants'])} tenant(s), "
            f"first {tt(c['first_seen'] or '-')}; shared: {inds}",
            highlight=False,
        )
    tenants = Table(title="Tenants", title_justify="left", show_edge=False)
    for col in ("tenant", "hosts", "compromised", "suspicious", "clean", "incomplete", "failed", "first compromise"):
        tenants.add_column(col)
    for t in fleet["tenants"]:
        tenants.add_row(
            tt(t["tenant"] or "-", 60), str(t["hosts"]), str(t["compromised"]), str(t["suspicious"]),
            str(t["clean"]), str(t["incomplete"]), str(t["failed"]), tt(t["first_compromise"] or t["note"] or "-"),
        )  # fmt: skip
    console.print(tenants)
    for h in fleet["hosts"]:
        if h.get("hourly_error"):
            console.print(f"[yellow]note[/] {tt(h['key'], 120)}: hourly counts not computed: {tt(h['hourly_error'])}")
    for p in fleet["problems"]:
        where = p.get("tenant") or p.get("host") or ""
        console.print(f"[yellow]note[/] {tt(where, 80)}: {tt(p['reason'], 200)}", highlight=False)
