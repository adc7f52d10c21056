"""Small helpers for SQL over case tables whose columns depend on the logs that were read."""

from __future__ import annotations

from typing import Any

import duckdb


class Table:
    """A case table's columns, looked up case-insensitively; absent columns read as NULL."""

    def __init__(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        self.name = name
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main'",
            [name],
        ).fetchall()
        self.columns = {r[0].lower(): r[0] for r in rows}

    @property
    def exists(self) -> bool:
        return bool(self.columns)

    def has(self, *names: str) -> bool:
        return all(n.lower() in self.columns for n in names)

    def col(self, name: str, alias: str = "t") -> str:
        """`alias."Name"` as VARCHAR, or a NULL of that type when the column is absent."""
        real = self.columns.get(name.lower())
        if real is None:
            return "CAST(NULL AS VARCHAR)"
        return f'{alias}."{real}"'

    def nonempty(self, name: str, alias: str = "t") -> str:
        """The column; the store already reads empty fields as NULL."""
        return self.col(name, alias)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """A query's result as dicts (only for small results)."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
