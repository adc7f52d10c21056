"""A kept case's log and event records, as Parquet files in a folder beside the case file.

A `--case X.duckdb` scan writes its records as the default scan spools them: each reader thread
its own Parquet files, no single writer (DuckDB stored wide all-text tables at about 120 MB/s of
Arrow a core, the bound of the old `--case`). They go to `X.duckdb.records/`, which the case file
names in its `record_files` table (table, file name). While the scan runs, its record tables are
views over those files; the case it leaves holds no view that reads files. Whoever opens it again
makes the views for that one connection (`open_views`), with DuckDB's file access limited to the
folder, so a case moved with its folder still opens. A case file that only claims to be one (anyone's)
cannot make exhunt read outside the folder: a name must be digits and `.parquet`, and a regular file
inside the folder, not a link; a view is made only for a record table's name. An incremental rescan
names the artifacts it read again in `forgotten_artifacts`; the views leave their old records out.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import duckdb

from exhunt.families import FAMILIES
from exhunt.sql import literal, quote

SUFFIX = ".records"
MARKER = ".exhunt-records"  # the folder is exhunt's own: a new scan may replace it
MANIFEST = "record_files"
FORGOTTEN = "forgotten_artifacts"
DAMAGED = "damaged_record_files"  # on a connection whose records folder holds files it cannot read
VIEW_MARK = "exhunt records"  # the comment on a record view (`CaseReader.tables` lists them)
_NAME = re.compile(r"[0-9]{1,9}\.parquet")
_RECORD_TABLES = frozenset(f.table for f in FAMILIES if f.kind in ("log", "events"))


def folder_of(case: Path) -> Path:
    return Path(f"{case}{SUFFIX}")


def make_folder(case: Path) -> Path:
    folder = folder_of(case)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).touch()
    return folder


def remove_folder(case: Path) -> None:
    """Remove an earlier scan's records folder of `case` (only one exhunt made: it holds the marker)."""
    folder = folder_of(case)
    if folder.is_dir() and not folder.is_symlink() and (folder / MARKER).is_file():
        shutil.rmtree(folder)


def is_foreign_folder(case: Path) -> bool:
    """Something that is not exhunt's records folder sits where the case's would go."""
    folder = folder_of(case)
    return os.path.lexists(folder) and not (folder.is_dir() and (folder / MARKER).is_file())


def save_manifest(con: duckdb.DuckDBPyConnection, files: dict[str, list[Path]]) -> None:
    """Name every record file of the case (file names only: the folder goes with the case)."""
    con.execute(f"CREATE OR REPLACE TABLE {MANIFEST} (table_name VARCHAR, file VARCHAR)")
    rows = [(table, p.name) for table, paths in files.items() for p in paths]
    if rows:
        con.executemany(f"INSERT INTO {MANIFEST} VALUES (?, ?)", rows)


def listed(con: duckdb.DuckDBPyConnection, case: Path) -> dict[str, list[Path]]:
    """The case's record files by table, each checked: a plain name, a regular file in the folder."""
    if not _has_table(con, MANIFEST):
        return {}
    folder = folder_of(case).resolve()
    out: dict[str, list[Path]] = {}
    for table, name in con.execute(f"SELECT table_name, file FROM {MANIFEST} ORDER BY table_name, file").fetchall():
        if table not in _RECORD_TABLES or not isinstance(name, str) or not _NAME.fullmatch(name):
            continue  # a record table's name only: never a view that would stand for `findings` or `meta`
        path = folder / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
        except OSError:
            continue
        out.setdefault(table, []).append(path)
    return out


def view_sql(paths: list[Path], forgotten: bool) -> str:
    """A record view over Parquet files: `_rid` as the table's `rowid`, forgotten artifacts left out."""
    listed_paths = ", ".join(literal(str(p)) for p in paths)
    where = f" WHERE _artifact NOT IN (SELECT id FROM {FORGOTTEN})" if forgotten else ""
    return f"SELECT _rid AS rowid, * EXCLUDE (_rid) FROM read_parquet([{listed_paths}], union_by_name = true){where}"


def connect_saved(case: Path, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """A saved case opened read-only with `config`, its record views made (`open_views`), then every
    other file access switched off. Raises duckdb.Error (the connection closed)."""
    con = duckdb.connect(str(case), read_only=True, config=config)
    try:
        open_views(con, case)
        con.execute("SET enable_external_access = false")
    except BaseException:
        con.close()
        raise
    return con


def open_views(con: duckdb.DuckDBPyConnection, case: Path) -> None:
    """Make the saved case's record views on this connection (temporary: the case file may be read-only),
    its file access limited to the records folder. Call before file access is switched off. A damaged
    record file costs its own records only: the rest of its table and the case still open."""
    files = listed(con, case)
    if not files:
        return
    con.execute(f"SET allowed_directories = [{literal(str(folder_of(case).resolve()) + os.sep)}]")
    forgotten = _has_table(con, FORGOTTEN)
    damaged: list[tuple[str, str]] = []
    for table, paths in files.items():
        try:
            _view(con, table, paths, forgotten)
        except duckdb.Error:  # only then is each file tried alone (a few ms a file)
            readable = [p for p in paths if read_error(con, p) is None]
            damaged += [(table, p.name) for p in paths if p not in readable]
            if readable:
                _view(con, table, readable, forgotten)
    if damaged:  # said, and queryable, on this connection only
        con.execute(f"CREATE TEMP TABLE {DAMAGED} (table_name VARCHAR, file VARCHAR)")
        con.executemany(f"INSERT INTO {DAMAGED} VALUES (?, ?)", damaged)


def damaged_files(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(record table, file name) of each record file `open_views` could not read on this connection."""
    if not _has_table(con, DAMAGED, "temp"):
        return []
    return [tuple(r) for r in con.execute(f"SELECT * FROM {DAMAGED} ORDER BY ALL").fetchall()]


def _view(con: duckdb.DuckDBPyConnection, table: str, paths: list[Path], forgotten: bool) -> None:
    con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(table)} AS {view_sql(paths, forgotten)}")
    con.execute(f"COMMENT ON VIEW {quote(table)} IS '{VIEW_MARK}'")


def read_error(con: duckdb.DuckDBPyConnection, path: Path) -> duckdb.Error | None:
    """Why DuckDB cannot read a Parquet file, or None when it can."""
    try:
        con.execute(f"SELECT 1 FROM read_parquet({literal(str(path))}) LIMIT 0")
        return None
    except duckdb.Error as exc:
        return exc


def forget(con: duckdb.DuckDBPyConnection, ids: list[int]) -> None:
    """Leave these artifacts' records out of the views from now on."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {FORGOTTEN} (id INTEGER)")
    if ids:
        con.executemany(f"INSERT INTO {FORGOTTEN} VALUES (?)", [(i,) for i in ids])


def _has_table(con: duckdb.DuckDBPyConnection, name: str, database: str | None = None) -> bool:
    """Is there a table `name` in `database` (the connection's current one unless named)?"""
    rows = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE table_name = ? AND database_name = coalesce(?, current_database())",
        [name, database],
    ).fetchall()
    return bool(rows)
