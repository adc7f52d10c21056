"""`exhunt exposure`: was this build / this server exposed to ProxyLogon-era bugs, and what fixes it."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from exhunt.errors import UsageError
from exhunt.exposure.builds import PATCHED, PROBABLY_PATCHED, VULNERABLE, Assessment, assess, parse_build
from exhunt.exposure.probe import ProbeResult, probe_url
from exhunt.output.safe import (
    safe_console,
    terminal_text,  # markup and control characters: page text comes from the network
)

MAX_TIMEOUT = 300.0
_STYLE = {VULNERABLE: "bold red", PATCHED: "green", PROBABLY_PATCHED: "yellow"}

HELP = (
    "Say whether an Exchange build was vulnerable to ProxyLogon, ProxyShell, ProxyNotShell and OWASSRF, "
    "the update (KB) that fixes each, and the CU the build belongs to. Exit status 0 even when vulnerable."
)
BUILD_HELP = "Exchange build, e.g. 15.1.2176.9 or 15.01.2176.009 (ExSetup.exe file version or log #Version)."
URL_HELP = (
    "Passively read the build of a server YOU ARE RESPONSIBLE FOR (only use it on your own servers): "
    "plain GETs of /owa/auth/logon.aspx, /owa/ and the ECP export tool manifest; no exploit traffic."
)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f]", " ", text)).strip()


def _fail(error: UsageError) -> typer.Exit:
    typer.echo(f"exhunt: error: {_one_line(str(error))}", err=True)
    return typer.Exit(2)


def _run(build: str | None, url: str | None, timeout: float, insecure: bool) -> Assessment | ProbeResult:
    if (build is None) == (url is None):
        raise UsageError("give exactly one of --build or --url")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be between 0 and {MAX_TIMEOUT:g} seconds")
    if build is not None:
        return assess(parse_build(build))
    return probe_url(url or "", timeout=timeout, verify_tls=not insecure)


def _status(status: str) -> str:
    style = _STYLE.get(status, "dim")
    return f"[{style}]{terminal_text(status)}[/{style}]"


def _table(assessment: Assessment) -> Table:
    title = f"{assessment.build}: {assessment.where}"
    table = Table(title=terminal_text(title), show_lines=True)
    for column in ("Family", "Status", "CVEs", "Fixed by", "Notes"):
        table.add_column(column)
    for fam in assessment.families:
        cves = "\n".join(f"{terminal_text(c.cve)} {_status(c.status)}" for c in fam.cves)
        notes = dict.fromkeys(n for n in [fam.note, *(c.note for c in fam.cves)] if n)
        table.add_row(
            terminal_text(fam.label),
            _status(fam.status),
            cves,
            terminal_text(", ".join(fam.fixed_by)),
            terminal_text("\n".join(notes)),
        )
    return table


def _render(console: Console, result: Assessment | ProbeResult) -> None:
    if isinstance(result, ProbeResult):
        console.print(terminal_text(result.message))
        for evidence in result.evidence:
            console.print(f"  seen: {terminal_text(evidence.value)} ({terminal_text(evidence.source)})")
        if result.assessment is None:
            return
        result = result.assessment
    if result.note:
        console.print(terminal_text(result.note))
    console.print(_table(result))


def exposure(
    build: Annotated[str | None, typer.Option("--build", help=BUILD_HELP)] = None,
    url: Annotated[str | None, typer.Option("--url", help=URL_HELP)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request for --url.")] = 10.0,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify TLS certificates (--url).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout.")] = False,
) -> None:
    try:
        result = _run(build, url, timeout, insecure)
    except UsageError as error:
        raise _fail(error) from None
    if as_json:
        payload: dict[str, Any] = {"kind": "probe" if isinstance(result, ProbeResult) else "build"}
        payload.update(result.to_dict())
        typer.echo(json.dumps(payload, indent=2))
        return
    _render(safe_console(), result)


def register(app: typer.Typer) -> None:
    """Add the `exposure` command to the exhunt CLI."""
    app.command("exposure", help=HELP)(exposure)
