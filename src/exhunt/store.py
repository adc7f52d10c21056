"""The case database: one DuckDB file per scan.

Tables
- `artifacts`: every file of the collection (id, path, host, Windows path, kind, size, mtime, SHA-256,
  record count, log type, build in `#Version`).
- `log_<family>`: one table per log family (`log_iis`, `log_httpproxy`, `log_ecp_server`, ...), every
  column of the source as text, plus `_artifact`, `_line` and a parsed UTC `_ts`. Columns are the
  union over all files: a file from an older build simply leaves newer columns null.
- `events`: Windows events from EVTX and JSON lines (see `sources.events`), plus `_artifact`.
- `directives`: every `#Version`/`#Log-type`/`#Fields`... line with its artifact and line.
- `findings`, `evidence`, `errors`, `coverage`, `meta`: written by the scan.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

# Timestamp columns, tried in order, per log family (first present one wins).
TS_CANDIDATES = ("DateTime", "TimeStamp", "Timestamp", "date-time", "Date-Time", "StartTime")
# Row group size of the case file: half DuckDB's default. Inserts are cut to whole row groups, so this
# bounds the rows waiting per table (measured on 1 GB: peak memory 1.20 -> 1.07 GB, 10.8 -> 10.0 s).
ROW_GROUP_ROWS = 61_440

SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
  id INTEGER PRIMARY KEY, path VARCHAR, host VARCHAR, win_path VARCHAR, name VARCHAR, ext VARCHAR,
  kind VARCHAR, log_table VARCHAR, log_type VARCHAR, version VARCHAR, size_bytes BIGINT,
  mtime TIMESTAMP, sha256 VARCHAR, magic VARCHAR, records BIGINT, note VARCHAR, yara VARCHAR[]);
CREATE TABLE IF NOT EXISTS directives (artifact INTEGER, line BIGINT, key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS errors (path VARCHAR, line BIGINT, reason VARCHAR);
CREATE TABLE IF NOT EXISTS events (
  _artifact INTEGER, _line BIGINT, record_id BIGINT, ts TIMESTAMP, channel VARCHAR, provider VARCHAR,
  event_id INTEGER, level INTEGER, computer VARCHAR, data JSON, message VARCHAR);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
"""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _time_columns(columns: list[str]) -> tuple[str, ...]:
    """The log's own time columns: `date` and `time` (W3C), else the first of TS_CANDIDATES, else none."""
    if "date" in columns and "time" in columns:
        return ("date", "time")
    return tuple(c for c in TS_CANDIDATES if c in columns)[:1]


def _ts_sql(columns: list[str]) -> str:
    """SQL for a row's UTC time from the log's own time columns."""
    match _time_columns(columns):
        case ("date", "time"):
            return 'TRY_CAST("date" || \' \' || "time" AS TIMESTAMP)'
        case (column,):
            return f"TRY_CAST(rtrim({_q(column)}, 'Z') AS TIMESTAMP)"
    return "NULL::TIMESTAMP"


def log_time(rows: pa.Table) -> pa.Array | pa.ChunkedArray | None:
    """The rows' time as pyarrow reads it: the values `_ts_sql` gives, or None when pyarrow cannot read
    every one of them (then DuckDB's TRY_CAST runs in the insert). Readers call this, which takes the
    parsing off the single writer the scan waits on (1 GB `--case`: about 0.4 s)."""
    try:
        match _time_columns(rows.column_names):
            case ("date", "time"):
                text = pc.binary_join_element_wise(rows["date"], rows["time"], " ")
                ts = pc.strptime(text, format="%Y-%m-%d %H:%M:%S", unit="us", error_is_null=True)
            case (column,):  # ISO 8601 with a Z, as Exchange writes it; anything else goes to SQL
                text = rows[column]
                ts = pc.cast(text, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
            case _:
                return None
    except pa.ArrowException:
        return None
    return ts if ts.null_count == text.null_count else None


class Store:
    """Writes parsed records into DuckDB in whole row groups and answers SQL.

    Inserts run on the calling thread with one DuckDB thread while readers parse on the other cores:
    a second DuckDB thread per insert only competed with them (1 GB `--case`: 13.8-14.1 s vs 10 s),
    and two writer threads for different tables took the same time with 200 MB more memory. Once
    reading is done, `ready_for_queries` gives the queries every core.
    """

    def __init__(self, path: Path, *, memory_limit: str = "512MB", threads: int = 1) -> None:
        self.path = path
        self.con = duckdb.connect()
        quoted = str(path).replace("'", "''")
        self.con.execute(f"ATTACH '{quoted}' AS case_db (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        self.con.execute("USE case_db")
        self.con.execute(f"SET memory_limit='{memory_limit}'; SET threads={int(threads)};")
        self.con.execute("SET preserve_insertion_order=false")
        self.con.execute(SCHEMA)
        self._columns: dict[str, set[str]] = {}
        self._pending: dict[str, list[pa.Table]] = {}
        self._pending_rows: dict[str, int] = {}
        self.failed: list[tuple[set[int], str]] = []  # (artifact ids, why) of batches that could not be stored

    # -- writing -----------------------------------------------------------------------------
    def append(self, table: str, rows: pa.Table) -> None:
        """Queue rows (carrying their int32 `_artifact`) for `table`; written in whole row groups."""
        self._pending.setdefault(table, []).append(rows)
        self._pending_rows[table] = self._pending_rows.get(table, 0) + rows.num_rows
        if self._pending_rows[table] >= ROW_GROUP_ROWS:
            self._flush(table, keep=self._pending_rows[table] % ROW_GROUP_ROWS)

    def flush(self) -> None:
        for table in list(self._pending):
            self._flush(table)

    def _flush(self, table: str, keep: int = 0) -> None:
        """Insert the pending rows of `table` but the last `keep`.

        DuckDB writes an insert of at least one row group (ROW_GROUP_ROWS) straight to the file; a
        smaller one goes through the write-ahead log and is compressed again at checkpoint (measured:
        15.4 s vs 6.5 s for 1.2 GB). So while reading, whole row groups are inserted. (Keeping one
        more back, so that the last insert is large too, moved work to the end and took 200 MB more
        memory for the same time.)
        """
        parts = self._pending.pop(table, [])
        n = self._pending_rows.pop(table, 0)
        if keep:
            batch = pa.concat_tables(parts, promote_options="permissive")
            parts = [batch.slice(0, n - keep)]
            self._pending[table], self._pending_rows[table] = [batch.slice(n - keep)], keep
        if not parts:
            return
        try:
            self._insert(table, parts)
        except (duckdb.Error, pa.ArrowException) as exc:  # one bad batch never stops the scan
            ids = {int(i) for p in parts for i in p.column("_artifact").unique().to_pylist()}
            self.failed.append((ids, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))

    def _insert(self, table: str, parts: list[pa.Table]) -> None:
        batch = pa.concat_tables(parts, promote_options="permissive")
        if batch.num_rows < 4096 * batch.column(0).num_chunks:
            # DuckDB pays per Arrow chunk and column: hundreds of small per-file chunks made wide
            # HttpProxy inserts 10x slower (measured: 12k vs 122k rows/s); large chunks are kept as
            # they are, which spares a copy (peak memory 1.39 GB -> 1.21 GB for 1 GB scanned)
            batch = batch.combine_chunks()
        if table == "events":
            select = "SELECT * FROM _batch"
        else:
            self._ensure_columns(table, batch.schema)
            ts = _ts_sql(batch.column_names)
            if "_ts" in batch.column_names:  # read by the readers; batches they left to SQL have NULLs
                select = f"SELECT * REPLACE (coalesce(_ts, {ts}) AS _ts) FROM _batch"
            else:
                select = f"SELECT *, {ts} AS _ts FROM _batch"
        self.con.register("_batch", batch)
        try:
            self.con.execute(f"INSERT INTO {_q(table)} BY NAME {select}")
        finally:
            self.con.unregister("_batch")

    def _ensure_columns(self, table: str, schema: pa.Schema) -> None:
        have = self._columns.get(table)
        if have is None:
            cols = ", ".join(
                f"{_q(f.name)} {'INTEGER' if f.name == '_artifact' else 'BIGINT' if f.name == '_line' else 'VARCHAR'}"
                for f in schema
                if f.name != "_ts"
            )
            self.con.execute(f"CREATE TABLE {_q(table)} ({cols}, _ts TIMESTAMP)")
            self._columns[table] = {f.name.lower() for f in schema} | {"_ts"}
            return
        for f in schema:
            if f.name.lower() not in have:
                self.con.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(f.name)} VARCHAR")
                have.add(f.name.lower())

    def add_artifacts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            # from_pylist takes its columns from the first row only: give every row every key
            keys = list(dict.fromkeys(k for r in rows for k in r))
            self.con.register("_a", pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]))
            self.con.execute("INSERT INTO artifacts BY NAME SELECT * FROM _a")
            self.con.unregister("_a")

    def add_directives(self, rows: list[tuple[int, int, str, str]]) -> None:
        self._insert_rows("directives", ["artifact", "line", "key", "value"], rows)

    def add_errors(self, rows: list[tuple[str, int | None, str]]) -> None:
        self._insert_rows("errors", ["path", "line", "reason"], rows)

    def _insert_rows(self, table: str, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        """One columnar insert (executemany goes row by row: 35% of a scan of 3,000 small files)."""
        if rows:
            batch = pa.Table.from_arrays([pa.array(list(col)) for col in zip(*rows, strict=True)], names=names)
            self.con.register("_rows", batch)
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
            self.con.unregister("_rows")

    def set_meta(self, key: str, value: Any) -> None:
        self.con.execute("INSERT INTO meta VALUES (?, ?)", [key, json.dumps(value, default=str)])

    # -- reading -----------------------------------------------------------------------------
    def ready_for_queries(self) -> None:
        """Reading is done: the last inserts and the queries use every core (while the readers run,
        inserts stay on one thread beside them)."""
        self.con.execute(f"SET threads={os.cpu_count() or 1}")
        self.flush()

    def cursor_view(self) -> Store:
        """A Store on its own cursor of the same database, for queries from another thread. It has
        no writer state: only the reading methods (`tables`, `columns`, `query`, `con`) are for it."""
        view = object.__new__(Store)
        view.path, view.con = self.path, self.con.cursor()
        view.con.execute("USE case_db")
        return view

    def tables(self) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.con.execute(f"DESCRIBE {_q(table)}").fetchall()]

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        self.flush()
        self.con.close()
