"""Which columns of the wide Exchange log tables the rules read.

Without `--case`, the rows of projected families (HttpProxy, EWS, RPS) are stored with only these columns (plus a base set for
coverage, exposure and display): DuckDB ingests wide all-text tables at about 115 MB/s, so storing the
40-odd latency columns nobody queries would halve the scan speed. The evidence record is rebuilt from
the raw line with the file's own `#Fields`, so no parsed field is lost from a finding.
"""

from __future__ import annotations

from typing import Any

from exhunt.analytics.columns import ANALYTICS_COLUMNS
from exhunt.families import EXCHANGE_BASE_COLUMNS, FAMILIES, family
from exhunt.rules.model import Rule


def _fields(cond: Any, out: set[str]) -> None:
    if isinstance(cond, dict):
        if "field" in cond:
            out.add(str(cond["field"]))
        for value in cond.values():
            _fields(value, out)
    elif isinstance(cond, list):
        for item in cond:
            _fields(item, out)


def columns_to_keep(rules: list[Rule]) -> dict[str, set[str] | None]:
    """{table: lower-cased column names to store} for the wide tables; None means every column."""
    keep: dict[str, set[str] | None] = {
        f.table: {c.lower() for c in EXCHANGE_BASE_COLUMNS | ANALYTICS_COLUMNS.get(f.table, set())}
        for f in FAMILIES
        if f.projected
    }
    for rule in rules:
        table = family(rule.source).table
        if table not in keep or keep[table] is None:
            continue
        used = _used(rule)
        if rule.where is None or "text" in used:
            keep[table] = None  # generated SQL or free-text search: keep everything
            continue
        keep[table] |= {f.lower() for f in used}  # type: ignore[operator]
    return keep


def columns_read(rule: Rule) -> set[str]:
    """The lower-cased columns a rule's condition and grouping read, its family's aliases resolved
    to the columns they are built from (free-text `text` and generated SQL read no named column)."""
    fam = family(rule.source)
    out: set[str] = set()
    for name in _used(rule) - {"text"} if rule.where is not None else set():
        if name in fam.aliases:
            seen: list[str] = []
            fam.aliases[name](lambda c, seen=seen: seen.append(c) or "NULL")
            out.update(c.lower() for c in seen)
        else:
            out.add(name.lower())
    return out


def _used(rule: Rule) -> set[str]:
    out: set[str] = set(rule.group_by)
    _fields(rule.where, out)
    return out
