"""Stage 1: read a collection into the case database.

Reader threads sniff, read, hash and content-scan the artifacts in bundles; parsed batches flow
through a queue bounded by bytes to this thread, which writes them into the case in whole row groups,
so memory stays flat whatever the collection's size. With a budget of one thread, reading and writing
take turns on the calling thread. Every file the collection holds ends up either in `artifacts` or
among the problems (or both, when it was read only in part).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from exhunt.case import CaseWriter
from exhunt.collection import Collection, Skipped
from exhunt.layout import install_path_of
from exhunt.procread import ProcessReads, worth_processes
from exhunt.reader import Item, Reader, bundles
from exhunt.result import Problem
from exhunt.sources.fieldmap import FieldMap

Progress = Callable[[int, int, str], None]  # (bytes done, bytes total, what is being read)


@dataclass
class IngestReport:
    artifacts: list[dict[str, Any]]  # one row per file, as stored in `artifacts`
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # remarks on inputs that lose no record
    records: int = 0
    bytes_read: int = 0

    @property
    def hosts(self) -> list[str]:
        return sorted({r["host"] for r in self.artifacts})

    @property
    def install_path(self) -> str | None:
        """The Exchange install folder the collection's files lie under, if any."""
        return next((p for r in self.artifacts if (p := install_path_of(r["win_path"]))), None)


def ingest(
    collection: Collection,
    case: CaseWriter,
    *,
    content_rules: Any,
    keep: dict[str, set[str] | None],
    threads: int,
    readers: int | None = None,
    progress: Progress | None = None,
    maps: tuple[FieldMap, ...] = (),
    first_id: int = 1,
) -> IngestReport:
    """Read every artifact of `collection` into `case`. `threads` is the scan's CPU budget; `readers`
    overrides the number of reader threads (default: `_reader_threads`).
    `maps` are the user's field maps (`--map`), tried before the built-in sources; `first_id` numbers
    the artifacts from there (an incremental rescan appends to a kept case)."""
    problems: list[Problem] = []
    entries = []
    for e in collection.entries():
        if isinstance(e, Skipped):
            problems.append(Problem(e.path, None, e.reason, "inventory"))
        else:
            entries.append(e)
    total = sum(e.size for e in entries)
    stored = sum(e.size for e in entries if not e.inner)  # members of inner archives are in their archive's bytes
    items = [Item(first_id + i, e) for i, e in enumerate(entries)]
    counter = _Counter(total, len(items), progress)
    if threads <= 1 and readers is None:
        reader = Reader(
            collection, collection.name, content_rules, keep, sink=case.append, on_done=counter.add, maps=maps
        )
        for bundle in bundles(items):
            reader.work(bundle)
    else:
        n = readers or _reader_threads(case, threads)
        processes = ProcessReads(n) if worth_processes((e.logical_path, e.size) for e in entries) else None
        reader = Reader(
            collection, collection.name, content_rules, keep, maps=maps, store_here=case.append_here,
            processes=processes,
        )  # fmt: skip
        try:
            _read_on_threads(reader, items, case, counter, n)
        finally:
            if processes is not None:
                processes.close()
    case.ready_for_queries()
    return _report(reader, items, case, problems, stored)


def _reader_threads(case: CaseWriter, threads: int) -> int:
    """Reader threads for a budget of `threads` cores: one per core when the records are spooled to
    Parquet (writing them costs little: 1 GB on 2 cores read in 7.3 s with two readers against 10.1 s
    with one), else one per core but the one the DuckDB writer keeps busy."""
    return threads if case.spool is not None else max(1, threads - 1)


def _read_on_threads(reader: Reader, items: list[Item], case: CaseWriter, counter: _Counter, n: int) -> None:
    def run_all() -> None:
        try:
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(reader.work, bundles(items)))
        finally:  # the writer loop below waits for this, whatever happened
            reader.out.put(("end", None))

    threading.Thread(target=run_all, daemon=True).start()
    while True:
        kind, payload = reader.out.get()
        if kind == "rows":
            table, batch = payload
            case.append(table, batch)
            reader.budget.give(batch.nbytes)
        elif kind == "done":
            counter.add(payload)
        else:
            break


def _report(reader: Reader, items: list[Item], case: CaseWriter, problems: list[Problem], total: int) -> IngestReport:
    rows = [reader.rows[i.artifact_id] for i in items]
    _attach_loose_files_to_hosts(rows, reader.default_host)
    case.add_artifacts(rows)
    directives, index, records, notes = [], [], 0, []
    for item in items:
        info = reader.infos[item.artifact_id]
        records += info.records
        directives.extend((item.artifact_id, ln, k, v) for ln, k, v in info.directives)
        index.extend((item.artifact_id, ln, off) for ln, off in info.runs)
        problems.extend(Problem(info.path, ln, why, "read") for ln, why in info.errors)
        if info.empty:
            problems.append(Problem(info.path, None, "empty file", "read", missed=False))
        notes.extend(Problem(info.path, None, note, "read", missed=False) for note in info.notes)
    for ids, why in case.failed:
        problems.extend(Problem(reader.rows[i]["path"], None, f"records not stored: {why}", "store") for i in ids)
    case.add_directives(directives)
    case.add_line_index(index)
    return IngestReport(rows, problems, notes, records, total)


def _attach_loose_files_to_hosts(rows: list[dict[str, Any]], default: str) -> None:
    """`EXCH01/EventLogs/x.evtx` belongs to EXCH01 when `EXCH01/C/...` exists (KAPE puts both there)."""
    hosts = {
        r["host"] for r in rows if r["win_path"] and r["host"] != default and r["path"].startswith(r["host"] + "/")
    }
    for r in rows:
        top = r["path"].split("/", 1)[0]
        if r["host"] == default and top in hosts:
            r["host"] = top


class _Counter:
    """Bytes and files done, for the optional progress callback."""

    def __init__(self, total: int, files: int, progress: Progress | None) -> None:
        self.total, self.files, self.progress = total, files, progress
        self.done_bytes = self.done_files = 0
        self.lock = threading.Lock()

    def add(self, size: int) -> None:
        with self.lock:
            self.done_bytes += size
            self.done_files += 1
            if self.progress:
                self.progress(self.done_bytes, self.total, f"{self.done_files}/{self.files} files")


def cpu_budget(asked: int | None) -> int:
    """The scan's CPU budget: as asked, else every core."""
    return max(1, asked if asked is not None else (os.cpu_count() or 1))
