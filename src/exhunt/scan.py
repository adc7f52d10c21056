"""scan(collection) -> ScanResult: the library entry point the CLI and the tests call.

A short composition of named stages, each with a typed hand-off:

    ingest(collection)          -> IngestReport   (exhunt.ingest: readers, writer loop, hosts)
    detect(case, rules)         -> RawFinding[]   (exhunt.detect: one SQL query per rule)
    build_findings(raw)         -> Finding[]      (exhunt.evidence: records and raw lines)
    judge(findings, coverage)   -> Verdict        (exhunt.judge: context, severity, verdict)
    save_results(result)                          (exhunt.case: the case database)

Problems of every stage (files not read, batches refused, rules failed, evidence not re-read) are
`Problem`s that reach `errors[]` and the case; none stops the scan.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from exhunt import __version__
from exhunt.ad_coverage import ad_checks_state
from exhunt.analytics import analyse_case
from exhunt.analytics.findings import analytics_finding
from exhunt.case import EVIDENCE, FINDINGS, CaseReader, CaseWriter
from exhunt.collection import Collection, open_collection
from exhunt.coverage import (
    has_web_logs,
    map_notes,
    map_warnings,
    measure,
    missing,
    shape_notes,
    timestamp_warnings,
    window_warnings,
)
from exhunt.detect import detect, rule_params
from exhunt.errors import UsageError
from exhunt.evidence import build_findings, fill_raw_lines
from exhunt.exposure.observed import exposure_report
from exhunt.families import family
from exhunt.ingest import IngestReport, Progress, cpu_budget, ingest
from exhunt.iocs import builtin_iocs, ioc_rules, load_iocs
from exhunt.judge import judge
from exhunt.outputs import is_exhunt_case, prepare_case
from exhunt.rescan import Rescan, ingest_changes
from exhunt.result import Exposure, Finding, Problem, ScanResult, Stats
from exhunt.rules.columns import columns_to_keep
from exhunt.rules.model import Rule, load_rules
from exhunt.rules.yara import compile_rules as compile_yara
from exhunt.sources.fieldmap import load_map_file

__all__ = ["Progress", "ScanOptions", "ScanResult", "scan"]


@dataclass
class ScanOptions:
    """What to scan with. Plain data: picklable, so fleet workers get the same options."""

    case: Path | None = None
    all_evidence: bool = False
    samples: int = 5
    rules: list[Rule] | None = None
    workers: int | None = None  # reader threads; default: the budget's cores but one (the writer's)
    memory_limit: str = (
        "512MB"  # DuckDB's share; with it a whole --case scan peaked at 0.9 GB on 1 GB of logs and 1.2 GB on 4 GB
    )
    yara: list[Path] | None = None  # the user's YARA files or folders, added to the built-in content rules
    iocs: list[Path] | None = None  # the user's IOC feeds (STIX 2.1, MISP JSON, text/CSV), added to the built-in pack
    sigma: list[Path] | None = None  # Sigma rule files or folders, run on events and IIS logs
    only: list[str] | None = None  # run only the rules with these ids
    threads: int | None = None  # the CPU budget of this scan; default: every core (fleet workers pass 1)
    analytics: bool | None = None  # mailbox access, timeline, incident; default: unless the rules were chosen
    force: bool = False  # --case may replace an existing file that is not an exhunt case
    maps: list[Path] | None = None  # the user's field maps (YAML) for other CSV/JSON exports (`--map`)
    rescan: Rescan | None = None  # update the kept `case` with only these changes (exhunt.rescan)


def scan(path: Path | Collection, options: ScanOptions | None = None, progress: Progress | None = None) -> ScanResult:
    """Scan a collection folder, zip, disk image or single log file (or an open `Collection`, such as
    the live system). Raises InputError if it cannot be opened. `options` is plain data; `progress` is
    an optional callback (bytes done, bytes total, text)."""
    options = options or ScanOptions()
    started = time.perf_counter()
    content_rules = compile_yara(options.yara)  # bad rule files fail before any evidence is touched
    rules = select_rules(options)
    maps = tuple(load_map_file(p) for p in options.maps or [])  # a bad map fails before any evidence is read
    collection = path if isinstance(path, Collection) else open_collection(path)
    label = collection.root if isinstance(path, Collection) else str(path)
    tmpdir = None
    incremental = False
    case: CaseWriter | None = None
    try:  # whatever stops the scan (an error, Ctrl-C, SIGTERM via the CLI) removes the temporary case
        if options.case is None:
            tmpdir = tempfile.mkdtemp(prefix="exhunt-")
            db_path = Path(tmpdir) / "case.duckdb"
        else:
            db_path = options.case
            scanned = Path(collection.root) if isinstance(path, Collection) else Path(path)
            incremental = options.rescan is not None and db_path.exists() and is_exhunt_case(db_path)
            if not incremental:
                prepare_case(db_path, scanned, options.force)  # refused in the evidence or on others' files
        threads = cpu_budget(options.threads)
        # the records as Parquet: in the temporary folder, or (`--case`) in the folder beside the case
        spool = Path(tmpdir) / "records" if tmpdir else None
        case = CaseWriter(
            db_path, memory_limit=options.memory_limit, threads=threads, spool=spool, keep_records=tmpdir is None
        )
        keep = {} if options.case is not None else columns_to_keep(rules)  # a case file keeps every column
        read = _rescan_reader(options.rescan) if incremental and options.rescan else ingest
        report = read(
            collection, case, content_rules=content_rules, keep=keep, threads=threads, readers=options.workers,
            progress=progress, maps=maps,
        )  # fmt: skip
        fs_problems = store_filesystem_records(collection, case, report)
        reader = case.reader
        samples = None if options.all_evidence else options.samples
        raw, rule_problems = detect(reader, rules, rule_params(report.install_path), samples, threads)
        with ThreadPoolExecutor(max_workers=1) as beside:  # starts no thread unless given work
            # coverage, AD checks and exposure read the records only: beside the evidence on a second core
            later = beside.submit(_context, reader, report.artifacts, True) if threads > 1 else None
            findings, evidence_problems = build_findings(raw, reader, collection)
            coverage, ad, exposure = later.result() if later else _context(reader, report.artifacts, False)
        problems = report.problems + fs_problems + rule_problems + evidence_problems
        judge(findings, has_web_logs(coverage), problems)  # severities in context, which the analytics start from
        analysis: dict[str, Any] = {}
        if _analytics_wanted(options):
            analysis, taken, analytics_problems = _analyse(reader, collection, findings, exposure)
            findings += taken
            problems += analytics_problems
        result = ScanResult(
            collection=label,
            judgement=judge(findings, has_web_logs(coverage), problems),
            hosts=report.hosts,
            coverage=coverage,
            missing=missing(coverage, _is_exchange(report, coverage)) + _ad_missing(ad),
            warnings=window_warnings(coverage, rules)
            + timestamp_warnings(coverage)
            + map_warnings(maps, report.artifacts, rules),
            findings=findings,
            problems=problems,
            stats=Stats(len(report.artifacts), report.bytes_read, report.records, time.perf_counter() - started),
            exposure=exposure,
            case=str(options.case) if options.case else None,
            rules=[{"id": r.id, "title": r.title, "severity": r.severity, "source": r.source} for r in rules],
            rules_version=rules_version(rules),
            notes=report.notes + map_notes(maps, report.artifacts, rules),
            extras={"checks": {"active_directory": ad}, **analysis},
        )
        save(case, result)
        return result
    finally:
        if case is not None:
            case.close()
        collection.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _context(reader: CaseReader, artifacts: list[dict[str, Any]], own_cursor: bool) -> tuple[Any, Any, Exposure]:
    """What the records say besides the rules: coverage, the AD checks' state, the exposure."""
    case = reader.cursor(frozen=True) if own_cursor else reader
    try:
        coverage = shape_notes(measure(case), artifacts)
        ad = ad_checks_state(case)
        windows, mitigations, exposure_text = exposure_report(case)
    finally:
        if own_cursor:
            case.close()
    return coverage, ad, Exposure(windows, mitigations, exposure_text)


def _rescan_reader(rescan: Rescan) -> Any:
    """`ingest`'s signature, reading only what `rescan` names into the kept case."""
    return lambda collection, case, **kw: ingest_changes(collection, case, rescan, **kw)


def store_filesystem_records(collection: Collection, case: CaseWriter, report: IngestReport) -> list[Problem]:
    """A disk image's NTFS records of the web and staging folders (or those a zip written by
    `exhunt collect` carries) into `fs_records`; other collections have none. A volume too damaged
    to give them is one problem; the scan goes on."""
    from exhunt.images.fsrecords import case_records  # pyarrow only: nothing of the images extra

    try:
        rows = case_records(collection, {r["path"]: r["id"] for r in report.artifacts})
    except Exception as exc:  # a damaged MFT must cost these records, never the scan
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        return [Problem(collection.root, None, f"NTFS records not read: {type(exc).__name__}: {why}", "read")]
    if rows.num_rows:
        case.add_typed_records(family("fs_records").table, rows)
    return []


def select_rules(options: ScanOptions) -> list[Rule]:
    """The built-in rules and IOC pack (or the given rules), the user's feeds and Sigma rules, cut to
    `only` when asked."""
    rules = options.rules if options.rules is not None else load_rules() + ioc_rules(builtin_iocs())
    if options.iocs:
        rules = rules + ioc_rules(load_iocs(options.iocs))
    if options.sigma:
        from exhunt.rules.sigma_load import load_sigma  # imports pySigma only to convert a file not in the cache

        rules = rules + load_sigma(options.sigma).rules
    if options.only:
        unknown = set(options.only) - {r.id for r in rules}
        if unknown:
            raise UsageError(f"no rule with id {', '.join(sorted(unknown))}; see 'exhunt rules list'")
        rules = [r for r in rules if r.id in set(options.only)]
    return rules


def _analyse(
    reader: CaseReader, collection: Collection, findings: list[Finding], exposure: Exposure
) -> tuple[dict[str, Any], list[Finding], list[Problem]]:
    """The analytics' sections, their findings (with raw lines) and problems. Whatever they stumble
    on (odd values in the logs included) is a problem of this stage: the scan's own result stands."""
    try:
        analysis = analyse_case(reader, [f.to_dict() for f in findings], exposure.to_dict())
        taken = [analytics_finding(d) for d in (analysis.get("mailbox_access") or {}).get("findings", [])]
        problems = fill_raw_lines(taken, reader, collection)
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        return {}, [], [Problem("(analytics)", None, f"analytics failed: {type(exc).__name__}: {why}", "detect")]
    if (analysis.get("incident") or {}).get("error"):
        problems.append(Problem("(analytics)", None, analysis["incident"]["error"], "detect"))
    return analysis, taken, problems


def _analytics_wanted(options: ScanOptions) -> bool:
    """The analytics run with the full rule set (a scan asked for chosen rules wants those alone)."""
    if options.analytics is not None:
        return options.analytics
    return options.only is None and options.rules is None


def _ad_missing(ad: dict[str, Any]) -> list[str]:
    """Say so when the Active Directory checks could not run (no DC Security log, no directory auditing)."""
    if ad["state"] == "not-run" or not ad["directory_auditing"]:
        return [f"Active Directory checks not (fully) run: {ad['reason']}"]
    return []


def rules_version(rules: list[Rule]) -> str:
    """exhunt's version and a digest of the rules' content: two scans with the same value ran the same rules."""
    digest = hashlib.sha256(_json(sorted((r.to_dict() for r in rules), key=lambda d: d["id"])).encode()).hexdigest()
    return f"{__version__}+rules.{digest[:12]}"


def _is_exchange(report: IngestReport, coverage: list[Any]) -> bool:
    events = family("events").table
    return report.install_path is not None or any(c.family != events for c in coverage)


def save(case: CaseWriter, result: ScanResult) -> None:
    """The result's findings, evidence, coverage and problems into the case database."""
    findings = [
        {"id": i, "rule": f.rule.id, "title": f.rule.title, "severity": f.severity, "kind": f.rule.kind,
         "cves": list(f.rule.cves), "attack": list(f.rule.attack), "host": f.host,
         "grp": _json(f.group), "count": f.count, "first_seen": f.first_seen, "last_seen": f.last_seen,
         "note": f.note}
        for i, f in enumerate(result.findings, 1)
    ]  # fmt: skip
    evidence = [
        {"finding": i, "path": e.path, "line": e.line, "record_id": e.record_id, "time": e.time,
         "record": _json(e.record), "raw": e.raw}
        for i, f in enumerate(result.findings, 1)
        for e in f.evidence
    ]  # fmt: skip
    coverage = (
        pa.Table.from_pylist([c.to_dict() for c in result.coverage])
        if result.coverage
        else pa.table({"family": pa.array([], pa.string())})
    )
    case.add_problems([(p.path, p.line, p.reason, p.stage) for p in result.problems])
    case.save_results(
        pa.Table.from_pylist(findings, FINDINGS), pa.Table.from_pylist(evidence, EVIDENCE), coverage, result.to_dict()
    )


def _json(value: Any) -> str:
    return json.dumps(value, default=str)
