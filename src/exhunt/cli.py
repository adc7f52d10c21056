"""Command line: parse arguments, call the library, print. No detection logic lives here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from exhunt import __version__
from exhunt.errors import ExhuntError
from exhunt.exposure.command import register as register_exposure
from exhunt.output.safe import safe_console, terminal_text
from exhunt.outputs import Terminated, check_outputs, exit_after_interrupt, signals_as_exceptions

app = typer.Typer(
    name="exhunt",
    help=(
        "Find out whether a Microsoft Exchange server was broken into (ProxyLogon, ProxyShell, "
        "ProxyNotShell, OWASSRF), how, and what was taken.\n\n"
        "Start with:  exhunt scan COLLECTION   (a folder or .zip of IIS/Exchange logs, event logs and files)\n\n"
        "Evidence is only read: nothing is modified, extracted into the evidence folder or executed."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
rules_app = typer.Typer(help="List and inspect detection rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

err = safe_console(stderr=True)
DEBUG = {"on": False}


def _fail(message: str, code: int = 2) -> typer.Exit:
    # the message can carry outside text (a zip member, a rule file's content): shown inert
    err.print(f"[red]exhunt: error:[/] {terminal_text(message, 2000)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        print(f"exhunt {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for internal errors.")] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colour or styles in terminal output (also: NO_COLOR=1).")
    ] = False,
) -> None:
    DEBUG["on"] = debug
    if no_color:
        os.environ["NO_COLOR"] = "1"  # read by every console created from here on
        err.no_color = True


@app.command()
def scan(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Collection: a folder, a .zip (read in place), one log file, a disk image or a mounted volume."
        ),
    ] = None,
    json_out: Annotated[
        str | None,
        typer.Option("--json", metavar="FILE", help="Write the full result as JSON to FILE ('-' for stdout)."),
    ] = None,
    case: Annotated[
        Path | None,
        typer.Option(
            "--case",
            metavar="FILE.duckdb",
            help="Keep every record, artifact and finding in a DuckDB case file; the records go to the folder "
            "FILE.duckdb.records beside it (move or copy the two together).",
        ),
    ] = None,
    all_evidence: Annotated[
        bool, typer.Option("--all-evidence", help="Keep every matching record, not a few samples per finding.")
    ] = False,
    samples: Annotated[int, typer.Option(min=1, max=1000, help="Evidence samples kept per finding.")] = 5,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no terminal summary.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Reader threads [default: one per core but one; that core writes the case]"),
    ] = None,
    yara: Annotated[
        list[Path] | None,
        typer.Option(
            "--yara", metavar="FILE_OR_DIR", help="Add your YARA rules (yara-x) to the file-content scan. Repeatable."
        ),
    ] = None,
    ioc: Annotated[
        list[Path] | None,
        typer.Option(
            "--ioc",
            metavar="FILE",
            help="Add an IOC feed: STIX 2.1 bundle, MISP event JSON, or a text/CSV list. Repeatable.",
        ),
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option("--rule", metavar="ID", help="Run only this rule (repeatable); ids from 'exhunt rules list'."),
    ] = None,
    sigma: Annotated[
        list[Path] | None,
        typer.Option(
            "--sigma",
            metavar="FILE_OR_DIR",
            help=(
                "Also run these Sigma rules (on events, IIS and HttpProxy logs). Repeatable. Each file is "
                "converted once and kept in $EXHUNT_CACHE (default ~/.cache/exhunt)."
            ),
        ),
    ] = None,
    field_map: Annotated[
        list[Path] | None,
        typer.Option(
            "--map",
            metavar="FILE",
            help="A field map (YAML: family, columns, time) for a CSV/JSON export exhunt does not know, "
            "e.g. a CSV of timestamp,urlpath,useragent read as IIS rows. Repeatable; recorded in the result's notes.",
        ),
    ] = None,
    out: Annotated[
        list[str] | None,
        typer.Option("--out", metavar="FORMAT=FILE", help=OUT_HELP),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, max=256, help="CPU budget: threads for reading, the case database and rules [default: every core]"
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Scan the Windows server this runs on instead of a PATH (Windows only, from an elevated prompt). "
            "Reads only the evidence set (see Live mode above), files share-read; no NTFS $SI/$FN, deleted-file "
            "or stream records (image the disk for those).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Overwrite an existing --json/--out/--case file that exhunt did not write (never evidence)."
        ),
    ] = False,
) -> None:
    """Hunt one Exchange server's collection and print a verdict with evidence.

    Reads IIS W3C logs, Exchange HttpProxy/ECP/OAB/EWS/RPS logs, EVTX and JSON-lines event exports
    and the file tree; runs the built-in rules; groups hits into findings (rule, CVE, ATT&CK,
    first/last time, evidence file and line).

    [bold]Exit status[/]: 0 NO EVIDENCE FOUND · 1 COMPROMISED or SUSPICIOUS · 2 bad usage or unreadable
    input · 3 INCOMPLETE (the logs the checks need were not in the collection).

    [bold]Live mode[/] (--live): the local fixed drives; the Exchange install path and build from
    HKLM\\SOFTWARE\\Microsoft\\ExchangeServer\\v15\\Setup and the IIS log folders from applicationHost.config
    (default paths, with a note, when they cannot be read); then only the evidence set an image gives:
    the Exchange and IIS logs, winevt\\Logs, the web folders, the IIS configuration and the staging and
    dump folders. Files are opened share-read while IIS and Exchange write them: a log is read up to the
    size it had when listed (a cut last line is a note). Event logs are exported with 'wevtutil epl' into
    a folder beside --case (without --case, a temporary folder removed afterwards); nothing is written
    elsewhere. Limits: Windows only; Administrator rights for the Security log and the Exchange log
    folders; a file another program holds without read sharing is listed as not read; no $SI/$FN,
    deleted-file or alternate-stream records (no raw NTFS access live); only tested through a stand-in
    folder on Linux.

    [bold]Examples[/]:  exhunt scan triage.zip --json result.json ·
    exhunt scan ./EXCH01 --case case.duckdb && exhunt query case.duckdb "SELECT * FROM findings" ·
    exhunt scan --live --case D:\\cases\\exch01.duckdb
    """
    from exhunt.output.terminal import render
    from exhunt.scan import ScanOptions
    from exhunt.scan import scan as run_scan

    show_progress = not quiet and err.is_terminal
    progress = Progress(
        TextColumn("[bold]reading[/]"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        TextColumn("{task.description}"), console=err, transient=True, disable=not show_progress,
    )  # fmt: skip
    task = progress.add_task("", total=None)

    def on_progress(done: int, total: int, what: str) -> None:
        progress.update(task, completed=done, total=total, description=what)

    outputs = _guard(lambda: _outputs(out, json_out))
    _guard(lambda: check_outputs(outputs, path, case, force))
    options = ScanOptions(
        force=force,
        case=case,
        all_evidence=all_evidence,
        samples=samples,
        workers=workers,
        yara=yara,
        iocs=ioc,
        sigma=sigma,
        maps=field_map,
        only=rule,
        threads=threads,
    )
    source = _guard(lambda: _source(path, live, case.parent if case else None))
    try:
        with progress, signals_as_exceptions():
            result = _guard(lambda: run_scan(source, options, on_progress))
    except (KeyboardInterrupt, Terminated) as exc:  # the scan's temporary case is already removed
        err.print(f"exhunt: interrupted ({type(exc).__name__} {exc}); nothing written")
        exit_after_interrupt(130)
    doc = result.to_dict()
    _write_outputs(doc, outputs)
    if not quiet:
        render(result, err if any(p == "-" for _, p in outputs) else safe_console())
    raise typer.Exit(result.exit_code)


OUT_HELP = (
    "Write the result as FORMAT to FILE ('-' for stdout); repeatable. Formats: "
    "json (the full result; --json FILE is short for --out json=FILE), terminal (the summary as text), "
    "html (one self-contained report), timesketch (JSONL), ecs (Elastic NDJSON), stix (STIX 2.1 bundle), "
    "csv (findings and evidence). "
    "'exhunt report CASE.duckdb --out ...' writes the same from a saved case."
)


def _outputs(out: list[str] | None, json_out: str | None) -> list[tuple[str, str]]:
    from exhunt.writers import parse_out

    outputs = [parse_out(v) for v in out or []]
    if json_out:
        outputs.append(("json", json_out))
    if sum(p == "-" for _, p in outputs) > 1:
        raise _fail("only one --out can go to stdout ('-')")
    return outputs


def _write_outputs(doc: dict[str, Any], outputs: list[tuple[str, str]]) -> None:
    from exhunt.writers import writer

    for name, target in outputs:
        write = writer(name)
        if target == "-":
            write(doc, sys.stdout)
        else:

            def to_file(write: Any = write, target: str = target) -> None:
                with open(target, "w", encoding="utf-8", newline="") as fh:
                    write(doc, fh)

            _guard(to_file)


@app.command()
def report(
    case: Annotated[Path, typer.Argument(help="A case file written by 'exhunt scan --case'.")],
    out: Annotated[list[str], typer.Option("--out", metavar="FORMAT=FILE", help=OUT_HELP)],
) -> None:
    """Write a saved case's result in other formats, e.g. exhunt report case.duckdb --out json=result.json."""
    from exhunt.case_file import load_result

    outputs = _guard(lambda: _outputs(out, None))
    _guard(lambda: check_outputs(outputs, None, case, False))
    doc = _guard(lambda: load_result(case))
    _write_outputs(doc, outputs)


@app.command()
def query(
    case: Annotated[Path, typer.Argument(help="A case file written by 'exhunt scan --case'.")],
    sql: Annotated[str, typer.Argument(help='SQL to run, e.g. "SELECT rule, count FROM findings".')],
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON lines instead of a table.")] = False,
    as_csv: Annotated[
        bool,
        typer.Option("--csv", help="Print rows as CSV (cells that a spreadsheet would run as formulas are quoted)."),
    ] = False,
    limit: Annotated[int, typer.Option(help="Print at most this many rows in the table view.")] = 200,
) -> None:
    """Run SQL on a case database. Tables: artifacts, findings, evidence, errors, coverage, events,
    directives, meta, log_<family> (log_iis, log_httpproxy, log_ecp_server, ...) and, for a disk image,
    fs_records (the NTFS $SI/$FN times of the web and staging folders' files and their deleted files).

    The case is opened read-only with file access and extensions disabled: statements that would
    read or write files (COPY, ATTACH, INSTALL, read_text(...)) are refused with the reason."""
    from rich.table import Table

    from exhunt.query import run_query, write_csv, write_json_lines

    con, result = _guard(lambda: run_query(case, sql))
    try:
        _warn_damaged(result.damaged)
        if as_json or as_csv:
            _guard(lambda: (write_json_lines if as_json else write_csv)(result, sys.stdout))
            return
        table = Table(show_edge=False)
        for n in result.names:
            table.add_column(terminal_text(n))
        shown = more = 0
        for row in _guard(lambda: list(result.rows())):
            if shown < limit:
                table.add_row(*(terminal_text("" if v is None else v, 200) for v in row))
                shown += 1
            else:
                more += 1
        safe_console().print(table)
        if more:
            err.print(f"… {more} more rows (use --json or --limit)")
    finally:
        con.close()


def _warn_damaged(damaged: list[tuple[str, str]]) -> None:
    """Say on stderr that some of the case's record files could not be read: their records are
    missing from the answer, which is otherwise given."""
    from exhunt.case_records import DAMAGED

    if damaged:
        tables = sorted({t for t, _ in damaged})
        err.print(
            f"[yellow]exhunt: warning:[/] {len(damaged)} record file(s) of this case cannot be read "
            f"({terminal_text(', '.join(tables), 300)}); their records are missing from the answer "
            f"(which files: SELECT * FROM {DAMAGED})",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def synth(
    outdir: Annotated[Path, typer.Argument(help="Folder to write the synthetic collection into (created).")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same bytes.")] = 1,
    users: Annotated[int, typer.Option(min=1, help="Mailbox users generating benign traffic.")] = 50,
    days: Annotated[int, typer.Option(min=1, help="Days of logs, starting 2021-02-24.")] = 14,
    benign_only: Annotated[
        bool, typer.Option("--benign-only", help="Write benign traffic and look-alikes only.")
    ] = False,
    plant: Annotated[
        str,
        typer.Option(
            help="Attack families to plant, comma-separated: proxylogon, proxyshell, proxynotshell, owassrf, postexploit, webshells, theft (mailboxes taken by every path), or all."
        ),
    ] = "proxylogon",
    target_mb: Annotated[float | None, typer.Option(help="Scale benign traffic to about this many MB of logs.")] = None,
    export_shape: Annotated[
        str | None,
        typer.Option(
            "--export-shape",
            help="Rewrite the collection as responders receive it: splunk, elastic, sentinel, test-proxylogon, "
            "headerless (web and Exchange logs; the answer key then says which traces the shape carries), "
            "message-only (events keep only their rendered Message, JSON lines) or sentinel-events (Sentinel "
            "SecurityEvent / message-only Event CSV exports).",
        ),
    ] = None,
) -> None:
    """Write a realistic synthetic Exchange 2016 server collection, with attack traces at known
    positions listed in OUTDIR/answer_key.json."""
    from exhunt.synth import FAMILIES, generate
    from exhunt.synth.exports import EXPORT_SHAPES, export_collection

    shapes = [*EXPORT_SHAPES, *EVENT_SHAPES]
    if export_shape is not None and export_shape not in shapes:
        raise _fail(f"unknown --export-shape {terminal_text(export_shape)}; choose from {', '.join(shapes)}")

    names = {p.strip() for p in plant.split(",") if p.strip()}
    if "all" in names:
        names = set(FAMILIES)
    unknown = names - set(FAMILIES)
    if unknown:
        raise _fail(f"unknown --plant value(s): {', '.join(sorted(unknown))}; choose from {', '.join(FAMILIES)} or all")
    if export_shape in EVENT_SHAPES:
        _synth_event_shape(export_shape, outdir, seed, users, days, benign_only, frozenset(names), target_mb)
        return
    key = _guard(
        lambda: generate(
            outdir,
            seed=seed,
            users=users,
            days=days,
            benign_only=benign_only,
            plant=frozenset(names),
            target_mb=target_mb,
        )
    )
    if export_shape is not None:
        key = _guard(lambda: export_collection(outdir, export_shape))
    traces = len(key.get("traces", []))
    err.print(
        f"wrote {terminal_text(outdir)} ({traces} planted traces; answer key: {terminal_text(outdir / 'answer_key.json')})"
    )


EVENT_SHAPES = {
    "message-only": "exhunt.synth.shape_message_only:write_message_only",
    "sentinel-events": "exhunt.synth.shape_sentinel_events:write_sentinel_events",
}


def _synth_event_shape(
    shape: str,
    outdir: Path,
    seed: int,
    users: int,
    days: int,
    benign_only: bool,
    plant: frozenset[str],
    target_mb: float | None,
) -> None:
    """`exhunt synth --export-shape SHAPE` for the event shapes: generate, then rewrite the events."""
    import importlib
    import tempfile

    from exhunt.synth import generate

    module, _, function = EVENT_SHAPES[shape].partition(":")
    write_shape = getattr(importlib.import_module(module), function)

    if outdir.exists() and any(outdir.iterdir()):
        raise _fail(f"{terminal_text(outdir)} exists and is not empty; choose an empty output folder")
    with tempfile.TemporaryDirectory(prefix="exhunt-synth-") as tmp:
        _guard(
            lambda: generate(
                Path(tmp), seed=seed, users=users, days=days, benign_only=benign_only, plant=plant, target_mb=target_mb
            )
        )
        done = _guard(lambda: write_shape(Path(tmp), outdir))
    err.print(f"wrote {terminal_text(outdir)} ({shape}: {done['events']:,} events in {done['event_files']} files)")


@rules_app.command("list")
def rules_list(as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False) -> None:
    """List the built-in rules."""
    from rich.table import Table

    from exhunt.rules.model import load_rules

    rules = _guard(load_rules)
    if as_json:
        for r in rules:
            sys.stdout.write(json.dumps(r.to_dict()) + "\n")
        return
    table = Table(show_edge=False)
    for col in ("id", "severity", "kind", "source", "CVEs", "ATT&CK", "title"):
        table.add_column(col)
    for r in sorted(rules, key=lambda r: r.id):
        table.add_row(r.id, r.severity, r.kind, r.source, ", ".join(r.cves), ", ".join(r.attack), r.title)
    safe_console().print(table)


@rules_app.command("check-sigma")
def rules_check_sigma(
    paths: Annotated[list[Path], typer.Argument(help="Sigma rule files or folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """Load Sigma rules as 'scan --sigma' would, and list every rule that cannot run here, with the reason."""
    from exhunt.output.safe import terminal_text
    from exhunt.rules.sigma_load import check_sigma

    load = _guard(lambda: check_sigma(paths))
    if as_json:
        doc = {
            "loaded": [{"id": r.id, "title": r.title, "source": r.source, "path": r.origin} for r in load.rules],
            "skipped": [{"path": p, "title": t, "reason": why} for p, t, why in load.skipped],
        }
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return
    by_source: dict[str, int] = {}
    for r in load.rules:
        by_source[r.source] = by_source.get(r.source, 0) + 1
    per = ", ".join(f"{n} on {s}" for s, n in sorted(by_source.items()))
    print(f"{len(load.rules)} Sigma rule(s) loaded ({per or 'none'}); {len(load.skipped)} not applicable:")
    console = safe_console()
    for path, title, why in load.skipped:
        console.print(f"  {terminal_text(path, 200)}: {terminal_text(title or '-', 100)}: {terminal_text(why, 300)}")


@rules_app.command("show")
def rules_show(rule_id: Annotated[str, typer.Argument(help="Rule id, as printed by 'exhunt rules list'.")]) -> None:
    """Print one rule in full (YAML)."""
    import yaml

    from exhunt.rules.model import load_rules

    rules = {r.id: r for r in _guard(load_rules)}
    if rule_id not in rules:
        raise _fail(f"no rule {rule_id!r}; see 'exhunt rules list'")
    sys.stdout.write(yaml.safe_dump(rules[rule_id].to_dict(), sort_keys=False, allow_unicode=True))


def _guard(fn: Any) -> Any:
    """Run `fn`; turn exhunt errors into a one-line message and exit 2."""
    try:
        return fn()
    except ExhuntError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
    except Exception as exc:
        if DEBUG["on"]:
            raise
        raise _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)") from None


def _source(path: Path | None, live: bool, work: Path | None) -> Any:
    """The PATH to scan, or the live system's collection with --live."""
    if live == (path is not None):
        raise _fail("give a collection PATH or --live, not both" if live else "missing PATH (or --live)")
    if not live:
        return path
    from exhunt.images.live import WindowsLiveSystem, open_live_collection

    return open_live_collection(WindowsLiveSystem(), work / "exhunt-live-export" if work else None)


@app.command()
def collect(
    source: Annotated[
        Path, typer.Argument(help="A disk image, a mounted volume, a collection folder (or OUT.zip with --live).")
    ],
    out: Annotated[Path | None, typer.Argument(help="The zip to write (new file).")] = None,
    live: Annotated[bool, typer.Option("--live", help="Collect from the Windows server this runs on.")] = False,
    max_size: Annotated[
        str | None,
        typer.Option(metavar="SIZE", help="Bound on the files' bytes, e.g. 500M or 4G; what is left out is listed."),
    ] = None,
) -> None:
    """Copy exactly the Exchange evidence set into a zip, with a manifest (SHA-256, $SI/$FN times) and a log.

    [bold]Examples[/]:  exhunt collect EXCH01.vhdx EXCH01.zip --max-size 4G · exhunt collect --live D:\\EXCH01.zip
    """
    from exhunt.collection import open_collection
    from exhunt.images.collect import collect as run_collect

    target = source if live else out
    if target is None or (live and out is not None):
        raise _fail("usage: exhunt collect SOURCE OUT.zip, or exhunt collect --live OUT.zip")
    bound = _guard(lambda: _size(max_size)) if max_size else None
    if live:
        from exhunt.images.live import WindowsLiveSystem, open_live_collection

        collection = _guard(lambda: open_live_collection(WindowsLiveSystem(), target.parent / f"{target.stem}-export"))
    else:
        collection = _guard(lambda: open_collection(source))
    try:
        summary = _guard(lambda: run_collect(collection, target, bound))
    finally:
        collection.close()
    err.print(terminal_text(summary.line(target), 2000), highlight=False)


def _size(text: str) -> int:
    from exhunt.errors import UsageError

    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1] if t and t[-1] in units else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise UsageError(f"--max-size {text!r}: give bytes or a number with K, M, G or T") from None
    if value <= 0:
        raise UsageError("--max-size must be positive")
    return int(value * units[unit])


register_exposure(app)


@app.command()
def timeline(
    case: Annotated[Path, typer.Argument(help="A case file written by 'exhunt scan --case'.")],
    host: Annotated[str | None, typer.Option("--host", help="Only this host's story.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The timeline, leads and mailbox access as JSON.")] = False,
) -> None:
    """Print the intrusion timeline of a case: the incident summary, one story per host, the leads."""
    from exhunt.analytics.render import load_case_timeline, render_timeline
    from exhunt.analytics.summary import render_incident

    data = _guard(lambda: load_case_timeline(case))
    if as_json:
        from exhunt.writers.json_writer import dumps

        sys.stdout.write(dumps(data) + "\n")  # log text with C1 or bidi controls stays inert
        return
    console = safe_console()
    render_incident(data.get("incident"), console)
    render_timeline(data["timeline"], data["leads"], console, host=host)


@app.command()
def fleet(
    root: Annotated[
        Path,
        typer.Argument(
            help="A folder of host collections (ROOT/HOST or ROOT/TENANT/HOST, folders or zips) or a manifest file."
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir", help="Where the fleet database and per-host results go (default: ROOT-fleet next to ROOT)."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="tcp://HOST:PORT of an existing dask.distributed scheduler (default: a local cluster)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=256, help="Local worker processes (default: one per core).")
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Read every host in full (default: only hosts that changed, and only their new or changed files).",
        ),
    ] = False,
    split_mb: Annotated[
        int,
        typer.Option(min=0, help="Read a host larger than this many MB with several tasks at once (0: never split)."),
    ] = 512,
    dashboard: Annotated[
        bool,
        typer.Option("--dashboard", help="Serve the local cluster's Dask dashboard on a loopback port (needs bokeh)."),
    ] = False,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Also write the fleet result document here ('-' for stdout).")
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress and no summary.")] = False,
) -> None:
    """Scan every Exchange server of a fleet on dask.distributed: per-host verdicts, the overnight spike,
    campaigns shared across tenants. Exit code: the worst host's (0 clean, 1 compromised or suspicious,
    3 incomplete, failed or interrupted)."""
    from exhunt.fleet.runner import FleetOptions, default_out_dir, run_fleet
    from exhunt.fleet.summary import render
    from exhunt.writers.json_writer import dumps

    options = FleetOptions(out_dir=out_dir or default_out_dir(root), scheduler=scheduler, workers=workers, full=full,
                           dashboard=dashboard, split_bytes=split_mb * 1024**2 or None)  # fmt: skip
    shown = {"dashboard": False}

    def progress(p: dict[str, Any]) -> None:
        if p.get("dashboard") and not shown["dashboard"]:
            err.print(f"dask dashboard: {terminal_text(p['dashboard'])}")
            shown["dashboard"] = True
        live = err.is_terminal
        err.print(
            f"{chr(13) if live else ''}{p['done']}/{p['total']} hosts done, {p['running']} running, {p['queued']} queued, "
            f"{p['failed']} failed · {p['mb_per_s']:.1f} MB/s · {p['elapsed']:.0f} s",
            end="" if live else "\n", highlight=False, markup=False,
        )  # fmt: skip

    import logging

    for name in ("distributed", "tornado", "asyncio"):  # shutdown races of the cluster are not the user's problem
        logging.getLogger(name).setLevel(logging.CRITICAL)
    doc = _guard(lambda: run_fleet(root, options, None if quiet else progress))
    if not quiet and err.is_terminal:
        err.print()
    if json_out == "-":
        sys.stdout.write(dumps(doc, indent=1) + "\n")
    elif json_out:
        Path(json_out).write_text(dumps(doc, indent=1) + "\n", encoding="utf-8")
    if not quiet:
        render(doc, safe_console(stderr=json_out == "-"))
        err.print(f"fleet database: {terminal_text(Path(doc['out_dir']) / 'fleet.duckdb')}")
    raise typer.Exit(doc["exit_code"])


@app.command("synth-fleet")
def synth_fleet(
    outdir: Annotated[Path, typer.Argument(help="Empty folder to write the fleet into (created).")],
    hosts: Annotated[int, typer.Option(min=1, max=500, help="Number of servers.")] = 20,
    tenants: Annotated[int, typer.Option(min=1, max=100, help="Number of tenant folders.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same fleet.")] = 1,
    users: Annotated[int, typer.Option(min=1, help="Mailbox users per server (more makes bigger servers).")] = 3,
    days: Annotated[int, typer.Option(min=3, help="Days of logs per server (odd servers get one more).")] = 3,
    hit: Annotated[int | None, typer.Option(min=0, help="Servers the campaign reaches (default: 40%).")] = None,
) -> None:
    """Write a synthetic fleet: tenants of small servers, one ProxyLogon campaign reaching a known subset
    in a known order, daily scanning on every server; answer key in OUTDIR/fleet_answer_key.json."""
    from exhunt.synth.fleet import generate_fleet

    key = _guard(
        lambda: generate_fleet(outdir, hosts=hosts, tenants=tenants, seed=seed, users=users, days=days, hit=hit)
    )
    err.print(
        f"wrote {terminal_text(outdir)}: {hosts} host(s) in {tenants} tenant(s), campaign from "
        f"{key['campaign']['start_hour']} on {len(key['campaign']['hosts'])} host(s); answer key: "
        f"{terminal_text(outdir / 'fleet_answer_key.json')}"
    )
