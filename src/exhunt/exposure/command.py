"""`exhunt exposure`: what an Exchange build is exposed to on a given day, and what fixes it."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from exhunt.errors import UsageError
from exhunt.exposure.answer import Answer, answer
from exhunt.exposure.build_sources import (
    FoundBuild,
    builds_from_file_listing,
    builds_from_headers,
    builds_from_healthchecker,
)
from exhunt.exposure.builds import PATCHED, PROBABLY_PATCHED, VULNERABLE, Assessment, assess, parse_build
from exhunt.exposure.config_state import ConfigState, read_configuration
from exhunt.exposure.probe import ProbeResult, probe_url
from exhunt.exposure.table import default_table
from exhunt.output.safe import (
    safe_console,
    terminal_text,  # markup and control characters: page text comes from the network
)

MAX_TIMEOUT = 300.0
MAX_INPUT_BYTES = 16 << 20
MAX_BUILDS = 5
WIDTH = 80
SCHEMA = "exhunt.exposure/2"
_STYLE = {VULNERABLE: "bold red", PATCHED: "green", PROBABLY_PATCHED: "yellow"}

HELP = (
    "Say what an Exchange build is exposed to on a given day: support status, the security updates it is "
    "missing with their dates, every CVE grouped by update (CISA known-exploited first), fixes that depend on "
    "configuration, and the ProxyLogon-era families. Exit status 0 even when exposed."
)
BUILD_HELP = "Exchange build, e.g. 15.1.2176.9 or 15.01.2176.009 (ExSetup.exe file version or log #Version)."
URL_HELP = (
    "Passively read the build of a server YOU ARE RESPONSIBLE FOR (only use it on your own servers): "
    "plain GETs of /owa/auth/logon.aspx, /owa/ and the ECP export tool manifest; no exploit traffic."
)
HEADERS_HELP = "A message file (.eml, .msg or header text): builds of 'Microsoft SMTP Server ... id 15.x' hops."
LISTING_HELP = "A collected file listing or FileVersionInfo output that names ExSetup.exe with its version."
HC_HELP = "HealthChecker output (XML export or HTML report) to read the build from."
CONFIG_HELP = (
    "Collected configuration (file or folder, repeatable): applicationHost.config, Get-SettingOverride "
    "export, GetIISModules.xml. Used to judge configuration-dependent fixes."
)
AS_OF_HELP = "Answer with what had been published by this day (YYYY-MM-DD); default: the table's date."


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f]", " ", text)).strip()


def _fail(error: UsageError) -> typer.Exit:
    typer.echo(f"exhunt: error: {_one_line(str(error))}", err=True)
    return typer.Exit(2)


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_INPUT_BYTES)
    except OSError as error:
        raise UsageError(f"cannot read {what} {str(path)[:120]!r}: {error.strerror or error}") from None


def _as_of(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise UsageError(f"--as-of {text[:40]!r}: expected a date like 2021-03-02") from None


def _from_files(headers: Path | None, listing: Path | None, healthchecker: Path | None) -> list[FoundBuild]:
    if headers is not None:
        found, what = builds_from_headers(_read(headers, "message file")), "Microsoft SMTP Server id in its headers"
    elif listing is not None:
        found, what = builds_from_file_listing(_read(listing, "file listing")), "ExSetup.exe with a version"
    else:
        assert healthchecker is not None
        found, what = builds_from_healthchecker(_read(healthchecker, "HealthChecker output")), "Exchange build"
    if not found:
        raise UsageError(f"no {what} found in the file")
    unique: dict[str, FoundBuild] = {}
    for item in found:
        unique.setdefault(str(item.build), item)
    return list(unique.values())[:MAX_BUILDS]


def _known_or_fail(result: Answer) -> Answer:
    if result.verdict == "unknown":
        raise UsageError(f"unknown Exchange build: {result.headline} (build table checked {result.table_checked})")
    return result


def _run(
    build: str | None,
    url: str | None,
    files: tuple[Path | None, Path | None, Path | None],
    timeout: float,
    insecure: bool,
    as_of: str | None,
    config: ConfigState,
) -> tuple[Assessment | ProbeResult | None, list[Answer], list[FoundBuild]]:
    given = sum(x is not None for x in (build, url, *files))
    if given != 1:
        raise UsageError("give exactly one of --build, --url, --headers, --file-listing or --healthchecker")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be between 0 and {MAX_TIMEOUT:g} seconds")
    if build is not None:
        parsed = parse_build(build)
        return assess(parsed), [_known_or_fail(answer(parsed, as_of, config))], []
    if url is not None:
        probe = probe_url(url, timeout=timeout, verify_tls=not insecure)
        answers = [answer(probe.build, as_of, config)] if probe.build and probe.assessment else []
        return probe, answers, []
    found = _from_files(*files)
    answers = [_known_or_fail(answer(f.build, as_of, config)) for f in found]
    return assess(found[0].build), answers, found


# ----------------------------------------------------------------------------- terminal view


def _status(status: str) -> str:
    style = _STYLE.get(status, "dim")
    return f"[{style}]{terminal_text(status)}[/{style}]"


def _say(console: Console, text: str, indent: int = 0, style: str = "") -> None:
    """Print plain (escaped) text wrapped to 80 columns."""
    pad = " " * indent
    wrapped = textwrap.wrap(str(text), WIDTH - 1, initial_indent=pad, subsequent_indent=pad + "  ")
    for line in wrapped:
        safe = terminal_text(line, 2000)
        console.print(f"[{style}]{safe}[/{style}]" if style else safe, highlight=False)


def _public_families(assessment: Assessment, as_of: str | None) -> tuple[set[str], str]:
    """Families whose CVEs were all public on `as_of` (all of them without a date)."""
    table = default_table()
    keys = {f.family for f in assessment.families}
    if not as_of or as_of >= table.checked:
        return keys, ""
    public = set()
    for fam in assessment.families:
        dates = [_cve_published(c.cve) for c in fam.cves]
        if dates and max(dates) <= as_of:
            public.add(fam.family)
    return public, as_of


def _cve_published(cve: str) -> str:
    table = default_table()
    entry = table.cve(cve)
    if entry is None:
        return "9999-12-31"
    update = table.updates.get(entry.update)
    return entry.published or (update.released if update else "9999-12-31")


def _families(console: Console, assessment: Assessment, newer: bool, as_of: str | None = None) -> None:
    console.print("[bold]ProxyLogon-era families[/bold]", highlight=False)
    public, day = _public_families(assessment, as_of)
    for fam in assessment.families:
        if fam.family not in public:
            console.print(f"  {terminal_text(fam.label):<14} [dim]not yet public on {day}[/dim]", highlight=False)
            continue
        included = newer and fam.status == PATCHED
        state = "[dim]included in the table's updates[/dim]" if included else _status(fam.status)
        fixed = terminal_text(", ".join(fam.fixed_by))
        console.print(f"  {terminal_text(fam.label):<14} {state}  {fixed}", highlight=False)
        notes = dict.fromkeys(n for n in [fam.note, *(c.note for c in fam.cves)] if n)
        if fam.status != PATCHED:
            for note in list(notes)[:2]:
                _say(console, note, 4, "dim")


def _render_answer(console: Console, result: Answer) -> None:
    _say(console, result.headline, 0, "bold")
    _say(console, f"As of {result.as_of}; build table checked {result.table_checked}.")
    _say(console, result.support.text)
    for note in result.notes:
        _say(console, note, 0, "yellow")
    if result.missing:
        console.print(f"[bold]Missing updates ({len(result.missing)}, newest first)[/bold]", highlight=False)
        for u in result.missing:
            esu = " ESU only" if u.esu_only else ""
            cves = f"{len(u.cves)} CVE(s)" if u.cves_listed else "CVEs not in the table (see KB)"
            line = f"{u.update:<10} {u.released}  {u.kb or '-':<10} {u.status}{esu}; {cves}"
            _say(console, line, 2)
    kev = result.known_exploited
    if kev:
        console.print("[bold red]Known exploited (CISA KEV)[/bold red]", highlight=False)
        for c in kev:
            how = c.condition_text if c.state == "fixed-only-if" else c.detail
            _say(console, f"{c.cve} (KEV {c.known_exploited}): {how}", 2, "red")
    groups = result.exposed_by_update()
    if groups:
        console.print("[bold]Exposed CVEs by update[/bold]", highlight=False)
        for update, cves in groups.items():
            lines: dict[str, list[str]] = {}
            for c in cves:
                key = f"{c.condition_text}; {c.detail}" if c.condition else c.detail
                lines.setdefault(key, []).append(c.cve)
            for key, names in lines.items():
                _say(console, f"{update}: {', '.join(names)} - {key}", 2)
    judged = [c for c in result.cves if c.state in ("fixed-by-configuration",)]
    for c in judged:
        _say(console, f"{c.cve}: fixed by configuration ({c.detail})", 2, "green")


def _render(console: Console, result: Assessment | ProbeResult | None, answers: list[Answer] | None = None) -> None:
    if isinstance(result, ProbeResult):
        console.print(terminal_text(result.message), highlight=False)
        for evidence in result.evidence:
            console.print(f"  seen: {terminal_text(evidence.value)} ({terminal_text(evidence.source)})")
        if result.assessment is None:
            return
        result = result.assessment
    if result is None:
        return
    if answers is None:
        answers = [answer(result.build if result.revision_known else parse_build(result.build, allow_partial=True))]
    if result.note:
        _say(console, result.note, 0, "dim")
    for item in answers:
        _render_answer(console, item)
    newer = bool(answers) and answers[0].verdict == "newer-than-table"
    _families(console, result, newer, answers[0].as_of if answers else None)


# ----------------------------------------------------------------------------- JSON


def payload(result: Assessment | ProbeResult | None, answers: list[Answer], found: list[FoundBuild]) -> dict[str, Any]:
    """The document described in docs/exposure-schema.md."""
    data: dict[str, Any] = {"schema": SCHEMA, "kind": "probe" if isinstance(result, ProbeResult) else "build"}
    if result is not None:
        data.update(result.to_dict())
    if answers and isinstance(result, Assessment):
        public, _ = _public_families(result, answers[0].as_of)
        data["families"] = [f for f in data["families"] if f["family"] in public]
    table = default_table()
    data["table"] = {
        "checked": table.checked,
        "newest_update": table.newest_update,
        "kev_catalogue": table.kev_catalogue,
    }
    data["answer"] = answers[0].to_dict() if answers else None
    data["other_builds"] = [a.to_dict() for a in answers[1:]]
    data["found_in"] = [
        {"build": str(f.build), "seen": f.seen.isoformat() if f.seen else None, "source": f.source} for f in found
    ]
    return data


def exposure(
    build: Annotated[str | None, typer.Option("--build", help=BUILD_HELP)] = None,
    url: Annotated[str | None, typer.Option("--url", help=URL_HELP)] = None,
    headers: Annotated[Path | None, typer.Option("--headers", help=HEADERS_HELP)] = None,
    file_listing: Annotated[Path | None, typer.Option("--file-listing", help=LISTING_HELP)] = None,
    healthchecker: Annotated[Path | None, typer.Option("--healthchecker", help=HC_HELP)] = None,
    config: Annotated[list[Path] | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request for --url.")] = 10.0,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify TLS certificates (--url).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/exposure-schema.md) to stdout.")] = False,
) -> None:
    try:
        day = _as_of(as_of)
        for path in config or []:
            if not path.exists():
                raise UsageError(f"--config {str(path)[:120]!r} does not exist")
        state = read_configuration(config or [])
        if healthchecker is not None:
            state = _merge_healthchecker_config(state, healthchecker)
        result, answers, found = _run(build, url, (headers, file_listing, healthchecker), timeout, insecure, day, state)
    except UsageError as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(json.dumps(payload(result, answers, found), indent=2))
        return
    _render(safe_console(), result, answers)


def _merge_healthchecker_config(state: ConfigState, path: Path) -> ConfigState:
    """Setting overrides HealthChecker recorded in its XML (PowerShell object form); other settings not yet."""
    found = read_configuration([path])
    if found.overrides:
        state.overrides = (state.overrides or []) + found.overrides
    return state


def register(app: typer.Typer) -> None:
    """Add the `exposure` command to the exhunt CLI."""
    app.command("exposure", help=HELP)(exposure)
