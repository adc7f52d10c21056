"""Reads the artifacts of a collection on worker threads and hands Arrow batches to the store.

Each file is sniffed by content (`sources.*.sniff` on its first bytes), read by its Source in bounded
chunks while its SHA-256 is computed, and its batches go through a queue bounded by bytes in flight.
Plain files are inventoried and hashed; script files in web folders are content-scanned with yara-x.
Nothing here raises for one bad file: problems go to the artifact's errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from exhunt.case import log_time
from exhunt.collection import Collection, Entry
from exhunt.families import family_of_table
from exhunt.layout import split_host_and_windows_path
from exhunt.procread import Outcome, ProcessReads
from exhunt.rules.yara import CONTENT_LIMIT, match, wants_content
from exhunt.sources.base import HEAD_BYTES, ArtifactInfo, HashAfter, Source, again
from exhunt.sources.delimited import RawRows, parse_batch
from exhunt.sources.events import EvtxSource, JsonLinesEventSource
from exhunt.sources.exchange_csv import ExchangeCsvSource
from exhunt.sources.exports import MappedSource
from exhunt.sources.fieldmap import FieldMap
from exhunt.sources.headerless import HeaderlessExchangeSource, HeaderlessW3CSource
from exhunt.sources.iis_config import IisConfigSource
from exhunt.sources.json_array_events import JsonArrayEventSource
from exhunt.sources.sentinel_csv import SentinelEventCsvSource
from exhunt.sources.tool_outputs import ToolFileListSource
from exhunt.sources.w3c import W3CSource

SOURCES: tuple[type[Source], ...] = (
    EvtxSource, SentinelEventCsvSource, HeaderlessW3CSource, W3CSource, HeaderlessExchangeSource, ExchangeCsvSource,
    JsonLinesEventSource, JsonArrayEventSource, MappedSource, ToolFileListSource, IisConfigSource,
)  # fmt: skip
LOG_EXTENSIONS = (".log", ".evtx", ".jsonl", ".ndjson")
HASH_LIMIT = 256 << 20
IN_FLIGHT_BYTES = 128 << 20
# Sources that read in Python from end to end (`Source.python_bound`) read one file at a time across
# the reader threads: two of them at once only fought over the GIL, and a reader doing I/O beside
# one slowed it too (the Zircolite bench's 108 MB of JSON-lines events: ingest 3.2-3.4 s with two
# readers, 2.3-2.5 s with one). Readers of other formats go on meanwhile. The big files of a
# JSON-heavy collection go to worker processes instead (`procread`), which need no lock.
PYTHON_BOUND = threading.Lock()
BUNDLE_BYTES = 32 << 20  # artifacts read by one worker together (their small runs of rows parse together)
PARSE_BYTES = 16 << 20  # parse a group of pending runs once this many bytes wait


@dataclass
class Item:
    artifact_id: int
    entry: Entry


def bundles(items: list[Item], limit: int = BUNDLE_BYTES) -> list[list[Item]]:
    """Consecutive items (in path order, so mostly one folder and one log format) of about `limit`
    bytes each: the unit of work of one reader thread."""
    out: list[list[Item]] = []
    size = limit
    for item in items:
        if size >= limit:
            out.append([])
            size = 0
        out[-1].append(item)
        size += item.entry.size
    return out


def cannot_read(kind: str, message: str) -> str:
    """The error of an artifact whose reading stopped on an exception (its name and message)."""
    why = (message.strip().splitlines() or ["no message"])[0][:200]  # EOFError() has none
    return f"cannot read: {kind}: {why}"


def _classify(head: bytes, path: str) -> type[Source] | None:
    for source in SOURCES:
        if source.sniff(head, path):
            return source
    return None


Sink = Callable[[str, pa.Table], None]


class Reader:
    """Reads artifacts on worker threads and hands Arrow batches to the writer through a queue (or,
    with `sink`, straight to it on the calling thread: a scan with a budget of one thread). Batches
    that `store_here` takes are stored on the reader's own thread (the spooled tables) and skip the
    queue."""

    def __init__(
        self,
        collection: Collection,
        default_host: str,
        content_rules: Any,
        keep: dict[str, set[str] | None],
        sink: Sink | None = None,
        on_done: Callable[[int], None] | None = None,
        maps: tuple[FieldMap, ...] = (),
        store_here: Callable[[str, pa.Table], bool] | None = None,
        processes: ProcessReads | None = None,
    ) -> None:
        self.collection = collection
        self.processes = processes  # worker processes for the python-bound sources' big files
        self.store_here = store_here
        self.user_maps = MappedSource(keep, maps) if maps else None  # `--map FILE`: tried first
        self.sink, self.on_done = sink, on_done
        self.content_rules = content_rules
        self.keep = keep
        self.default_host = default_host
        self.out: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.budget = _ByteBudget(IN_FLIGHT_BYTES)
        self.infos: dict[int, ArtifactInfo] = {}
        self.rows: dict[int, dict[str, Any]] = {}

    def work(self, bundle: list[Item]) -> None:
        """Read a bundle of artifacts; runs of log lines that share a format are parsed together."""
        pending = _PendingRows(self)
        for item in bundle:
            self._read(item, pending)
        pending.flush()
        for item in bundle:
            self.rows[item.artifact_id]["records"] = self.infos[item.artifact_id].records

    def _read(self, item: Item, pending: _PendingRows) -> None:
        entry = item.entry
        host, win_path = split_host_and_windows_path(entry.logical_path, self.default_host)
        name = entry.logical_path.rsplit("/", 1)[-1]
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
                source: Any = _classify(head, entry.logical_path) if head else None
                if head and self.user_maps is not None and self.user_maps.claims(head):
                    source = self.user_maps
                if source is None:
                    self._plain_file(entry, head, stream, hasher, info, row)
                else:
                    row["kind"] = source.kind
                    stream = again(head, stream)
                    scanned = source.scan_content and wants_content(win_path, name) and entry.size <= CONTENT_LIMIT
                    if scanned:
                        stream = self._content_scanned(stream, info, row)
                    reading = source if isinstance(source, Source) else source(self.keep)
                    outcome = None if scanned else self._in_process(reading, entry)
                    if outcome is not None:
                        info = outcome.info
                        self._pass_on(outcome, item.artifact_id, row)
                    else:
                        with PYTHON_BOUND if reading.python_bound else contextlib.nullcontext():
                            for table, part in reading.read(stream, info, HashAfter(hasher, len(head))):
                                if isinstance(part, RawRows):
                                    info.runs.append((part.first_line, part.offset))
                                    pending.add(table, part, item.artifact_id, info)
                                else:
                                    self.emit(table, part, np.full(part.num_rows, item.artifact_id, np.int32))
                        row["sha256"] = hasher.hexdigest()
        except Exception as exc:  # one bad artifact never stops the scan
            info.errors.append((None, cannot_read(type(exc).__name__, str(exc))))
        row.update(log_table=info.table, log_type=info.log_type, version=info.version)
        self.infos[item.artifact_id] = info
        self.rows[item.artifact_id] = row
        self._signal("done", entry.size)

    def _in_process(self, reading: Source, entry: Entry) -> Outcome | None:
        """A worker process's reading of the artifact, when the pool takes it (see `procread`)."""
        procs = self.processes
        if procs is None:
            return None
        local = self.collection.local_path(entry.path)
        if local is None or not procs.takes(entry.size, reading):
            return None
        return procs.read(reading, local, entry.path, entry.size)

    def _pass_on(self, outcome: Outcome, artifact_id: int, row: dict[str, Any]) -> None:
        """What a worker read, passed on as if read here."""
        for table, part in self.processes.batches(outcome):  # type: ignore[union-attr]
            self.emit(table, part, np.full(part.num_rows, artifact_id, np.int32))
        if outcome.error is not None:
            outcome.info.errors.append((None, cannot_read(*outcome.error)))
        else:
            row["sha256"] = outcome.sha256

    def emit(self, table: str, rows: pa.Table, artifact_ids: np.ndarray) -> None:
        """Hand rows (with their artifact ids) to the store, waiting while too many bytes are in flight."""
        family = family_of_table(table)
        if family.line_based and (ts := log_time(rows, family)) is not None:
            rows = rows.append_column("_ts", ts)
        rows = self._project(table, rows).append_column("_artifact", pa.array(artifact_ids, pa.int32()))
        if self.sink is not None:
            self.sink(table, rows)
            return
        if self.store_here is not None and self.store_here(table, rows):
            return
        self.budget.take(rows.nbytes)
        self.out.put(("rows", (table, rows)))

    def _signal(self, kind: str, payload: Any) -> None:
        if self.sink is None:
            self.out.put((kind, payload))
        elif self.on_done is not None:
            self.on_done(payload)

    def _project(self, table: str, batch: pa.Table) -> pa.Table:
        keep = self.keep.get(table)
        if keep is None:
            return batch
        return batch.select([c for c in batch.column_names if c.lower() in keep or c.startswith("_")])

    def _content_scanned(self, stream: Any, info: ArtifactInfo, row: dict) -> io.BytesIO:
        """Run the content rules on a file a source also reads (a web.config can be a web shell)."""
        data = stream.read()
        found = match(self.content_rules, data)
        row["yara"] = found.names
        info.errors.extend((None, problem) for problem in found.problems)
        return io.BytesIO(data)

    def _plain_file(self, entry: Entry, head: bytes, stream: Any, hasher: Any, info: ArtifactInfo, row: dict) -> None:
        lower = entry.logical_path.lower()
        if entry.size == 0:
            if lower.endswith(LOG_EXTENSIONS):
                info.empty = True
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
            found = match(self.content_rules, data)
            row["yara"] = found.names
            info.errors.extend((None, problem) for problem in found.problems)
            return
        if content:
            info.errors.append((None, f"content not scanned: larger than {CONTENT_LIMIT >> 20} MiB (hashed only)"))
        if entry.size <= HASH_LIMIT:
            while chunk := stream.read(8 << 20):
                hasher.update(chunk)
            row["sha256"] = hasher.hexdigest()
        else:
            row["note"] = f"not hashed: larger than {HASH_LIMIT >> 20} MiB"


class _PendingRows:
    """Unparsed runs of log lines from one bundle, grouped by store table and field list, parsed in one
    call per group once PARSE_BYTES wait (or at the end of the bundle). Per-file parsing of 3,700
    small HttpProxy files cost 1.4 ms a file, more than the parsing itself."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.groups: dict[tuple[Any, ...], list[tuple[int, ArtifactInfo, RawRows]]] = {}
        self.sizes: dict[tuple[Any, ...], int] = {}

    def add(self, table: str, rows: RawRows, artifact_id: int, info: ArtifactInfo) -> None:
        key = (table, id(rows.fmt), tuple(rows.fields))
        self.groups.setdefault(key, []).append((artifact_id, info, rows))
        self.sizes[key] = self.sizes.get(key, 0) + len(rows.data)
        if self.sizes[key] >= PARSE_BYTES:
            self._parse(key)

    def flush(self) -> None:
        for key in list(self.groups):
            self._parse(key)

    def _parse(self, key: tuple[Any, ...]) -> None:
        group, table = self.groups.pop(key), key[0]
        self.sizes.pop(key, None)
        keep = self.reader.keep.get(table)
        try:
            parts = [(group, *parse_batch([r for _, _, r in group], keep))]
        except Exception:  # never expected; then each file's runs alone, so one file cannot cost the others
            parts = []
            for one in group:
                try:
                    parts.append(([one], *parse_batch([one[2]], keep)))
                except Exception as exc:
                    one[1].errors.append((one[2].first_line, f"rows not parsed: {type(exc).__name__}: {exc}"[:240]))
        for members, rows, run in parts:
            ids = np.fromiter((a for a, _, _ in members), np.int32, len(members))
            try:
                if rows.num_rows:
                    self.reader.emit(table, rows, ids[run])
            except Exception as exc:  # never expected; a reader thread that raised would stall the scan
                for _, info, raw in members:
                    info.errors.append((raw.first_line, f"rows not stored: {type(exc).__name__}: {exc}"[:240]))
                continue
            for (_, info, _), n in zip(members, np.bincount(run, minlength=len(members)).tolist(), strict=True):
                info.records += n


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
