"""The architecture's two seams hold in the source tree (issue 8): no module but `exhunt.families` and
`exhunt.case` names a case table of a log family (or `events`) in its code or SQL, and no module but
`exhunt.case` runs SQL on a DuckDB connection. A short allow-list names what legitimately remains."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from exhunt.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
SEAMS = {"src/exhunt/families.py", "src/exhunt/case.py", "src/exhunt/case_records.py"}  # the case and its records
# Modules that run SQL on a DuckDB connection of their own, not on a case: why each may.
OWN_CONNECTION = {
    "src/exhunt/query.py": "`exhunt query` runs the user's own SQL on a read-only case (its guard is tested)",
    "src/exhunt/fleet/store.py": "writes the fleet database, which is not a case database",
    "src/exhunt/rules/sigma.py": "checks compiled Sigma SQL against an empty in-memory schema, never a case",
}
RECORD_TABLES = {f.table for f in FAMILIES if f.kind in ("log", "events")}
LOG_TABLE = re.compile(r"^log_[a-z0-9_]+$")
SQL_TABLE = re.compile(r'\b(?:FROM|JOIN|INTO|TABLE|DESCRIBE)\s+"?(' + "|".join(sorted(RECORD_TABLES)) + r')\b"?', re.I)
SQL_CALLS = {"execute", "executemany", "sql", "register", "query_df", "from_query"}


def _modules() -> list[tuple[str, ast.Module]]:
    files = sorted((ROOT / "src" / "exhunt").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    return [(p.relative_to(ROOT).as_posix(), ast.parse(p.read_text(encoding="utf-8"))) for p in files]


def _strings(tree: ast.Module) -> list[tuple[int, str]]:
    """Every string constant, f-string pieces included, with its line; docstrings (prose may name a
    table for the reader) are left out."""
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def table_names_outside_families() -> list[str]:
    out = []
    for rel, tree in _modules():
        if rel in SEAMS:
            continue
        for line, text in _strings(tree):
            if LOG_TABLE.match(text) and text in RECORD_TABLES:
                out.append(f"{rel}:{line}: names the table {text!r}")
            elif m := SQL_TABLE.search(text):
                out.append(f"{rel}:{line}: SQL names the table {m.group(1)!r}")
    return out


def sql_calls_outside_case() -> list[str]:
    out = []
    for rel, tree in _modules():
        if rel in SEAMS or rel in OWN_CONNECTION:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
                out.append(f"{rel}:{node.lineno}: .{node.func.attr}(")
    return out


def test_no_module_but_the_families_names_a_record_table() -> None:
    assert table_names_outside_families() == []


def test_no_module_but_the_case_runs_sql() -> None:
    assert sql_calls_outside_case() == []


def test_the_scan_sees_what_it_looks_for() -> None:
    """The checks would fail on the code they forbid (so an empty list above means something)."""
    bad = ast.parse('con.execute(\'SELECT 1 FROM "log_ews" t\')\nx = "log_iis"\ny = f"SELECT * FROM events WHERE {z}"')
    assert [n.func.attr for n in ast.walk(bad) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)] == [
        "execute"
    ]
    found = {t for _, t in _strings(bad) if (LOG_TABLE.match(t) and t in RECORD_TABLES) or SQL_TABLE.search(t)}
    assert found == {'SELECT 1 FROM "log_ews" t', "log_iis", "SELECT * FROM events WHERE "}
    assert not [t for _, t in _strings(ast.parse('"""Rows FROM log_iis."""\nx = "log_files"')) if SQL_TABLE.search(t)]


def test_the_allow_list_is_still_needed() -> None:
    """An allowed module that no longer runs SQL of its own leaves the list."""
    for rel in OWN_CONNECTION:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
        assert any(n.func.attr in SQL_CALLS for n in calls), rel
