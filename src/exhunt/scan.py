"""scan(collection) -> ScanResult: discover, read, store, detect, judge.

The library entry point that the CLI, the fleet runner and the tests all call. Reading runs on a small
thread pool (pyarrow and DuckDB release the GIL); parsed batches flow through a bounded queue into
the case database, so memory stays flat whatever the collection's size. Problems with one artifact
become `errors[]` entries and never stop the scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
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

import pyarrow as pa

from exhunt import __version__
from exhunt.collection import Collection, Entry, Skipped, open_collection
from exhunt.coverage import FamilyCoverage, measure, missing, window_warnings
from exhunt.errors import UsageError
from exhunt.evidence import fetch_lines
from exhunt.exposure.observed import exposure_report
from exhunt.findings import Evidence, Finding, compose_severity, escalate_context, exit_code, severity_rank, verdict
from exhunt.iocs import builtin_iocs, ioc_rules, load_iocs
from exhunt.layout import DEFAULT_INSTALL, install_path_of, split_host_and_windows_path
from exhunt.rules.columns import columns_to_keep
from exhunt.rules.model import Rule, load_rules
from exhunt.rules.native import VIEWS, RawFinding, run_rule
from exhunt.rules.sigma import load_sigma
from exhunt.rules.yara import CONTENT_LIMIT, match, wants_content
from exhunt.rules.yara import compile_rules as compile_yara
from exhunt.sources.base import ArtifactInfo, Source
from exhunt.sources.delimited import split_csv_line, split_w3c_line
from exhunt.sources.events import EvtxSource, JsonLinesEventSource
from exhunt.sources.exchange_csv import ExchangeCsvSource
from exhunt.sources.iis_config import IisConfigSource
from exhunt.sources.w3c import W3CSource
from exhunt.store import Store, _q

SCHEMA_VERSION = "1.0"
SOURCES: tuple[type[Source], ...] = (EvtxSource, W3CSource, ExchangeCsvSource, JsonLinesEventSource, IisConfigSource)
LOG_EXTENSIONS = (".log", ".evtx", ".jsonl", ".ndjson")
HASH_LIMIT = 256 << 20
HEAD_BYTES = 8192
IN_FLIGHT_BYTES = 128 << 20


@dataclass
class ScanOptions:
    case: Path | None = None
    all_evidence: bool = False
    samples: int = 5
    rules: list[Rule] | None = None
    workers: int = 2
    memory_limit: str = "512MB"
    yara: list[Path] | None = None  # the user's YARA files or folders, added to the built-in content rules
    iocs: list[Path] | None = None  # the user's IOC feeds (STIX 2.1, MISP JSON, text/CSV), added to the built-in pack
    sigma: list[Path] | None = None  # Sigma rule files or folders, run on events and IIS logs
    only: list[str] | None = None  # run only the rules with these ids
    progress: Callable[[int, int, str], None] | None = None  # (bytes done, bytes total, current path)


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


@dataclass
class _Item:
    artifact_id: int
    entry: Entry


def _classify(head: bytes, path: str) -> type[Source] | None:
    for source in SOURCES:
        if source.sniff(head, path):
            return source
    return None


class _Reader:
    """Reads artifacts on worker threads and hands Arrow batches to the writer through a queue."""

    def __init__(
        self, collection: Collection, default_host: str, content_rules: Any, keep: dict[str, set[str] | None]
    ) -> None:
        self.collection = collection
        self.content_rules = content_rules
        self.keep = keep
        self.default_host = default_host
        self.out: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.budget = _ByteBudget(IN_FLIGHT_BYTES)
        self.infos: dict[int, ArtifactInfo] = {}
        self.rows: dict[int, dict[str, Any]] = {}

    def work(self, item: _Item) -> None:
        entry = item.entry
        host, win_path = split_host_and_windows_path(entry.path, self.default_host)
        name = entry.path.rsplit("/", 1)[-1]
        info = ArtifactInfo(entry.path)
        row: dict[str, Any] = {
            "id": item.artifact_id, "path": entry.path, "host": host, "win_path": win_path, "name": name,
            "ext": os.path.splitext(name)[1].lower(), "size_bytes": entry.size, "mtime": entry.mtime,
            "kind": "file", "records": 0,
        }  # fmt: skip
        hasher = hashlib.sha256()
        try:
            with self.collection.open(entry.path) as stream:
                head = stream.read(HEAD_BYTES)
                hasher.update(head)
                row["magic"] = head[:8].hex()
                source = _classify(head, entry.path) if head else None
                if source is None:
                    self._plain_file(entry, head, stream, hasher, info, row)
                else:
                    row["kind"] = source.kind
                    stream = _Prepend(head, stream)
                    for table, batch in source(self.keep).read(stream, info, _NoHash(hasher, len(head))):
                        batch = self._project(table, batch)
                        self.budget.take(batch.nbytes)
                        self.out.put(("rows", (table, batch, item.artifact_id)))
                    row["sha256"] = hasher.hexdigest()
        except Exception as exc:  # one bad artifact never stops the scan
            info.errors.append((None, f"cannot read: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
        row.update(log_table=info.table, log_type=info.log_type, version=info.version, records=info.records)
        self.infos[item.artifact_id] = info
        self.rows[item.artifact_id] = row
        self.out.put(("done", entry.size))

    def _project(self, table: str, batch: pa.Table) -> pa.Table:
        keep = self.keep.get(table)
        if keep is None:
            return batch
        return batch.select([c for c in batch.column_names if c.lower() in keep or c.startswith("_")])

    def _plain_file(self, entry: Entry, head: bytes, stream: Any, hasher: Any, info: ArtifactInfo, row: dict) -> None:
        lower = entry.path.lower()
        if entry.size == 0:
            if lower.endswith(LOG_EXTENSIONS):
                info.errors.append((None, "empty file"))
        elif lower.endswith(LOG_EXTENSIONS):
            binary = b"\x00" in head[:1024]
            info.errors.append(
                (
                    None,
                    "binary content in a log-named file: not parsed"
                    if binary
                    else "unrecognised log format: not parsed",
                )
            )
        content = wants_content(row["win_path"], row["name"])
        if content and entry.size <= CONTENT_LIMIT:
            data = head + stream.read()
            hasher.update(data[len(head) :])
            row["sha256"] = hasher.hexdigest()
            row["yara"] = match(self.content_rules, data)
            return
        if content:
            info.errors.append((None, f"content not scanned: larger than {CONTENT_LIMIT >> 20} MiB (hashed only)"))
        if entry.size <= HASH_LIMIT:
            while chunk := stream.read(8 << 20):
                hasher.update(chunk)
            row["sha256"] = hasher.hexdigest()
        else:
            row["note"] = f"not hashed: larger than {HASH_LIMIT >> 20} MiB"


class _ByteBudget:
    """Bounds the parsed bytes waiting for the store. Counting bytes, not items, matters: with a small
    item limit, thousands of tiny per-file tables filled the queue in milliseconds and the readers then
    sat idle through every store flush (measured: parse and insert did not overlap at all)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.cond = threading.Condition()

    def take(self, n: int) -> None:
        with self.cond:
            while self.used > 0 and self.used + n > self.limit:
                self.cond.wait()
            self.used += n

    def give(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


class _Prepend:
    """A stream that yields `head` again before the rest of `stream` (the head was sniffed)."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self.head, self.stream = head, stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.stream.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.stream.read(n - len(data))
            return data
        return self.stream.read(n)

    def seek(self, *args: Any) -> int:  # pragma: no cover - sources read forward only
        raise OSError("not seekable")


class _NoHash:
    """Hasher proxy that skips the first `skip` bytes (already hashed when sniffing)."""

    def __init__(self, hasher: Any, skip: int) -> None:
        self.hasher, self.skip = hasher, skip

    def update(self, data: bytes) -> None:
        if self.skip:
            cut = min(self.skip, len(data))
            data, self.skip = data[cut:], self.skip - cut
        if data:
            self.hasher.update(data)


def _entries(collection: Collection, errors: list[dict[str, Any]]) -> Iterator[Entry]:
    for e in collection.entries():
        if isinstance(e, Skipped):
            errors.append({"path": e.path, "line": None, "reason": e.reason})
        else:
            yield e


def scan(path: Path, options: ScanOptions | None = None) -> ScanResult:
    """Scan a collection folder, zip or single log file. Raises InputError if it cannot be opened."""
    options = options or ScanOptions()
    started = time.perf_counter()
    content_rules = compile_yara(options.yara)  # bad rule files fail before any evidence is touched
    rules = options.rules if options.rules is not None else load_rules() + ioc_rules(builtin_iocs())
    if options.iocs:
        rules = rules + ioc_rules(load_iocs(options.iocs))
    if options.sigma:
        rules = rules + load_sigma(options.sigma).rules
    if options.only:
        unknown = set(options.only) - {r.id for r in rules}
        if unknown:
            raise UsageError(f"no rule with id {', '.join(sorted(unknown))}; see 'exhunt rules list'")
        rules = [r for r in rules if r.id in set(options.only)]
    collection = open_collection(path)
    if options.case is not None and collection.root and _inside(options.case, Path(path)):
        raise UsageError("the case database must be written outside the evidence folder")
    tmpdir = None
    if options.case is None:
        tmpdir = tempfile.mkdtemp(prefix="exhunt-")
        db_path = Path(tmpdir) / "case.duckdb"
    else:
        db_path = options.case
        for p in (db_path, Path(str(db_path) + ".wal")):
            if p.exists():
                p.unlink()
    store = Store(db_path, memory_limit=options.memory_limit)
    try:
        return _scan(collection, store, options, rules, content_rules, started, str(path))
    finally:
        store.close()
        collection.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return parent.is_dir()
    except ValueError:
        return False


def _scan(
    collection: Collection,
    store: Store,
    options: ScanOptions,
    rules: list[Rule],
    content_rules: Any,
    started: float,
    label: str,
) -> ScanResult:
    errors: list[dict[str, Any]] = []
    entries = list(_entries(collection, errors))
    total = sum(e.size for e in entries)
    keep = {} if options.case is not None else columns_to_keep(rules)  # a case file keeps every column
    reader = _Reader(collection, collection.name, content_rules, keep)
    items = [_Item(i + 1, e) for i, e in enumerate(entries)]
    done_bytes = 0
    finished = 0

    def run_all() -> None:
        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            list(pool.map(reader.work, items))
        reader.out.put(("end", None))

    threading.Thread(target=run_all, daemon=True).start()
    while True:
        kind, payload = reader.out.get()
        if kind == "rows":
            table, batch, artifact_id = payload
            store.append(table, batch, artifact_id)
            reader.budget.give(batch.nbytes)
        elif kind == "done":
            done_bytes += payload
            finished += 1
            if options.progress:
                options.progress(done_bytes, total, f"{finished}/{len(items)} files")
        else:
            break
    store.flush()

    rows = [reader.rows[i.artifact_id] for i in items]
    _attach_loose_files_to_hosts(rows, collection.name)
    store.add_artifacts(rows)
    directives, records = [], 0
    for item in items:
        info = reader.infos[item.artifact_id]
        records += info.records
        directives.extend((item.artifact_id, ln, k, v) for ln, k, v in info.directives)
        errors.extend({"path": info.path, "line": ln, "reason": why} for ln, why in info.errors)
    store.add_directives(directives)
    store.add_errors([(e["path"], e["line"], e["reason"]) for e in errors])

    install = next((p for r in rows if (p := install_path_of(r["win_path"]))), None)
    params = {"install_path": install or DEFAULT_INSTALL}
    params["install_path_re"] = _re_escape(params["install_path"])
    samples = None if options.all_evidence else options.samples
    raw: list[RawFinding] = []
    for rule in rules:
        raw.extend(run_rule(store, rule, params, samples))
    findings = _with_evidence(raw, store, collection)
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


def _attach_loose_files_to_hosts(rows: list[dict[str, Any]], default: str) -> None:
    """`EXCH01/EventLogs/x.evtx` belongs to EXCH01 when `EXCH01/C/...` exists (KAPE puts both there)."""
    hosts = {
        r["host"] for r in rows if r["win_path"] and r["host"] != default and r["path"].startswith(r["host"] + "/")
    }
    for r in rows:
        top = r["path"].split("/", 1)[0]
        if r["host"] == default and top in hosts:
            r["host"] = top


def _re_escape(text: str) -> str:
    return "".join("\\" + ch if not ch.isalnum() else ch for ch in text)


def _with_evidence(raw: list[RawFinding], store: Store, collection: Collection) -> list[Finding]:
    """Fill each finding's evidence with its parsed record and raw line."""
    fetched: dict[tuple[str, int], dict[str, Any]] = {}
    by_table: dict[str, set[int]] = {}
    for rf in raw:
        by_table.setdefault(VIEWS[rf.rule.source].table, set()).update(rf.rowids)
    for table, rowids in by_table.items():
        art = "id" if table == "artifacts" else "_artifact"
        join = "" if table == "artifacts" else f" JOIN artifacts a ON a.id = t.{art}"
        path = "t.path" if table == "artifacts" else "a.path"
        ids = sorted(rowids)
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            fields = (
                "(SELECT d.value FROM directives d WHERE d.artifact = t._artifact AND d.key = 'Fields' "
                "AND d.line < t._line ORDER BY d.line DESC LIMIT 1) AS _fields, "
                if table.startswith("log_")
                else ""
            )
            cur = store.con.execute(
                f"SELECT t.rowid AS _rowid, {path} AS _path, {fields}t.* FROM {_q(table)} t{join} "
                f"WHERE t.rowid IN (SELECT unnest(?::BIGINT[]))",
                [chunk],
            )
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                rec = dict(zip(names, row, strict=True))
                fetched[(table, rec["_rowid"])] = rec
    wanted: dict[str, set[int]] = {}
    for (table, _), rec in fetched.items():
        if table != "artifacts" and rec.get("_line") is not None:
            wanted.setdefault(rec["_path"], set()).add(int(rec["_line"]))
    lines = fetch_lines(collection, wanted)
    findings = []
    for rf in raw:
        table = VIEWS[rf.rule.source].table
        evidence = []
        for rid in rf.rowids:
            rec = fetched.get((table, rid))
            if rec is None:
                continue
            evidence.append(_evidence(table, rec, lines))
        findings.append(
            Finding(
                rf.rule, rf.host, _plain(rf.group), rf.count, rf.first_seen, rf.last_seen, rf.rule.severity, evidence
            )
        )
    return findings


def _evidence(table: str, rec: dict[str, Any], lines: dict[tuple[str, int], str]) -> Evidence:
    path = rec["_path"]
    if table == "artifacts":
        record = {k: _plain(v) for k, v in rec.items() if not k.startswith("_") and v is not None and k != "id"}
        return Evidence(path, None, None, rec.get("mtime"), record, None)
    line = rec.get("_line")
    if table == "events":
        data = json.loads(rec["data"]) if rec.get("data") else {}
        record = {
            k: _plain(rec[k]) for k in ("channel", "provider", "event_id", "level", "computer", "record_id", "message")
        }
        record = {k: v for k, v in record.items() if v is not None}
        record["data"] = data
        raw = lines.get((path, int(line))) if line is not None else json.dumps(record, ensure_ascii=False, default=str)
        return Evidence(path, line, rec.get("record_id"), rec.get("ts"), record, raw)
    raw = lines.get((path, int(line))) if line else None
    record = {k: v for k, v in rec.items() if not k.startswith("_") and v is not None}
    fields = rec.get("_fields")
    if raw is not None and fields:
        record = record_from_line(raw, fields, table == "log_iis") or record
    return Evidence(path, line, None, rec.get("_ts"), record, raw)


def record_from_line(raw: str, fields_directive: str, w3c: bool) -> dict[str, str] | None:
    """The parsed fields of one raw log line, bound to the `#Fields` in force at that line."""
    names = fields_directive.split() if w3c else split_csv_line(fields_directive)
    values = split_w3c_line(raw) if w3c else split_csv_line(raw)
    if not names or not values:
        return None
    empty = ("-", "") if w3c else ("",)
    return {n: v for n, v in zip(names, values, strict=False) if v not in empty}


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _save_results(store: Store, result: ScanResult) -> None:
    """Keep findings, evidence, coverage and the verdict in the case database."""
    con = store.con
    con.execute(
        "CREATE TABLE findings (id INTEGER, rule VARCHAR, title VARCHAR, severity VARCHAR, kind VARCHAR, "
        "cves VARCHAR[], attack VARCHAR[], host VARCHAR, grp JSON, count BIGINT, first_seen TIMESTAMP, "
        "last_seen TIMESTAMP, note VARCHAR)"
    )
    con.execute(
        "CREATE TABLE evidence (finding INTEGER, path VARCHAR, line BIGINT, record_id BIGINT, record JSON, raw VARCHAR)"
    )
    for i, f in enumerate(result.findings, 1):
        con.execute(
            "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [i, f.rule.id, f.rule.title, f.severity, f.rule.kind, list(f.rule.cves), list(f.rule.attack), f.host,
             json.dumps(f.group, default=str), f.count, f.first_seen, f.last_seen, f.note],
        )  # fmt: skip
        if f.evidence:
            con.executemany(
                "INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?)",
                [[i, e.path, e.line, e.record_id, json.dumps(e.record, default=str), e.raw] for e in f.evidence],
            )
    con.register(
        "_cov",
        pa.Table.from_pylist([c.to_dict() for c in result.coverage])
        if result.coverage
        else pa.table({"family": pa.array([], pa.string())}),
    )
    con.execute("CREATE TABLE coverage AS SELECT * FROM _cov")
    con.unregister("_cov")
    for key in ("verdict", "reason", "hosts", "missing", "warnings", "collection"):
        store.set_meta(key, getattr(result, key))
    store.set_meta("exhunt_version", __version__)
