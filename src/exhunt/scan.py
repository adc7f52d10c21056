"""scan(collection) -> ScanResult: discover, read, store, detect, judge.

The library entry point that the CLI, the fleet runner and the tests all call. Reading runs on a small
thread pool (pyarrow and DuckDB release the GIL); parsed batches flow through a bounded queue into
the case database, so memory stays flat whatever the collection's size. Problems with one artifact
become `errors[]` entries and never stop the scan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from exhunt import __version__
from exhunt.collection import Collection, Entry, Skipped, open_collection
from exhunt.coverage import FamilyCoverage, measure, missing, window_warnings
from exhunt.errors import UsageError
from exhunt.evidence import build_findings
from exhunt.exposure.observed import exposure_report
from exhunt.findings import Finding, compose_severity, escalate_context, exit_code, severity_rank, verdict
from exhunt.iocs import builtin_iocs, ioc_rules, load_iocs
from exhunt.layout import DEFAULT_INSTALL, install_path_of
from exhunt.outputs import CASE_SCHEMA_ID, prepare_case
from exhunt.reader import Item, Reader, bundles
from exhunt.rules.columns import columns_to_keep
from exhunt.rules.model import Rule, load_rules
from exhunt.rules.native import RawFinding, run_rule
from exhunt.rules.yara import compile_rules as compile_yara
from exhunt.store import Store

SCHEMA_VERSION = "1.0"


@dataclass
class ScanOptions:
    case: Path | None = None
    all_evidence: bool = False
    samples: int = 5
    rules: list[Rule] | None = None
    workers: int | None = None  # reader threads; default one per core but one (the writer's)
    memory_limit: str = (
        "512MB"  # DuckDB's share; with it a whole --case scan peaked at 0.9 GB on 1 GB of logs and 1.2 GB on 4 GB
    )
    yara: list[Path] | None = None  # the user's YARA files or folders, added to the built-in content rules
    iocs: list[Path] | None = None  # the user's IOC feeds (STIX 2.1, MISP JSON, text/CSV), added to the built-in pack
    sigma: list[Path] | None = None  # Sigma rule files or folders, run on events and IIS logs
    only: list[str] | None = None  # run only the rules with these ids
    threads: int | None = None  # the CPU budget of this scan; default: every core (fleet workers pass 1)
    force: bool = False  # --case may replace an existing file that is not an exhunt case


Progress = Callable[[int, int, str], None]  # (bytes done, bytes total, what is being read)


@dataclass
class ScanResult:
    collection: str
    verdict: str
    reason: str
    hosts: list[str]
    coverage: list[FamilyCoverage]
    missing: list[str]
    warnings: list[str]
    findings: list[Finding]
    errors: list[dict[str, Any]]
    artifacts: int
    bytes_read: int
    records: int
    seconds: float
    case: str | None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return exit_code(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "exhunt.scan",
            "schema_version": SCHEMA_VERSION,
            "exhunt_version": __version__,
            "collection": self.collection,
            "verdict": self.verdict,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "hosts": self.hosts,
            "stats": {
                "artifacts": self.artifacts,
                "bytes_read": self.bytes_read,
                "records": self.records,
                "seconds": round(self.seconds, 3),
            },
            "coverage": [c.to_dict() for c in self.coverage],
            "missing": self.missing,
            "warnings": self.warnings,
            "findings": [f.to_dict() for f in self.findings],
            "errors": self.errors,
            "case": self.case,
            **self.extras,
        }


def _entries(collection: Collection, errors: list[dict[str, Any]]) -> Iterator[Entry]:
    for e in collection.entries():
        if isinstance(e, Skipped):
            errors.append({"path": e.path, "line": None, "reason": e.reason})
        else:
            yield e


def scan(path: Path, options: ScanOptions | None = None, progress: Progress | None = None) -> ScanResult:
    """Scan a collection folder, zip or single log file. Raises InputError if it cannot be opened.
    `options` is plain data (picklable, for fleet workers); `progress` is an optional callback."""
    options = options or ScanOptions()
    started = time.perf_counter()
    content_rules = compile_yara(options.yara)  # bad rule files fail before any evidence is touched
    rules = options.rules if options.rules is not None else load_rules() + ioc_rules(builtin_iocs())
    if options.iocs:
        rules = rules + ioc_rules(load_iocs(options.iocs))
    if options.sigma:
        from exhunt.rules.sigma import load_sigma  # pySigma costs 0.12 s to import: only when asked

        rules = rules + load_sigma(options.sigma).rules
    if options.only:
        unknown = set(options.only) - {r.id for r in rules}
        if unknown:
            raise UsageError(f"no rule with id {', '.join(sorted(unknown))}; see 'exhunt rules list'")
        rules = [r for r in rules if r.id in set(options.only)]
    collection = open_collection(path)
    tmpdir = None
    try:  # whatever stops the scan (an error, Ctrl-C, SIGTERM via the CLI) removes the temporary case
        if options.case is None:
            tmpdir = tempfile.mkdtemp(prefix="exhunt-")
            db_path = Path(tmpdir) / "case.duckdb"
        else:
            db_path = options.case
            prepare_case(db_path, Path(path), options.force)  # refused in the evidence or on others' files
        store = Store(db_path, memory_limit=options.memory_limit)
        try:
            return _scan(collection, store, options, rules, content_rules, started, str(path), progress)
        finally:
            store.close()
    finally:
        collection.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _scan(
    collection: Collection,
    store: Store,
    options: ScanOptions,
    rules: list[Rule],
    content_rules: Any,
    started: float,
    label: str,
    progress: Progress | None,
) -> ScanResult:
    errors: list[dict[str, Any]] = []
    entries = list(_entries(collection, errors))
    total = sum(e.size for e in entries)
    keep = {} if options.case is not None else columns_to_keep(rules)  # a case file keeps every column
    reader = Reader(collection, collection.name, content_rules, keep)
    items = [Item(i + 1, e) for i, e in enumerate(entries)]
    done_bytes = 0
    finished = 0

    def run_all() -> None:
        try:
            with ThreadPoolExecutor(max_workers=reader_threads(options.workers)) as pool:
                list(pool.map(reader.work, bundles(items)))
        finally:  # the writer loop below waits for this, whatever happened
            reader.out.put(("end", None))

    threading.Thread(target=run_all, daemon=True).start()
    while True:
        kind, payload = reader.out.get()
        if kind == "rows":
            table, batch = payload
            store.append(table, batch)
            reader.budget.give(batch.nbytes)
        elif kind == "done":
            done_bytes += payload
            finished += 1
            if progress:
                progress(done_bytes, total, f"{finished}/{len(items)} files")
        else:
            break
    store.ready_for_queries()

    rows = [reader.rows[i.artifact_id] for i in items]
    _attach_loose_files_to_hosts(rows, collection.name)
    store.add_artifacts(rows)
    directives, records = [], 0
    for item in items:
        info = reader.infos[item.artifact_id]
        records += info.records
        directives.extend((item.artifact_id, ln, k, v) for ln, k, v in info.directives)
        errors.extend({"path": info.path, "line": ln, "reason": why} for ln, why in info.errors)
    for ids, why in store.failed:
        errors.extend(
            {"path": reader.rows[i]["path"], "line": None, "reason": f"records not stored: {why}"} for i in ids
        )
    store.add_directives(directives)

    install = next((p for r in rows if (p := install_path_of(r["win_path"]))), None)
    params = {"install_path": install or DEFAULT_INSTALL}
    params["install_path_re"] = re.escape(params["install_path"])
    samples = None if options.all_evidence else options.samples
    raw: list[RawFinding] = []
    for rule, outcome in zip(rules, _run_rules(store, rules, params, samples), strict=True):
        if isinstance(outcome, duckdb.Error):  # one rule failing on this data never loses the rest of the scan
            why = str(outcome).splitlines()[0][:200]
            errors.append({"path": rule.origin or rule.id, "line": None, "reason": f"rule {rule.id} failed: {why}"})
        else:
            raw.extend(outcome)
    store.add_errors([(e["path"], e["line"], e["reason"]) for e in errors])
    findings = build_findings(raw, store, collection)
    escalate_context(findings)
    compose_severity(findings)
    findings.sort(key=lambda f: (-severity_rank(f.severity), f.first_seen or datetime.max, f.rule.id))

    coverage = measure(store)
    is_exchange = install is not None or any(c.family != "events" for c in coverage)
    has_web = any(c.family in ("log_iis", "log_httpproxy") for c in coverage)
    verdict_text, reason = verdict(findings, has_web)
    hosts = sorted({r["host"] for r in rows})
    result = ScanResult(
        collection=label, verdict=verdict_text, reason=reason, hosts=hosts, coverage=coverage,
        missing=missing(coverage, is_exchange), warnings=window_warnings(coverage, rules), findings=findings,
        errors=errors, artifacts=len(rows), bytes_read=total, records=records,
        seconds=time.perf_counter() - started, case=str(options.case) if options.case else None,
        extras={"exposure": exposure_report(store)},
    )  # fmt: skip
    _save_results(store, result)
    return result


def _run_rules(
    store: Store, rules: list[Rule], params: dict[str, str], samples: int | None
) -> list[list[RawFinding] | duckdb.Error]:
    """Each rule's findings (or its error), in rule order. Rules run on two threads with a cursor each:
    most rule queries are small and their planning is single-threaded (rules on 1 GB: 1.3 s -> 0.95 s)."""
    local = threading.local()
    views: list[Store] = []

    def one(rule: Rule) -> list[RawFinding] | duckdb.Error:
        if not hasattr(local, "store"):
            local.store = store.cursor_view()
            views.append(local.store)
        try:
            return run_rule(local.store, rule, params, samples)
        except duckdb.Error as exc:
            return exc

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, rules))
    finally:
        for view in views:
            view.con.close()


def reader_threads(asked: int | None) -> int:
    """Reader threads: as asked, else one per core but one, which the DuckDB writer keeps busy. On 2
    cores, one reader beat two (1 GB with --case: 9.1 s vs 9.6-9.9 s, peak memory 0.91 vs 1.07 GB):
    a second reader only took time from the writer, on which the scan waits."""
    return max(1, asked if asked is not None else (os.cpu_count() or 2) - 1)


def _attach_loose_files_to_hosts(rows: list[dict[str, Any]], default: str) -> None:
    """`EXCH01/EventLogs/x.evtx` belongs to EXCH01 when `EXCH01/C/...` exists (KAPE puts both there)."""
    hosts = {
        r["host"] for r in rows if r["win_path"] and r["host"] != default and r["path"].startswith(r["host"] + "/")
    }
    for r in rows:
        top = r["path"].split("/", 1)[0]
        if r["host"] == default and top in hosts:
            r["host"] = top


_FINDINGS = pa.schema([
    ("id", pa.int32()), ("rule", pa.string()), ("title", pa.string()), ("severity", pa.string()),
    ("kind", pa.string()), ("cves", pa.list_(pa.string())), ("attack", pa.list_(pa.string())),
    ("host", pa.string()), ("grp", pa.string()), ("count", pa.int64()), ("first_seen", pa.timestamp("us")),
    ("last_seen", pa.timestamp("us")), ("note", pa.string()),
])  # fmt: skip
_EVIDENCE = pa.schema([
    ("finding", pa.int32()), ("path", pa.string()), ("line", pa.int64()), ("record_id", pa.int64()),
    ("record", pa.string()), ("raw", pa.string()),
])  # fmt: skip


def _save_results(store: Store, result: ScanResult) -> None:
    """Keep findings, evidence, coverage and the verdict in the case database, each table in one
    statement (a statement per row cost 0.26 s for 132 evidence rows; now 0.014 s)."""
    findings = [
        [i, f.rule.id, f.rule.title, f.severity, f.rule.kind, list(f.rule.cves), list(f.rule.attack), f.host,
         json.dumps(f.group, default=str), f.count, f.first_seen, f.last_seen, f.note]
        for i, f in enumerate(result.findings, 1)
    ]  # fmt: skip
    evidence = [
        [i, e.path, e.line, e.record_id, json.dumps(e.record, default=str), e.raw]
        for i, f in enumerate(result.findings, 1)
        for e in f.evidence
    ]
    coverage = (
        pa.Table.from_pylist([c.to_dict() for c in result.coverage])
        if result.coverage
        else pa.table({"family": pa.array([], pa.string())})
    )
    tables = {
        "findings": (pa.Table.from_pylist([dict(zip(_FINDINGS.names, r, strict=True)) for r in findings], _FINDINGS),
                     "* REPLACE (grp::JSON AS grp)"),
        "evidence": (pa.Table.from_pylist([dict(zip(_EVIDENCE.names, r, strict=True)) for r in evidence], _EVIDENCE),
                     "* REPLACE (record::JSON AS record)"),
        "coverage": (coverage, "*"),
    }  # fmt: skip
    for name, (rows, select) in tables.items():
        store.con.register("_rows", rows)
        store.con.execute(f"CREATE TABLE {name} AS SELECT {select} FROM _rows")
        store.con.unregister("_rows")
    meta = {key: getattr(result, key) for key in ("verdict", "reason", "hosts", "missing", "warnings", "collection")}
    meta["schema_id"] = CASE_SCHEMA_ID  # exhunt's own marker: only such a file is replaced by a later --case
    for key, value in {**meta, "exhunt_version": __version__, "result": result.to_dict()}.items():
        store.set_meta(key, value)
