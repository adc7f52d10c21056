"""The case database: one DuckDB file per scan, written by `CaseWriter`, read by `CaseReader`.

Tables
- `artifacts`: every file of the collection (id, path, host, Windows path, kind, size, mtime, SHA-256,
  record count, log type, build in `#Version`).
- `log_<family>`: one table per log family (see `exhunt.families`), every column of the source as
  text, plus `_artifact`, `_line` and a parsed UTC `_ts`. Columns are the union over all files: a file
  from an older build simply leaves newer columns null.
- `events`: Windows events from EVTX and JSON lines (see `sources.events`), plus `_artifact`.
- `fs_records`: for a disk image, the NTFS records of the web and staging folders' files and of the
  deleted files whose MFT records remain there (`$SI`/`$FN` times, MFT entry, tells; see
  `exhunt.images.fsrecords`), typed, with their host (and `_artifact` where the file was read).
- `directives`: every `#Version`/`#Log-type`/`#Fields`... line with its artifact and line.
- `line_index`: the byte offset of the first line of every run of data lines, so a record's raw line
  is found with one seek and a short read.
- `mailbox_access`, `timeline`, `leads`: the analytics' results (`exhunt.analytics`).
- `findings`, `evidence`, `errors`, `coverage`, `meta`: the scan's results (`meta` holds the whole
  result document under `result` and exhunt's marker `schema_id` = `exhunt.case`).

No other module runs SQL on the connection: the rule engine hands its compiled queries to
`CaseReader.fetch`, the analytics build their steps through `CaseReader.define`/`registered`/
`keep_table`, and every other question is a named query here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from exhunt import case_records
from exhunt.errors import InputError
from exhunt.families import Family, family, family_of_table, record_families
from exhunt.spool import REPEAT_SAMPLE, Failed, RowGroups, Spool, combined, store_parts, why
from exhunt.sql import literal, quote

SCHEMA_ID = "exhunt.case"
ANALYSIS_TABLES = ("mailbox_access", "timeline", "leads")  # kept by `exhunt.analytics`
# Row group size of the case file: half DuckDB's default. Inserts are cut to whole row groups, so this
# bounds the rows waiting per table (measured on 1 GB: peak memory 1.20 -> 1.07 GB, 10.8 -> 10.0 s).
ROW_GROUP_ROWS = 61_440
WRITE_MEMORY = "128MB"  # DuckDB's memory while the readers run

SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
  id INTEGER PRIMARY KEY, path VARCHAR, host VARCHAR, win_path VARCHAR, name VARCHAR, ext VARCHAR,
  kind VARCHAR, log_table VARCHAR, log_type VARCHAR, version VARCHAR, size_bytes BIGINT,
  mtime TIMESTAMP, sha256 VARCHAR, magic VARCHAR, records BIGINT, note VARCHAR, yara VARCHAR[]);
CREATE TABLE IF NOT EXISTS directives (artifact INTEGER, line BIGINT, key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS line_index (artifact INTEGER, line BIGINT, "offset" BIGINT);
CREATE TABLE IF NOT EXISTS errors (path VARCHAR, line BIGINT, reason VARCHAR, stage VARCHAR);
CREATE TABLE IF NOT EXISTS events (
  _artifact INTEGER, _line BIGINT, record_id BIGINT, ts TIMESTAMP, channel VARCHAR, provider VARCHAR,
  event_id INTEGER, level INTEGER, computer VARCHAR, data JSON, message VARCHAR);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
"""

FINDINGS = pa.schema([
    ("id", pa.int32()), ("rule", pa.string()), ("title", pa.string()), ("severity", pa.string()),
    ("kind", pa.string()), ("cves", pa.list_(pa.string())), ("attack", pa.list_(pa.string())),
    ("host", pa.string()), ("grp", pa.string()), ("count", pa.int64()), ("first_seen", pa.timestamp("us")),
    ("last_seen", pa.timestamp("us")), ("note", pa.string()),
])  # fmt: skip
EVIDENCE = pa.schema([
    ("finding", pa.int32()), ("path", pa.string()), ("line", pa.int64()), ("record_id", pa.int64()),
    ("time", pa.timestamp("us")), ("record", pa.string()), ("raw", pa.string()),
])  # fmt: skip


def _ts_sql(family: Family, columns: list[str]) -> str:
    """SQL for a row's UTC time from the log's own time columns."""
    match time_columns(family, columns):
        case ("date", "time"):
            return 'TRY_CAST("date" || \' \' || "time" AS TIMESTAMP)'
        case (column,):
            return f"TRY_CAST(rtrim({quote(column)}, 'Z') AS TIMESTAMP)"
    return "NULL::TIMESTAMP"


def time_columns(family: Family, columns: list[str]) -> tuple[str, ...]:
    """The log's own time columns: `date` and `time` (W3C), else the first of the family's candidates."""
    if family.time_columns == ("date", "time"):
        return ("date", "time") if "date" in columns and "time" in columns else ()
    return tuple(c for c in family.time_columns if c in columns)[:1]


def log_time(rows: pa.Table, family: Family) -> pa.Array | pa.ChunkedArray | None:
    """The rows' time as pyarrow reads it: the values `_ts_sql` gives, or None when pyarrow cannot read
    every one of them (then DuckDB's TRY_CAST runs in the insert). Readers call this, which takes the
    parsing off the single writer the scan waits on (1 GB `--case`: about 0.4 s)."""
    try:
        match time_columns(family, rows.column_names):
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


_TEMP_NAMES = itertools.count(1)


DISTINCT_VALUES = 4096  # a column with more distinct values is searched row by row
MATCHED_VALUES = 64  # an IN list longer than this costs more than the regex on every row
DISTINCT_BYTES = 8 << 20  # nor are more than this many bytes of values kept


class CaseReader:
    """Named queries over a case database (one cursor; `cursor()` gives another for another thread)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, catalog: str | None = None, frozen: bool = False) -> None:
        self._con = con
        # frozen: a reader for a phase that adds no record table (detect) asks the catalog once, not
        # once per rule (~1 ms a time, the fixed cost of a small server's scan)
        self._frozen = frozen
        self._tables: frozenset[str] | None = None
        self._columns: dict[str, tuple[str, ...]] = {}
        self._repeats: dict[tuple[str, str], bool] = {}
        self._distinct: dict[tuple[str, str], list[str] | None] = {}
        if catalog is None:  # asked once, here: the connection may be busy on another thread later
            ((catalog,),) = con.execute("SELECT current_database()").fetchall()
        self._catalog = catalog

    def temp_name(self, prefix: str) -> str:
        """A name for a temporary table that no other query of this process uses."""
        return f"_exhunt_{prefix}_{next(_TEMP_NAMES)}"

    @classmethod
    def open_saved(cls, path: Path, threads: int | None = None) -> CaseReader:
        """A saved case file, read-only and without access to any other file (its text is evidence,
        and a file that only claims to be a case may be anyone's); only the records folder beside it
        stays readable. Its record views are this connection's own: a `cursor()` would not see them.
        Raises duckdb.Error."""
        return cls(case_records.connect_saved(path, {} if threads is None else {"threads": threads}))

    def cursor(self, frozen: bool = False) -> CaseReader:
        """Another connection to the same case, for another thread; `frozen`: its tables and their
        columns are read once (for a phase that creates none but temporary ones)."""
        cur = self._con.cursor()
        cur.execute(f"USE {quote(self._catalog)}")
        return CaseReader(cur, self._catalog, frozen)

    def close(self) -> None:
        self._con.close()

    # -- schema ------------------------------------------------------------------------------
    def tables(self) -> set[str]:
        """The case's tables, and the spooled record tables (views over their Parquet files)."""
        found = self._tables
        if found is None:
            found = frozenset(r[0] for r in self._con.execute(_TABLES_AND_SPOOLED).fetchall())
            if self._frozen:
                self._tables = found
        return set(found)

    def columns(self, table: str) -> list[str]:
        cols = self._columns.get(table)
        if cols is None:
            described = self._con.execute(f"DESCRIBE {quote(table)}").fetchall()
            cols = tuple(r[0] for r in described if r[0] != ROWID)
            if self._frozen:
                self._columns[table] = cols
        return list(cols)

    def repeats(self, table: str, column: str) -> bool:
        """Do a column's values repeat (fewer distinct than half of its first REPEAT_SAMPLE values, as
        `spool.repeats` chose the spool's dictionaries; counted by DuckDB, which counts any type)? DuckDB
        then runs some functions (ILIKE, lower) once per distinct value of a block, RE2 still once
        per row. Decides only how a test is spelt, never what it matches (~4 ms a column, once)."""
        key = (table, column)
        if key not in self._repeats:
            try:
                ((distinct, values),) = self._con.execute(
                    f"SELECT count(DISTINCT c), count(c) FROM (SELECT {quote(column)} AS c FROM {quote(table)} LIMIT {REPEAT_SAMPLE})"
                ).fetchall()
            except duckdb.Error:  # the rule's own query then says what is wrong
                distinct = values = 0
            self._repeats[key] = distinct * 2 < values
        return self._repeats[key]

    def matching_values(self, table: str, column: str, pattern: str, flags: str) -> list[str] | None:
        """The distinct values (as text) of a column that RE2 `pattern` matches, for a frozen reader
        (its tables do not change, so the values read once stay true) and a column of at most
        DISTINCT_VALUES distinct values, of which at most MATCHED_VALUES match; None otherwise."""
        if not self._frozen:
            return None
        key = (table, column)
        try:  # a column it cannot read is searched row by row, where the rule's own query says why
            if key not in self._distinct:
                self._distinct[key] = self._few_distinct(table, column)
            values = self._distinct[key]
            if values is None:
                return None
            ((matched,),) = self._con.execute(
                "SELECT coalesce(list(v ORDER BY v), []) FROM unnest(?::VARCHAR[]) u(v) WHERE regexp_matches(v, ?, ?)",
                [values, pattern, flags],
            ).fetchall()
        except duckdb.Error:
            return None
        return list(matched) if len(matched) <= MATCHED_VALUES else None

    def _few_distinct(self, table: str, column: str) -> list[str] | None:
        """A column's distinct values as text, if at most DISTINCT_VALUES of them and DISTINCT_BYTES."""
        text = f"CAST({quote(column)} AS VARCHAR)"
        ((estimate, longest),) = self._con.execute(
            f"SELECT approx_count_distinct({text}), max(strlen({text})) FROM {quote(table)}"
        ).fetchall()
        # the estimate first: a column that repeats early may not later, and its DISTINCT is costly
        if estimate > DISTINCT_VALUES or estimate * (longest or 0) > DISTINCT_BYTES:  # long hostile values too
            return None
        rows = self._con.execute(
            f"SELECT DISTINCT {text} AS v FROM {quote(table)} WHERE v IS NOT NULL LIMIT {DISTINCT_VALUES + 1}"
        ).fetchall()
        return [r[0] for r in rows] if rows and len(rows) <= DISTINCT_VALUES else None

    def fields_sql(self, table: str, alias: str = "t", provenance: bool = False) -> str:
        """SQL for a record's columns as `alias.*` would list them, without a spooled view's row id, and
        without the provenance columns (`_artifact`, `_line`, `_ts`) unless asked."""
        cols = [f"{alias}.{quote(c)}" for c in self.columns(table) if provenance or not c.startswith("_")]
        return ", ".join(cols) or "NULL AS nothing"

    def record_families(self) -> list[Family]:
        """The log and event families that have a table in this case."""
        return record_families(self.tables())

    # -- the rule engine's compiled SQL ------------------------------------------------------
    def fetch(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one compiled, parameterised query (rules and rule logic)."""
        return self._con.execute(sql, list(params)).fetchall()

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self._con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- coverage ----------------------------------------------------------------------------
    def span(self, family: Family, plausible: tuple[Any, Any], slack_days: int = 2) -> tuple[Any, ...]:
        """(files, records, earliest, latest, first, last, outliers) of a family's records.

        [first, last] holds the bulk: the records dated within `plausible` and no more than
        `slack_days` outside the 0.1 %-99.9 % quantiles of those, so a few lines with
        attacker-written dates cannot stretch it; `outliers` counts the records outside it.
        """
        t = family.time_sql.removeprefix("t.")
        row = self._con.execute(
            f"""
            WITH r AS (SELECT {quote(family.artifact_column)} AS art, {t} AS ts FROM {quote(family.table)}),
            q AS (
                SELECT quantile_disc(ts, 0.001) - INTERVAL ({int(slack_days)}) DAY AS lo,
                       quantile_disc(ts, 0.999) + INTERVAL ({int(slack_days)}) DAY AS hi
                FROM r WHERE ts BETWEEN ? AND ?
            )
            SELECT count(DISTINCT art), count(*), min(ts), max(ts),
                   min(ts) FILTER (WHERE ts BETWEEN lo AND hi), max(ts) FILTER (WHERE ts BETWEEN lo AND hi),
                   count(*) FILTER (WHERE ts < lo OR ts > hi OR (ts IS NOT NULL AND lo IS NULL))
            FROM r, q
            """,
            list(plausible),
        ).fetchall()  # all, not one: DuckDB refuses the next statement while a result is unfinished
        return row[0]  # type: ignore[return-value]

    # -- evidence ----------------------------------------------------------------------------
    def records(self, family: Family, rowids: list[int]) -> list[dict[str, Any]]:
        """The stored records with these row ids, each with `_rowid` and its artifact's `_path`."""
        every = self.fields_sql(family.table, provenance=True)
        if family.kind == "files":
            head, join = f"t.rowid AS _rowid, t.path AS _path, {every}", ""
        else:
            head = f"t.rowid AS _rowid, a.path AS _path, {every}"
            join = f" JOIN artifacts a ON a.id = t.{quote(family.artifact_column)}"
        out: list[dict[str, Any]] = []
        for start in range(0, len(rowids), 5000):
            cur = self._con.execute(
                f"SELECT {head} FROM {quote(family.table)} t{join} WHERE t.rowid IN (SELECT unnest(?::BIGINT[]))",
                [rowids[start : start + 5000]],
            )
            names = [d[0] for d in cur.description]
            out.extend(dict(zip(names, row, strict=True)) for row in cur.fetchall())
        return out

    def fields_directives(self, artifacts: list[int]) -> list[tuple[int, int, str]]:
        """(artifact, line, value) of every `#Fields` line of these artifacts, in order."""
        return self._con.execute(
            "SELECT artifact, line, value FROM directives WHERE key = 'Fields' "
            "AND artifact IN (SELECT unnest(?::INTEGER[])) ORDER BY artifact, line",
            [artifacts],
        ).fetchall()

    def line_index(self, paths: list[str]) -> dict[str, tuple[list[int], list[int]]]:
        """{path: (first lines, byte offsets)} of the runs of data lines of these files, in order."""
        rows = self._con.execute(
            'SELECT a.path, i.line, i."offset" FROM line_index i JOIN artifacts a ON a.id = i.artifact '
            "WHERE a.path IN (SELECT unnest(?::VARCHAR[])) ORDER BY a.path, i.line",
            [paths],
        ).fetchall()
        out: dict[str, tuple[list[int], list[int]]] = {}
        for path, line, offset in rows:
            lines, offsets = out.setdefault(path, ([], []))
            lines.append(line)
            offsets.append(offset)
        return out

    # -- exposure ----------------------------------------------------------------------------
    def build_days(self) -> list[tuple[str, Any, Any, str]]:
        """(build, first, last, witness) per build and day: the `#Version` of Exchange logs, per-row
        build columns, and the versioned `owa/auth/<build>/` folders (their files' times)."""
        tables = self.tables()
        out: list[tuple[str, Any, Any, str]] = []
        parts = [
            f"SELECT a.version AS build, date_trunc('day', t._ts) AS day, min(t._ts) AS lo, max(t._ts) AS hi "
            f"FROM {quote(f.table)} t JOIN artifacts a ON a.id = t._artifact "
            f"WHERE a.version IS NOT NULL AND t._ts IS NOT NULL GROUP BY 1, 2"
            for f in self.record_families()
            if f.version_directive
        ]
        if parts:
            rows = self._con.execute(" UNION ALL ".join(parts)).fetchall()
            out += [(b, lo, hi, "#Version of Exchange logs") for b, _, lo, hi in rows]
        for fam in self.record_families():
            if not fam.build_columns or fam.table not in tables:
                continue
            if not {c.lower() for c in fam.build_columns} <= {c.lower() for c in self.columns(fam.table)}:
                continue
            build = "concat_ws('.', " + ", ".join(quote(c) for c in fam.build_columns) + ")"
            rows = self._con.execute(
                f"SELECT {build}, date_trunc('day', _ts), min(_ts), max(_ts) FROM {quote(fam.table)} "
                f"WHERE {quote(fam.build_columns[2])} IS NOT NULL AND _ts IS NOT NULL GROUP BY 1, 2"
            ).fetchall()
            out += [(b, lo, hi, f"{fam.title} version columns") for b, _, lo, hi in rows]
        rows = self._con.execute(
            r"SELECT regexp_extract(win_path, '\\owa\\auth\\(1[45]\.\d+\.\d+\.\d+)\\', 1) AS build, min(mtime) "
            r"FROM artifacts WHERE regexp_matches(win_path, '\\owa\\auth\\1[45]\.\d+\.\d+\.\d+\\') "
            "AND mtime IS NOT NULL GROUP BY 1"
        ).fetchall()
        out += [(b, t, t, "owa/auth/<build> folder (file time)") for b, t in rows]
        return out

    def mitigations(self) -> list[dict[str, Any]]:
        """URL-rewrite mitigation rules found in IIS configuration files, with file and line."""
        if family("config_mitigations").table not in self.tables():
            return []
        return self.query(
            "SELECT a.path, m._line AS line, m.family, m.status, m.rule_name, m.tool, m.pattern "
            "FROM cfg_mitigations m JOIN artifacts a ON a.id = m._artifact ORDER BY a.path, m._line"
        )

    def extended_protection(self) -> list[tuple[Any, ...]]:
        """(path, site, virtual directory, expected, actual, ok) per virtual directory of each collected
        applicationHost.config."""
        if family("config_extended_protection").table not in self.tables():
            return []
        return self._con.execute(
            "SELECT a.path, e.site, e.virtual_directory, e.expected, e.actual, e.ok "
            "FROM cfg_extended_protection e JOIN artifacts a ON a.id = e._artifact ORDER BY a.path"
        ).fetchall()

    def ntfs_times(self, paths: list[str]) -> dict[str, dict[str, Any]]:
        """{collection path: its NTFS record (`$SI`/`$FN` times, MFT entry, tells)} for the files of
        an image that have one (an empty dict for other collections)."""
        table = family("fs_records").table
        if not paths or table not in self.tables():
            return {}
        rows = self.query(
            f"SELECT * EXCLUDE (host, _artifact) FROM {quote(table)} "
            "WHERE NOT deleted AND path IN (SELECT unnest(?::VARCHAR[]))",
            [paths],
        )
        return {r.pop("path"): r for r in rows}

    # -- analyses (exhunt.analytics) ---------------------------------------------------------
    # The analytics build their answer in steps of SQL over the case: temporary macros, views and
    # tables (named `_mx_*`, `_tl_*`, dropped when they are done), small Arrow tables of keys
    # registered for a join, and the result tables they keep. These methods are their one door.
    def column_map(self, table: str) -> dict[str, str]:
        """{lower-case name: name} of a table's columns ({} when the case has no such table)."""
        rows = self._con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main'",
            [table],
        ).fetchall()
        return {r[0].lower(): r[0] for r in rows if r[0] != ROWID}

    def define(self, sql: str) -> None:
        """Run statements that create (or drop) an analysis's temporary macros, views and tables."""
        self._con.execute(sql)

    @contextlib.contextmanager
    def registered(self, name: str, rows: pa.Table) -> Iterator[None]:
        """`rows` readable as the view `name` while the block runs."""
        self._con.register(name, rows)
        try:
            yield
        finally:
            self._con.unregister(name)

    def keep_table(self, name: str, rows: pa.Table) -> None:
        """Store an analysis's result as the case table `name`, one of ANALYSIS_TABLES (replacing it)."""
        if name not in ANALYSIS_TABLES:
            raise ValueError(f"not an analysis table: {name}")
        with self.registered("_an_rows", rows):
            self._con.execute(f"CREATE OR REPLACE TABLE {quote(name)} AS SELECT * FROM _an_rows")

    def analysis_table(self, name: str) -> list[dict[str, Any]]:
        """The rows of one of ANALYSIS_TABLES, as `keep_table` stored them."""
        if name not in ANALYSIS_TABLES:
            raise ValueError(f"not an analysis table: {name}")
        return self.query(f"SELECT * FROM {quote(name)}")

    def drop_temp(self, names: Iterable[str]) -> None:
        """Drop an analysis's temporary tables; one that cannot be dropped is left to the connection's end."""
        for name in names:
            with contextlib.suppress(duckdb.Error):
                self._con.execute(f"DROP TABLE IF EXISTS {quote(name)}")

    def rows_at(self, family: Family, keys: list[tuple[int, int]], columns: str) -> dict[tuple[int, int], dict]:
        """{(artifact, line): {column: value}} of `columns` (SQL over alias `t`) for the records of `family`
        at these (artifact, line) keys. The literal artifact list lets DuckDB skip the row groups of other
        files (records are stored file by file)."""
        if not keys:
            return {}
        arts = ", ".join(str(int(a)) for a in sorted({a for a, _ in keys}))
        keyed = pa.table({"art": [a for a, _ in keys], "ln": [ln for _, ln in keys]})
        with self.registered("_case_keys", keyed):
            cur = self._con.execute(
                f"SELECT t._artifact, t._line, {columns} FROM {quote(family.table)} t WHERE t._artifact IN ({arts}) "
                "AND (t._artifact, t._line) IN (SELECT (art, ln) FROM _case_keys)"
            )
            names = [d[0] for d in cur.description][2:]
            return {(r[0], r[1]): dict(zip(names, r[2:], strict=True)) for r in cur.fetchall()}

    def server_addresses(self) -> set[str]:
        """The server's own addresses: every IIS `s-ip`."""
        iis = family("iis").table
        if "s-ip" not in self.column_map(iis):
            return set()
        rows = self._con.execute(f'SELECT DISTINCT "s-ip" FROM {quote(iis)} WHERE "s-ip" IS NOT NULL').fetchall()
        return {r[0] for r in rows}

    def site_virtual_directories(self) -> list[tuple[Any, ...]]:
        """(host, site, URL prefix, physical path) of every virtual directory in each collected
        applicationHost.config; the prefix is the application path joined with the directory's path."""
        if family("config_site_vdirs").table not in self.tables():
            return []
        return self._con.execute(
            "SELECT DISTINCT a.host, v.site, "
            "lower(rtrim(coalesce(v.application, ''), '/') || CASE WHEN coalesce(v.virtual_directory, '/') = '/' "
            "THEN '' ELSE '/' || trim(v.virtual_directory, '/') END) AS prefix, v.physical_path "
            "FROM cfg_site_vdirs v JOIN artifacts a ON a.id = v._artifact WHERE v.physical_path IS NOT NULL"
        ).fetchall()

    def meta(self, key: str) -> Any:
        rows = self._con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return json.loads(rows[0][0]) if rows else None


class CaseWriter:
    """Writes parsed records into DuckDB in whole row groups, then the scan's results.

    Inserts run on the calling thread with one DuckDB thread while readers parse on the other cores:
    a second DuckDB thread per insert only competed with them (1 GB `--case`: 13.8-14.1 s vs 10 s),
    and two writer threads for different tables took the same time with 200 MB more memory. A scan
    without a case file spools its log records to Parquet instead (`exhunt.spool`), and the reader
    threads write those themselves (`append_here`). Once reading is done, `ready_for_queries` gives
    the queries the scan's whole CPU budget.
    """

    def __init__(
        self, path: Path, *, memory_limit: str = "512MB", threads: int = 1, spool: Path | None = None,
        keep_records: bool = False,
    ) -> None:  # fmt: skip
        """`spool`: a (temporary) folder to write the record tables to as Parquet; `keep_records`: the
        case keeps them as Parquet in the folder beside it (`case_records`), unless it already holds its
        records as tables (a case of an earlier exhunt, a fleet's merged shards), which it goes on with."""
        self.path = path
        self.threads = max(1, threads)
        self._con = duckdb.connect()
        self._con.execute(f"ATTACH {literal(str(path))} AS case_db (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        self._con.execute("USE case_db")
        self.keeps_records = keep_records and not self._records_in_tables()
        if self.keeps_records:
            spool = case_records.make_folder(path)
        self.kept = case_records.listed(self._con, path) if self.keeps_records else {}  # an earlier scan's files
        first_file, first_rid = self._continued(self.kept)
        self.spool = Spool(spool, ROW_GROUP_ROWS, first_file, first_rid) if spool is not None else None
        self.memory_limit = memory_limit
        # while reading, DuckDB only writes: the blocks it keeps cached after writing them are never
        # read back, and they grew the peak with the input (2 M wide rows: 763 MB peak at 512 MB,
        # 408 MB at 128 MB, the same speed). The queries get the whole limit (`ready_for_queries`), and
        # so does an insert that the smaller share cannot hold.
        self._write_memory = WRITE_MEMORY
        self._con.execute(f"SET memory_limit={literal(WRITE_MEMORY)}; SET threads=1;")
        self._con.execute("SET preserve_insertion_order=false")
        self._con.execute(SCHEMA)
        self.reader = CaseReader(self._con)
        self._columns: dict[str, set[str]] = {}
        self._waiting = RowGroups(ROW_GROUP_ROWS)
        self._local = threading.local()  # each thread's own DuckDB for filling in times
        self.failed: Failed = []

    # -- records -----------------------------------------------------------------------------
    def append(self, table: str, rows: pa.Table) -> None:
        """Queue rows (carrying their int32 `_artifact`) for `table`; written in whole row groups."""
        if self.append_here(table, rows):
            return
        self._insert_parts(table, self._waiting.add(table, rows))

    def append_here(self, table: str, rows: pa.Table) -> bool:
        """`append` on the calling thread, which may be any reader thread, for rows of a spooled table;
        False, storing nothing, for rows that only the writer's thread may store."""
        if self.spool is None:
            return False
        fam = family_of_table(table)
        if fam.kind != "events" and not fam.line_based:  # e.g. configuration records: the writer's
            return False
        self.spool.lane().append(table, rows, self._prepared)
        return True

    def flush(self) -> None:
        """Store what waits: the writer's rows, and those of the calling thread's spool lane."""
        for table in list(self._waiting.parts):
            self._insert_parts(table, self._waiting.take(table))
        if self.spool is not None:
            self.spool.lane().flush(self._prepared)

    def _insert_parts(self, table: str, parts: list[pa.Table]) -> None:
        """Insert whole row groups of `table`.

        DuckDB writes an insert of at least one row group (ROW_GROUP_ROWS) straight to the file; a
        smaller one goes through the write-ahead log and is compressed again at checkpoint (measured:
        15.4 s vs 6.5 s for 1.2 GB). So while reading, whole row groups are inserted. A batch DuckDB
        refuses costs only the files it came from (`failed`), never the rest of the family.
        """
        store_parts(parts, lambda some: self._insert(table, some), self.failed)

    def _insert(self, table: str, parts: list[pa.Table]) -> None:
        batch = combined(parts)
        batch = self._prepared(table, batch)
        if family_of_table(table).kind != "events":  # the schema declares the events table's columns
            self._ensure_columns(table, batch.schema)
        insert = f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _batch"
        self._con.register("_batch", batch)
        try:
            try:
                self._con.execute(insert)
            except duckdb.OutOfMemoryException:
                if self._write_memory == self.memory_limit:
                    raise
                # a row group of very wide rows needs more than the writing share: from here on the
                # writer has the whole limit, and this batch is tried again (never lost to the cap)
                self._write_memory = self.memory_limit
                self._con.execute(f"SET memory_limit={literal(self.memory_limit)}")
                self._con.execute(insert)
        finally:
            self._con.unregister("_batch")

    def _prepared(self, table: str, batch: pa.Table) -> pa.Table:
        """The batch with a `_ts` for every row whose time columns give one: the readers' own where they
        read them (`log_time`), DuckDB's TRY_CAST for the rest (one query, only when some are missing).
        Runs on any thread, so the query runs on that thread's own in-memory DuckDB. Events are
        returned as they are: they carry their own `ts`."""
        if family_of_table(table).kind == "events":
            return batch
        have = "_ts" in batch.column_names
        if have and batch.column("_ts").null_count == 0:
            return batch
        ts = _ts_sql(family_of_table(table), batch.column_names)
        sql = f"SELECT {f'coalesce(_ts, {ts})' if have else ts} AS _ts FROM _batch"
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = duckdb.connect(config={"threads": 1})
        con.register("_batch", batch)
        try:
            times = con.sql(sql).to_arrow_table().column("_ts").cast(pa.timestamp("us"))
        finally:
            con.unregister("_batch")
        if have:
            return batch.set_column(batch.column_names.index("_ts"), "_ts", times)
        return batch.append_column("_ts", times)

    def _ensure_columns(self, table: str, schema: pa.Schema) -> None:
        have = self._columns.get(table)
        if have is None:
            kinds = {"_artifact": "INTEGER", "_line": "BIGINT"}
            cols = ", ".join(f"{quote(f.name)} {kinds.get(f.name, 'VARCHAR')}" for f in schema if f.name != "_ts")
            self._con.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} ({cols}, _ts TIMESTAMP)")
            self._columns[table] = {c.lower() for c in self.reader.columns(table)}
            have = self._columns[table]
        for f in schema:
            if f.name.lower() not in have:
                self._con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(f.name)} VARCHAR")
                have.add(f.name.lower())

    # -- inventory ---------------------------------------------------------------------------
    def add_artifacts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            # from_pylist takes its columns from the first row only: give every row every key
            keys = list(dict.fromkeys(k for r in rows for k in r))
            self._insert_table("artifacts", pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]))

    def add_directives(self, rows: list[tuple[int, int, str, str]]) -> None:
        self._insert_rows("directives", ["artifact", "line", "key", "value"], rows)

    def add_line_index(self, rows: list[tuple[int, int, int]]) -> None:
        self._insert_rows("line_index", ["artifact", "line", "offset"], rows)

    def add_typed_records(self, table: str, rows: pa.Table) -> None:
        """A table of records with its own column types, written once (NTFS file records: times,
        flags and lists stay typed for rules and `exhunt query`, unlike the all-text log tables)."""
        self._con.register("_rows", rows)
        try:
            self._con.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} AS SELECT * FROM _rows LIMIT 0")
            self._con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _rows")
        finally:
            self._con.unregister("_rows")

    def add_problems(self, rows: list[tuple[str, int | None, str, str]]) -> None:
        self._insert_rows("errors", ["path", "line", "reason", "stage"], rows)

    def _insert_rows(self, table: str, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        """One columnar insert (executemany goes row by row: 35% of a scan of 3,000 small files)."""
        if rows:
            batch = pa.Table.from_arrays([pa.array(list(col)) for col in zip(*rows, strict=True)], names=names)
            self._insert_table(table, batch)

    def _insert_table(self, table: str, rows: pa.Table) -> None:
        self._con.register("_rows", rows)
        try:
            self._con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _rows")
        finally:
            self._con.unregister("_rows")

    def forget_artifacts(self, ids: list[int]) -> None:
        """Remove the given artifacts and every record, directive and line offset read from them, all
        stored problems and NTFS records (an incremental rescan stores them again for the whole
        collection), so changed or removed files can be read anew into a kept case."""
        self.flush()
        self._con.execute("CREATE OR REPLACE TEMP TABLE _forget (id INTEGER)")
        try:
            self._insert_rows("_forget", ["id"], [(i,) for i in ids])
            for table in sorted(self.reader.tables()):
                cols = {c.lower() for c in self.reader.columns(table)}
                if table == "artifacts":
                    column = "id"
                elif "_artifact" in cols:
                    column = "_artifact"
                elif table in ("directives", "line_index"):
                    column = "artifact"
                else:
                    continue
                self._con.execute(f"DELETE FROM {quote(table)} WHERE {quote(column)} IN (SELECT id FROM _forget)")
            if self.keeps_records:
                case_records.forget(self._con, ids)
            self._con.execute("DELETE FROM errors")
            ntfs = family("fs_records").table
            if ntfs in self.reader.tables():
                self._con.execute(f"DROP TABLE {quote(ntfs)}")
        finally:
            self._con.execute("DROP TABLE IF EXISTS _forget")

    def absorb(self, shard: Path) -> None:
        """Copy the records, inventory, directives and line offsets of a shard case (another process read
        a range of the same collection's artifacts into it, with ids of their own) into this case."""
        self.flush()
        self._con.execute(f"ATTACH {literal(str(shard))} AS shard (READ_ONLY)")
        try:
            mine = {r[0] for r in self._con.execute(_TABLES_OF, ["case_db"]).fetchall()}
            for (table,) in self._con.execute(_TABLES_OF, ["shard"]).fetchall():
                if table in _RESULT_TABLES:
                    continue
                source = f"shard.{quote(table)}"
                if table not in mine:
                    self._con.execute(f"CREATE TABLE {quote(table)} AS SELECT * FROM {source} LIMIT 0")
                have = {c.lower() for c in self.reader.columns(table)}
                for name, kind in self._con.execute(
                    f"SELECT column_name, column_type FROM (DESCRIBE {source})"
                ).fetchall():
                    if name.lower() not in have:
                        self._con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {kind}")
                self._con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM {source}")
        finally:
            self._con.execute("DETACH shard")
        if not self._con.execute("SELECT 1 FROM meta WHERE key = 'schema_id'").fetchall():  # an exhunt case
            self._insert_rows("meta", ["key", "value"], [("schema_id", json.dumps(SCHEMA_ID))])

    # -- results -----------------------------------------------------------------------------
    def save_results(self, findings: pa.Table, evidence: pa.Table, coverage: pa.Table, doc: dict[str, Any]) -> None:
        """Keep findings, evidence, coverage and the result document, each table in one statement (a
        statement per row cost 0.26 s for 132 evidence rows; now 0.014 s)."""
        tables = {
            "findings": (findings, "* REPLACE (grp::JSON AS grp)"),
            "evidence": (evidence, "* REPLACE (record::JSON AS record)"),
            "coverage": (coverage, "*"),
        }
        for name, (rows, select) in tables.items():
            self._con.register("_rows", rows)
            try:
                self._con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {select} FROM _rows")
            finally:
                self._con.unregister("_rows")
        meta = {key: doc.get(key) for key in ("verdict", "reason", "hosts", "missing", "warnings", "collection")}
        meta |= {"exhunt_version": doc.get("exhunt_version"), "schema_id": SCHEMA_ID, "result": doc}
        rows = [(k, json.dumps(v, default=str)) for k, v in meta.items()]
        self._con.execute("DELETE FROM meta")
        self._insert_rows("meta", ["key", "value"], rows)

    def ready_for_queries(self) -> CaseReader:
        """Reading is done: the last inserts and the queries use the scan's CPU budget (while the
        readers run, inserts stay on one thread beside them)."""
        self._write_memory = self.memory_limit
        self._con.execute(f"SET threads={self.threads}; SET memory_limit={literal(self.memory_limit)}")
        self.flush()
        if self.spool is not None:
            self._spooled_views(self.spool)
        return self.reader

    def _spooled_views(self, spool: Spool) -> None:
        """One view per spooled table over its Parquet files (with those an earlier scan of a kept case
        left); a file DuckDB cannot read costs its own artifacts only. A kept case names its files."""
        files, failed = spool.finish(self._prepared, self.threads)
        self.failed.extend(failed)
        every: dict[str, list[Path]] = {t: list(p) for t, p in self.kept.items()}
        for table, paths in files.items():
            for path in paths:
                if (exc := case_records.read_error(self._con, path)) is None:
                    every.setdefault(table, []).append(path)
                else:
                    self.failed.append((spool.artifacts[path], why(exc)))
        if self.keeps_records:
            case_records.save_manifest(self._con, every)
        forgotten = case_records.FORGOTTEN in self.reader.tables()
        for table, usable in every.items():
            if not usable:
                continue
            if family_of_table(table).kind == "events":
                # the schema's (empty) events table gives way to the view: a spooled scan stores every
                # event in the spool. `data` stays text there: a cast to JSON would parse every event's
                # data once more in each rule query (measured: the events bench 3% slower, not 8% faster)
                self._con.execute(f"DROP TABLE IF EXISTS {quote(table)}")
            self._con.execute(f"CREATE OR REPLACE VIEW {quote(table)} AS {case_records.view_sql(usable, forgotten)}")
            self._con.execute(f"COMMENT ON VIEW {quote(table)} IS '{MARK}'")

    def _records_in_tables(self) -> bool:
        """An earlier scan stored this case's records in its tables (no `record_files`, some artifacts)."""
        names = {r[0] for r in self._con.execute(_TABLES_OF, ["case_db"]).fetchall()}
        if case_records.MANIFEST in names or "artifacts" not in names:
            return False
        return bool(self._con.execute("SELECT 1 FROM artifacts LIMIT 1").fetchall())

    def _continued(self, kept: dict[str, list[Path]]) -> tuple[int, dict[str, int]]:
        """The first file number and the first row id of each table after an earlier scan's files."""
        paths = [p for ps in kept.values() for p in ps]
        first_file = max((int(p.stem) for p in paths), default=-1) + 1
        first_rid = {}
        for table, ps in kept.items():
            listed = ", ".join(literal(str(p)) for p in ps)
            try:
                (top,) = self._con.execute(f"SELECT max(_rid) FROM read_parquet([{listed}])").fetchone()  # type: ignore[misc]
            except duckdb.Error as exc:  # the earlier scan's records cannot be carried over: say so, stop
                raise InputError(
                    f"{self.path}: the records it keeps for {table} cannot be read ({why(exc)}); "
                    "scan again without --rescan"
                ) from None
            first_rid[table] = 0 if top is None else int(top) + 1
        return first_file, first_rid

    def close(self) -> None:
        """Store what waits and close. A kept case's record views read files: they are dropped, and
        whoever opens the case makes them again (`case_records.open_views`)."""
        try:
            self.flush()
            if self.keeps_records:
                for (view,) in self._con.execute(
                    "SELECT view_name FROM duckdb_views() WHERE database_name = 'case_db' AND comment = ?", [MARK]
                ).fetchall():
                    self._con.execute(f"DROP VIEW IF EXISTS {quote(view)}")
        finally:
            self._con.close()


_TABLES_OF = "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY table_name"
_RESULT_TABLES = frozenset({"meta", "findings", "evidence", "coverage", "errors"})  # the scan's, not the records'
ROWID = "rowid"  # a spooled view's row id column: named so that the rules' `t.rowid` reads it
MARK = case_records.VIEW_MARK  # the comment that marks a spooled view
_TABLES_AND_SPOOLED = (  # a saved case's record views are temporary ones (`case_records.open_views`)
    "SELECT table_name FROM duckdb_tables() UNION "
    f"SELECT view_name FROM duckdb_views() WHERE NOT internal AND comment = '{MARK}'"
)
