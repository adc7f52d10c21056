"""The records of a scan that keeps no case file, as Parquet files (the case reads them through views).

DuckDB stored wide all-text tables at 122 MB/s of Arrow on one core; Parquet with LZ4 takes the same
batches at 460 MB/s. Writing is still a third of reading, so each reader thread writes the batches it
parsed itself, into files of its own (a `Lane`): no single writer thread bounds the scan, and the
readers never wait for one. Within a lane, each table's batches with one column list go to one file,
a row group per write, so a view reads a few files per reader. Each row gets a `_rid`, unique in its
table, which the view names `rowid`, as a table's own. A file that cannot be finished or read costs
its own artifacts only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

Prepare = Callable[[str, pa.Table], pa.Table]  # a batch as it is stored (its `_ts` filled in)
Failed = list[tuple[set[int], str]]  # (artifact ids, why) of the batches that could not be stored


class RowGroups:
    """Rows waiting per table until a whole row group (`size` rows) can be written."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.parts: dict[str, list[pa.Table]] = {}
        self.rows: dict[str, int] = {}

    def add(self, table: str, rows: pa.Table) -> list[pa.Table]:
        """Queue `rows`; the parts to write now (whole row groups), or none."""
        self.parts.setdefault(table, []).append(rows)
        n = self.rows[table] = self.rows.get(table, 0) + rows.num_rows
        if n < self.size:
            return []
        return self.take(table, keep=n % self.size)

    def take(self, table: str, keep: int = 0) -> list[pa.Table]:
        """The waiting parts of `table` but the last `keep` rows, which stay queued."""
        parts = self.parts.pop(table, [])
        n = self.rows.pop(table, 0)
        if keep:
            batch = pa.concat_tables(parts, promote_options="permissive")
            parts = [batch.slice(0, n - keep)]
            self.parts[table], self.rows[table] = [batch.slice(n - keep)], keep
        return parts


class Spool:
    """The spooled record tables of one scan, in `folder`; `lane()` is the calling thread's writer."""

    def __init__(
        self, folder: Path, row_group_rows: int, first_file: int = 0, first_rid: dict[str, int] | None = None
    ) -> None:
        """`first_file`, `first_rid`: where an earlier scan's files and row ids in `folder` end."""
        self.folder = folder
        self.row_group_rows = row_group_rows
        self.first_file = first_file
        self.lock = threading.Lock()
        self.lanes: list[Lane] = []
        self._local = threading.local()
        self.files: dict[str, list[Path]] = {}
        self.artifacts: dict[Path, set[int]] = {}  # the artifacts whose rows each file holds
        self.rows: dict[str, int] = dict(first_rid or {})  # the next row id of each table

    def lane(self) -> Lane:
        lane = getattr(self._local, "lane", None)
        if lane is None:
            lane = self._local.lane = Lane(self)
            with self.lock:
                self.lanes.append(lane)
        return lane

    def reserve(self, table: str, n: int) -> int:
        """The first of `n` row ids of `table` kept for the caller."""
        with self.lock:
            first = self.rows.get(table, 0)
            self.rows[table] = first + n
            return first

    def new_file(self, table: str) -> Path:
        with self.lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.first_file + len(self.artifacts)}.parquet"  # never the log's table name
            self.files.setdefault(table, []).append(path)
            self.artifacts[path] = set()
            return path

    def finish(self, prepare: Prepare, threads: int = 1) -> tuple[dict[str, list[Path]], Failed]:
        """Once the readers are done: write what waits in every lane and close the files, the lanes on
        up to `threads` threads (writing Parquet frees the GIL). Each table's finished files, and
        (artifact ids, why) of every batch or file that could not be written."""
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(self.lanes)))) as pool:
            ended = list(pool.map(lambda lane: lane.finish(prepare), self.lanes))
        failed = [f for lane_failed, _ in ended for f in lane_failed]
        bad = {p for _, lane_bad in ended for p in lane_bad}
        return {t: [p for p in files if p not in bad] for t, files in self.files.items()}, failed


class Lane:
    """One thread's share of the spool: its waiting rows and its open files."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.waiting = RowGroups(spool.row_group_rows)
        self.writers: dict[tuple[str, pa.Schema], tuple[pq.ParquetWriter, Path]] = {}
        self.failed: Failed = []

    def append(self, table: str, rows: pa.Table, prepare: Prepare) -> None:
        """Queue rows for `table`; whole row groups are prepared and written at once."""
        self._store(table, self.waiting.add(table, rows), prepare)

    def flush(self, prepare: Prepare) -> None:
        for table in list(self.waiting.parts):
            self._store(table, self.waiting.take(table), prepare)

    def _store(self, table: str, parts: list[pa.Table], prepare: Prepare) -> None:
        store_parts(parts, lambda some: self._write(table, prepare(table, combined(some))), self.failed)

    def _write(self, table: str, batch: pa.Table) -> None:
        first = self.spool.reserve(table, batch.num_rows)
        batch = batch.append_column("_rid", pa.array(np.arange(first, first + batch.num_rows, dtype=np.int64)))
        if (table, batch.schema) not in self.writers:
            # min/max only of exhunt's own columns (row ids, artifact, line, time), which queries narrow
            # by; a log text column's range prunes nothing, and computing it cost ~20% of the write
            stats = [n for n in batch.schema.names if n.startswith("_")]
            dictionary = [n for n in batch.schema.names if repeats(batch.column(n))]
            # exhunt's own distinct numbers (row ids, lines, times) as deltas: IIS files 17% smaller, written
            # 4% and read 12% faster than plain
            deltas = {f.name: "DELTA_BINARY_PACKED" for f in batch.schema if _delta_column(f, dictionary)}
            path = self.spool.new_file(table)  # named once the file's settings are worked out
            writer = pq.ParquetWriter(
                path, batch.schema, compression="lz4", write_statistics=stats, use_dictionary=dictionary,
                column_encoding=deltas or None,
            )  # fmt: skip
            self.writers[(table, batch.schema)] = writer, path
        writer, path = self.writers[(table, batch.schema)]
        writer.write_table(batch, row_group_size=self.spool.row_group_rows)
        self.spool.artifacts[path].update(pc.unique(batch.column("_artifact")).to_pylist())

    def finish(self, prepare: Prepare) -> tuple[Failed, set[Path]]:
        """Write what waits and close the lane's files: the lane's failures, and its unfinished files."""
        self.flush(prepare)
        failed, self.failed = self.failed, []
        bad: set[Path] = set()
        for writer, path in self.writers.values():
            try:
                writer.close()
            except (OSError, pa.ArrowException) as exc:  # a full disk, say
                bad.add(path)
                failed.append((self.spool.artifacts[path], why(exc)))
        self.writers.clear()
        return failed, bad


REPEAT_SAMPLE = 2048  # the first values a column's encoding (and its tests' spelling) is chosen by


def repeats(values: pa.ChunkedArray | pa.Array) -> bool:
    """Do a column's first values repeat (fewer distinct than half)? Only such columns are written
    with a dictionary: one of mostly distinct values (query strings, times, row ids) is given up by
    the writer once its dictionary page is full, after hashing every value (14% of writing IIS rows;
    their files came out 5% smaller without it). DuckDB reads dictionary pages as dictionary vectors,
    on which ILIKE and lower() run once per distinct value, so a repeating column keeps one. A column
    of a type that cannot be counted (all-null, nested) does not repeat: its rows are stored anyway."""
    head = values.slice(0, REPEAT_SAMPLE)
    try:
        distinct = pc.count_distinct(head).as_py()
    except pa.ArrowNotImplementedError:
        return False
    return distinct * 2 < len(head) - head.null_count


def _delta_column(field: pa.Field, dictionary: list[str]) -> bool:
    t = field.type
    return (
        field.name.startswith("_")
        and field.name not in dictionary
        and (pa.types.is_int64(t) or pa.types.is_timestamp(t))
    )


def store_parts(parts: list[pa.Table], store: Callable[[list[pa.Table]], None], failed: Failed) -> None:
    """`store(parts)` at once; when that fails, each part alone, so that a batch the store refuses (a
    full disk, a value DuckDB rejects) costs only the files it came from, named in `failed`. Any error
    counts: the parts were taken from the waiting rows, and an error let through would lose the rows
    of other files without a word."""
    if not parts:
        return
    try:
        store(parts)
    except Exception as exc:
        if len(parts) == 1:
            failed.append((artifacts_of(parts[0]), why(exc)))
            return
        for part in parts:  # find the batches at fault: the others are stored
            try:
                store([part])
            except Exception as one:
                failed.append((artifacts_of(part), why(one)))


def combined(parts: list[pa.Table]) -> pa.Table:
    """The parts as one table. DuckDB and Parquet pay per Arrow chunk and column: hundreds of small
    per-file chunks made wide HttpProxy inserts 10x slower (measured: 12k vs 122k rows/s); large chunks
    are kept as they are, which spares a copy (peak memory 1.39 GB -> 1.21 GB for 1 GB scanned)."""
    batch = pa.concat_tables(parts, promote_options="permissive")
    return batch.combine_chunks() if batch.num_rows < 4096 * batch.column(0).num_chunks else batch


def artifacts_of(part: pa.Table) -> set[int]:
    return {int(i) for i in part.column("_artifact").unique().to_pylist()}


def why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
