"""`exhunt query`: SQL on a case file, safe even when someone else prepared the case.

The case is opened read-only with DuckDB's file system access disabled (no file read or written
outside the case, no extension installed or loaded, no spilling to a temporary folder) and the
configuration locked, so no statement can switch that back. Only queries run (SELECT, FROM,
WITH, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN); COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA, CALL and every
write are refused with the reason. A case whose views or macros read files (a `findings` view over
`read_text('/etc/passwd')`) is refused before anything runs, and DuckDB's own refusal, if a file
access slips past that check, is reported as such. Output escapes control characters in every
format: the table like the terminal summary, JSON lines with `\\uNNNN`, CSV cells formula-safe.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import duckdb

from exhunt import case_records
from exhunt.errors import InputError, UsageError
from exhunt.output.safe import _CONTROL, csv_cell, escape_controls

SAFE_CONFIG = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "temp_directory": "",
    "lock_configuration": True,  # last: nothing in the query can undo the above
}
LATE = ("enable_external_access", "lock_configuration")  # set once the record views are made (connect)
QUERY_TYPES = ("SELECT", "EXPLAIN")
# table functions and forms that read files or the network; views and macros using them are refused
_FILE_READERS = re.compile(
    r"\b(read_\w+|\w+_scan|glob|sniff_csv|parquet_\w+|iceberg_\w+|delta_\w+|httpfs\w*)\s*\("
    r"|\bFROM\s+'|\bJOIN\s+'|\bATTACH\b|\bCOPY\b",
    re.IGNORECASE,
)
FETCH_ROWS = 10_000


class QueryRefused(UsageError):
    """The statement, or the case, would read or write outside the case: refused, with the reason."""


@dataclass
class QueryResult:
    names: list[str]
    cursor: Any
    damaged: list[tuple[str, str]] = field(default_factory=list)  # record files the answer lacks

    def rows(self) -> Iterator[tuple[Any, ...]]:
        while True:
            try:
                batch = self.cursor.fetchmany(FETCH_ROWS)
            except duckdb.PermissionException as exc:
                raise QueryRefused(
                    f"refused: the query reads or writes outside the case ({_first_line(exc)})"
                ) from None
            except duckdb.Error as exc:
                raise UsageError(f"query failed: {_first_line(exc)}") from None
            if not batch:
                return
            yield from batch


def connect(case: Path) -> duckdb.DuckDBPyConnection:
    """The case opened read-only, without file access, extensions or a temporary folder."""
    if not case.is_file():
        raise InputError(f"no such case file: {case}")
    early = {k: v for k, v in SAFE_CONFIG.items() if k not in LATE}
    try:  # the records beside the case (and only those) stay readable; then the rest is switched off
        con = case_records.connect_saved(case, early)
    except duckdb.Error as exc:
        raise InputError(f"cannot open {case} as a case file: {_first_line(exc)}") from None
    try:
        con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        con.close()
        raise InputError(f"cannot open {case} as a case file: {_first_line(exc)}") from None
    return con


def check_statements(sql: str) -> None:
    """Refuse anything but queries, naming the statement type."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {_first_line(exc)}") from None
    if not statements:
        raise UsageError("no SQL statement given")
    for statement in statements:
        kind = statement.type.name
        if kind not in QUERY_TYPES:
            why = {
                "COPY": "it writes or reads files",
                "ATTACH": "it opens another database file",
                "LOAD": "it installs or loads an extension",
                "SET": "the configuration is locked",
                "VARIABLE_SET": "the configuration is locked",
                "PRAGMA": "pragmas can change settings or read files",
                "CALL": "table functions run through SELECT only",
                "EXPORT": "it writes files",
            }.get(kind, "the case is opened read-only: only queries run")
            raise QueryRefused(f"refused: {kind} statement ({why}); exhunt query runs SELECT-style queries only")


def check_case(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a case whose views or macros read files or reach outside it."""
    hostile = []
    # the case file's own views; the temporary ones are exhunt's record views, made on opening it
    views = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND NOT temporary").fetchall()
    macros = con.execute(
        "SELECT function_name, macro_definition FROM duckdb_functions() "
        "WHERE NOT internal AND macro_definition IS NOT NULL"
    ).fetchall()
    for kind, rows in (("view", views), ("macro", macros)):
        for name, definition in rows:
            if definition and _FILE_READERS.search(definition):
                hostile.append(f"{kind} {name}")
    if hostile:
        raise QueryRefused(
            "refused: this case defines "
            + ", ".join(escape_controls(h)[:80] for h in hostile[:10])
            + " reading files outside it (not written by exhunt); nothing was run"
        )


def run_query(case: Path, sql: str) -> tuple[duckdb.DuckDBPyConnection, QueryResult]:
    """Check and run `sql` on `case`; the caller closes the returned connection."""
    check_statements(sql)
    con = connect(case)
    try:
        check_case(con)
        damaged = case_records.damaged_files(con)  # asked first: a later statement ends the query's result
        cursor = con.execute(sql)
    except duckdb.PermissionException as exc:
        con.close()
        raise QueryRefused(
            f"refused: the query reads or writes outside the case, which exhunt query does not allow ({_first_line(exc)})"
        ) from None
    except duckdb.Error as exc:
        con.close()
        raise UsageError(f"query failed: {_first_line(exc)}") from None
    except BaseException:
        con.close()
        raise
    names = [d[0] for d in cursor.description] if cursor.description else []
    return con, QueryResult(names, cursor, damaged)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return escape_controls(text.splitlines()[0][:300] if text else type(exc).__name__)


def json_line(obj: Any) -> str:
    """One JSON document on one line; control and invisible format characters as `\\uNNNN`."""
    text = json.dumps(obj, default=str, ensure_ascii=False)
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)  # only inside strings: still valid JSON


def write_json_lines(result: QueryResult, out: TextIO) -> None:
    for row in result.rows():
        out.write(json_line(dict(zip(result.names, row, strict=True))) + "\n")


def write_csv(result: QueryResult, out: TextIO) -> None:
    """CSV whose cells show control characters escaped and never run as spreadsheet formulas."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([csv_cell(escape_controls(n)) for n in result.names])
    for row in result.rows():
        writer.writerow([csv_cell(None if v is None else escape_controls(v)) for v in row])
