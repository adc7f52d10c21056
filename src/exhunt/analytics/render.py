"""Terminal rendering of the timeline and its leads, and reading them back from a case file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console

from exhunt.case import CaseReader
from exhunt.errors import InputError
from exhunt.output.safe import terminal_text

PHASE_STYLE = {
    "reconnaissance": "dim", "initial access": "red", "persistence": "magenta", "execution": "yellow",
    "credential access": "bold red", "collection": "cyan", "exfiltration": "bold cyan", "defence evasion": "blue",
}  # fmt: skip


def load_case_timeline(path: Path) -> dict[str, Any]:
    """The `timeline`, `leads` and `mailbox_access` tables and the incident of a case file (read-only)."""
    if not path.is_file():
        raise InputError(f"no such case file: {path}")
    try:
        case = CaseReader.open_saved(path)
    except duckdb.Error as exc:
        raise InputError(f"{path}: not an exhunt case file ({str(exc).splitlines()[0][:200]})") from None
    try:
        tables = case.tables()
        if "timeline" not in tables:
            raise InputError(f"{path}: the case holds no timeline (scanned by an exhunt without analytics?)")
        out: dict[str, Any] = {}
        for name, json_cols in (
            ("timeline", ("ties", "tied_to", "evidence")),
            ("leads", ("via", "evidence")),
            ("mailbox_access", ("operations", "reasons", "evidence")),
        ):
            if name not in tables:
                out[name] = []
                continue
            rows = case.analysis_table(name)
            for r in rows:
                for c in json_cols:
                    if isinstance(r.get(c), str):
                        r[c] = json.loads(r[c])
            out[name] = rows
        result = case.meta("result") if "meta" in tables else None
        out["incident"] = ((result or {}).get("incident") if isinstance(result, dict) else None) or None
        return out
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot read the timeline ({str(exc).splitlines()[0][:200]})") from None
    finally:
        case.close()


def render_timeline(
    entries: list[dict[str, Any]], leads: list[dict[str, Any]], console: Console, *, host: str | None = None,
    limit: int = 400,
) -> None:  # fmt: skip
    """One story per host: time, phase, technique, what happened, and where the evidence is."""
    e = terminal_text
    hosts = sorted({x["host"] or "" for x in entries if host is None or x["host"] == host})
    for h in hosts:
        mine = [x for x in entries if (x["host"] or "") == h]
        console.rule(f"timeline · {e(h)} · {len(mine)} entries")
        for x in mine[:limit]:
            style = PHASE_STYLE.get(x["phase"], "")
            tech = f" {e(x['technique'])}" if x.get("technique") else ""
            console.print(
                f"{e((x['time'] or '?')[:19])}  [{style}]{e(x['phase']):<17}[/]{tech}  {e(x['title'], 200)}",
                highlight=False,
            )
            ev = x.get("evidence") or []
            if ev:
                first = ev[0]
                more = f" (+{len(ev) - 1})" if len(ev) > 1 else ""
                console.print(f"    ↳ {e(first.get('path'))}:{first.get('line')}{more}", highlight=False, style="dim")
        if len(mine) > limit:
            console.print(f'  … {len(mine) - limit} more (exhunt query CASE "SELECT * FROM timeline")')
    mine = [x for x in leads if host is None or x["host"] == host]
    if mine:
        console.rule(f"leads · {len(mine)}")
        for x in mine[:100]:
            via = ", ".join(x.get("via") or [])
            console.print(
                f"{e(x['kind']):<8} {e(x['value'])}  {x['count']} record(s) {e(x.get('first') or '')[:19]} → "
                f"{e(x.get('last') or '')[:19]}  via {e(via)}",
                highlight=False,
            )
