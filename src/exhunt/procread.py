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
from typing import Any

import pyarrow as pa

from exhunt.collection import open_readonly
from exhunt.sources.base import HEAD_BYTES, ArtifactInfo, HashAfter, Replay, Source

WORTH_BYTES = 32 << 20  # JSON-named files in a collection from which a pool pays for its start
FILE_BYTES = 1 << 20  # a smaller file is read on the thread (handing it over costs a few ms)
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

    def takes(self, size: int, source: Source) -> bool:
        """Whether a worker should read this file (of a python-bound source, not a small one)."""
        return source.python_bound and size >= FILE_BYTES and not self.broken

    def read(self, source: Source, local_path: str, path: str) -> Outcome | None:
        """The worker's outcome for one file, or None when the pool could not read it (then read
        it on the thread; nothing of it was passed on)."""
        try:
            pool, scratch = self._pool()
            return pool.submit(read_file, type(source), source.keep, local_path, path, scratch).result()
        except (BrokenProcessPool, OSError, RuntimeError):  # a worker killed, no fork server ...
            self.broken = True
            return None

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
            parts = source_type(keep).read(Replay(head, stream), outcome.info, HashAfter(hasher, len(head)))
            for table, rows in parts:
                if not isinstance(rows, pa.Table):
                    raise TypeError(f"{source_type.__name__} yields unparsed rows: not for a worker")
                fd, ipc = tempfile.mkstemp(suffix=".arrow", dir=scratch)
                with os.fdopen(fd, "wb") as sink, pa.ipc.new_stream(sink, rows.schema) as writer:
                    writer.write_table(rows)
                outcome.batches.append((table, ipc))
        outcome.sha256 = hasher.hexdigest()
    except Exception as exc:
        outcome.error = (type(exc).__name__, str(exc))
    return outcome
