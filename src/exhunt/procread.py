"""Reads the artifacts whose sources parse in Python from end to end (`Source.python_bound`: JSON-lines
events) in worker processes, where the GIL would hold them to one core.

A worker opens the file itself (read-only, as the reader does), hashes all of it, and writes each
batch it parsed to an Arrow IPC file of its own in a scratch folder; the reader thread that handed the
file over waits for it, then passes the batches on as if it had read them (memory stays bounded: a
worker holds one batch at a time, the reader one file of batches at a time). Only plain files of a
folder collection go to a worker; the pool is only made for collections with `WORTH_BYTES` of JSON
files (starting it costs about half a second), only for scans with more than one thread (a fleet
task has one), never in a daemonic process, which may not start processes. When the pool breaks, the
file is read on the thread as before.

A big file of a line-independent source (`Source.splittable`: each line is one record, read alone)
that comes while no other file is in the pool is read by every worker at once, each a stretch of
whole lines (with several files in hand, one worker a file keeps them as busy without the cuts).
The thread hashes the file and counts its lines up to each cut (memory speed, the GIL released), so
every worker numbers its lines and offsets as one reading of the whole file would, and the parts'
outcomes are joined in file order. A SIEM export is often one file: without this, one core read it
however many the scan had.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, BinaryIO

import pyarrow as pa

from exhunt.collection import open_readonly
from exhunt.sources.base import HEAD_BYTES, ArtifactInfo, HashAfter, Source, again
from exhunt.sources.delimited import CHUNK_BYTES, NUL_ERROR, line_breaks
from exhunt.sources.events import message_note

WORTH_BYTES = 32 << 20  # JSON-named files in a collection from which a pool pays for its start
# a smaller file is read on the thread. Python parses about 70 MB/s of JSON events on a core, so a
# 256 KB file costs about what handing it over does; with 1 MB, the bench's 0.95 MB files held the GIL
# (events bench: 0.96x the wall time with 256 KB)
FILE_BYTES = 256 << 10
SPLIT_BYTES = 32 << 20  # a splittable file this big is read in parts, one per worker
JSON_NAMES = (".json", ".jsonl", ".ndjson")
PRELOAD = ["exhunt.procread", "exhunt.sources.events"]  # imported once by the fork server, not per worker


@dataclass
class Outcome:
    """What a worker learnt of one file: its info, its SHA-256 (None when it could not be read to the
    end), its batches as (table, IPC file), and the error that stopped it (type name, message)."""

    info: ArtifactInfo
    sha256: str | None = None
    batches: list[tuple[str, str]] = field(default_factory=list)
    error: tuple[str, str] | None = None
    from_message: int = 0  # events whose fields the source parsed from the rendered text


def worth_processes(sizes_by_name: Iterable[tuple[str, int]]) -> bool:
    """Whether a scan of files with these (name, size) should read its python-bound files in worker
    processes: enough JSON to pay for them, and a process that may start them (not a daemon, a fork
    server available)."""
    if multiprocessing.current_process().daemon or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    return sum(size for name, size in sizes_by_name if name.lower().endswith(JSON_NAMES)) >= WORTH_BYTES


class ProcessReads:
    """A pool of `workers` processes, started on the first file handed over; `close()` ends it."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.lock = threading.Lock()
        self.pool: ProcessPoolExecutor | None = None
        self.scratch: str | None = None
        self.broken = False
        self.reading = 0  # files in the pool's hands now

    def takes(self, size: int, source: Source) -> bool:
        """Whether a worker should read this file (of a python-bound source, not a small one)."""
        return source.python_bound and size >= FILE_BYTES and not self.broken

    def read(self, source: Source, local_path: str, path: str, size: int = 0) -> Outcome | None:
        """The worker's outcome for one file, or None when the pool could not read it (then read
        it on the thread; nothing of it was passed on)."""
        with self.lock:
            alone = self.reading == 0  # no other file in the pool: its workers would wait
            self.reading += 1
        try:
            pool, scratch = self._pool()
            if alone and source.splittable and self.workers > 1 and size >= SPLIT_BYTES:
                outcome = self._in_stretches(pool, scratch, source, local_path, path)
                if outcome is not None:
                    return outcome
            return pool.submit(read_file, type(source), source.keep, local_path, path, scratch).result()
        except (BrokenProcessPool, OSError, RuntimeError):  # a worker killed, no fork server ...
            self.broken = True
            return None
        finally:
            with self.lock:
                self.reading -= 1

    def _in_stretches(
        self, pool: ProcessPoolExecutor, scratch: str, source: Source, local_path: str, path: str
    ) -> Outcome | None:
        """The file read by every worker, a stretch each; None when it is not cut (one line, or it
        could not be read here: then one worker reads it whole and says why, and the pool stays)."""
        try:
            sha256, stretches = cut_in_stretches(local_path, self.workers)
        except OSError:  # gone or refused: the file's own problem, not the pool's
            return None
        if len(stretches) < 2:
            return None
        parts = [
            pool.submit(read_stretch, type(source), source.keep, local_path, path, scratch, stretch)
            for stretch in stretches
        ]
        return joined([part.result() for part in parts], sha256)

    def batches(self, outcome: Outcome) -> Iterator[tuple[str, pa.Table]]:
        """The outcome's batches in order; each IPC file is removed once read."""
        for table, ipc in outcome.batches:
            try:
                with pa.memory_map(ipc) as source:
                    rows = pa.ipc.open_stream(source).read_all()
            finally:
                os.unlink(ipc)
            yield table, rows

    def close(self) -> None:
        """End the pool without waiting: after a normal read nothing runs, and after an interruption
        (Ctrl-C, an error) a worker still reading a big file is stopped, not waited for."""
        if self.pool is not None:
            workers = list(getattr(self.pool, "_processes", {}).values())  # the executor has no public handle
            self.pool.shutdown(wait=False, cancel_futures=True)
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
            for worker in workers:
                worker.join(timeout=5)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _pool(self) -> tuple[ProcessPoolExecutor, str]:
        with self.lock:
            if self.pool is None:
                self.scratch = tempfile.mkdtemp(prefix="exhunt-parts-")
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(PRELOAD)
                self.pool = ProcessPoolExecutor(self.workers, mp_context=context)
            return self.pool, self.scratch  # type: ignore[return-value]


def read_file(source_type: type[Source], keep: Any, local_path: str, path: str, scratch: str) -> Outcome:
    """In a worker: read one file with `source_type`, as the reader would have. An error stops the
    file, not the worker: the batches before it stand, as they do on a thread."""
    outcome = Outcome(ArtifactInfo(path))
    hasher = hashlib.sha256()
    try:
        with open_readonly(local_path) as stream:
            head = stream.read(HEAD_BYTES)
            hasher.update(head)
            parts = source_type(keep).read(again(head, stream), outcome.info, HashAfter(hasher, len(head)))
            _write_batches(parts, outcome, scratch)
        outcome.sha256 = hasher.hexdigest()
    except Exception as exc:
        outcome.error = (type(exc).__name__, str(exc))
    return outcome


def _write_batches(parts: Iterable[tuple[str, Any]], outcome: Outcome, scratch: str) -> None:
    """Each batch a source yields into an Arrow IPC file of its own, named in the outcome."""
    for table, rows in parts:
        if not isinstance(rows, pa.Table):
            raise TypeError("a source that yields unparsed rows is not for a worker")
        fd, ipc = tempfile.mkstemp(suffix=".arrow", dir=scratch)
        with os.fdopen(fd, "wb") as sink, pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows)
        outcome.batches.append((table, ipc))


@dataclass(frozen=True)
class Stretch:
    """Whole lines of a file: bytes start..end, the first of them line `first_line`."""

    start: int
    end: int
    first_line: int


def cut_in_stretches(local_path: str, parts: int) -> tuple[str, list[Stretch]]:
    """The file's SHA-256, and the file cut at line ends near each `1/parts` of its size."""
    hasher = hashlib.sha256()
    with open_readonly(local_path) as stream:
        size = os.fstat(stream.fileno()).st_size
        targets = [size * k // parts for k in range(1, parts)]
        cuts: list[tuple[int, int]] = []  # (offset just after a line end, lines before it)
        pos = lines = 0
        while block := stream.read(CHUNK_BYTES):
            hasher.update(block)
            while targets and targets[0] < pos + len(block):
                at = block.find(b"\n", max(0, targets[0] - pos))
                if at == -1:  # no line end in the rest of this block: cut in a later one
                    targets[0] = pos + len(block)
                    break
                cuts.append((pos + at + 1, lines + block.count(b"\n", 0, at + 1)))  # once a cut: no copy
                targets = [t for t in targets[1:] if t > pos + at]
            pos, lines = pos + len(block), lines + line_breaks(block)
    bounds = [(0, 0), *[c for c in cuts if c[0] < pos], (pos, lines)]
    return hasher.hexdigest(), [Stretch(a, b, n + 1) for (a, n), (b, _) in pairwise(bounds) if b > a]


class _StretchStream:
    """A stretch of a file, read forward; the line splitter starts its numbers and offsets there."""

    def __init__(self, stream: BinaryIO, stretch: Stretch) -> None:
        stream.seek(stretch.start)
        self.stream, self.left = stream, stretch.end - stretch.start
        self.first_line, self.offset = stretch.first_line, stretch.start

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.stream.read(n) if n > 0 else b""
        self.left -= len(data)
        return data


def read_stretch(
    source_type: type[Source], keep: Any, local_path: str, path: str, scratch: str, stretch: Stretch
) -> Outcome:
    """In a worker: read one stretch of a file (not hashed here: the thread hashed the whole file)."""
    outcome = Outcome(ArtifactInfo(path))
    source = source_type(keep)
    try:
        with open_readonly(local_path) as stream:
            _write_batches(source.read(_StretchStream(stream, stretch), outcome.info, None), outcome, scratch)  # type: ignore[arg-type]
    except Exception as exc:
        outcome.error = (type(exc).__name__, str(exc))
    outcome.from_message = getattr(source, "parsed_from_message", 0)
    return outcome


def joined(parts: list[Outcome], sha256: str) -> Outcome:
    """The stretches' outcomes as one reading of the whole file would have given it: a failed
    stretch ends the file there (as an error stops a thread), and the one per-file note of events
    parsed from their rendered text is written once, for the whole file."""
    first = parts[0].info
    out = Outcome(ArtifactInfo(first.path, first.table, first.log_type, first.version), sha256)
    info = out.info
    for part in parts:
        summary = message_note(part.from_message, part.info.records) if part.from_message else None
        info.notes += [n for n in part.info.notes if n != summary and n not in info.notes]
        info.errors += [e for e in part.info.errors if not (e[1].startswith(NUL_ERROR) and _said(info, NUL_ERROR))]
        info.runs += part.info.runs
        info.records += part.info.records
        out.batches += part.batches
        out.from_message += part.from_message
        if part.from_message:
            info.log_type = part.info.log_type
        if part.error is not None:
            out.error, out.sha256 = part.error, None
            break
    if out.from_message:
        info.notes.append(message_note(out.from_message, info.records))
    return out


def _said(info: ArtifactInfo, prefix: str) -> bool:
    return any(text.startswith(prefix) for _, text in info.errors)
