"""Which columns of the wide Exchange log tables the rules read.

Without `--case`, the rows of projected families (HttpProxy, EWS, RPS) are stored with only these columns (plus a base set for
coverage, exposure and display): DuckDB ingests wide all-text tables at about 115 MB/s, so storing the
40-odd latency columns nobody queries would halve the scan speed. The evidence record is rebuilt from
the raw line with the file's own `#Fields`, so no parsed field is lost from a finding. A normalised
field (aliases, and the web fields of `source: web` rules) keeps the columns that each family's
declaration of it reads.
"""

from __future__ import annotations

from typing import Any

from exhunt.analytics.columns import ANALYTICS_COLUMNS
from exhunt.families import (
    EXCHANGE_BASE_COLUMNS,
    FAMILIES,
    UNION_GROUP,
    UNIONS,
    columns_read,
    family,
    is_union,
    source_families,
)
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
        used = _used(rule)
        for fam in source_families(rule.source):  # a `web` rule reads every web family's declared columns
            table = fam.table
            if table not in keep or keep[table] is None:
                continue
            if (rule.where is None and not rule.reads) or "text" in used:
                keep[table] = None  # generated SQL, undeclared logic or free-text search: keep everything
                continue
            union = rule.source if is_union(rule.source) else None
            read = {c for name in used | _union_extra(rule) for c in columns_read(fam, name, union)}
            keep[table] |= {c.lower() for c in read}  # type: ignore[operator]
    return keep


def _union_extra(rule: Rule) -> set[str]:
    """Fields a union rule reads besides its own: the request id that counts requests once, the default group."""
    if not is_union(rule.source):
        return set()
    return set(UNION_GROUP[rule.source]) | ({"request_id"} & set(UNIONS[rule.source]))


def rule_columns(rule: Rule) -> dict[str, set[str]]:
    """{family name: lower-cased columns of that family the rule's condition and grouping read}, for
    each family the rule runs on (a `web` rule runs on several); free-text `text` and generated SQL
    read no named column."""
    if rule.where is None:
        return {}
    fams = source_families(rule.source) if is_union(rule.source) else [family(rule.source)]
    used = _used(rule) - {"text"}
    union = rule.source if is_union(rule.source) else None
    return {fam.name: {c.lower() for name in used for c in columns_read(fam, name, union)} for fam in fams}


def _used(rule: Rule) -> set[str]:
    out: set[str] = set(rule.group_by) | set(rule.reads)
    _fields(rule.where, out)
    return out
