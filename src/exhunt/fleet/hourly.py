"""Hourly counts of exploitation-, scanning- and web-shell-class requests, from one host's case database.

Method: each built-in rule over a request log (IIS, HttpProxy) whose kind is exploitation, scanning or
webshell is compiled with the scan's own rule compiler, and its condition is counted per hour
(`date_trunc('hour', _ts)`) instead of per client. A record matching several rules of one class counts
once for that class. Counts are log records: one request can show in both the IIS and the HttpProxy
log, so a class's hourly count is the sum of both logs' matching records. `requests` is every record
of those logs in that hour, the denominator for spikes. Indicator rules (an IP or a user agent alone)
and rules over events or files are not request classes and are not counted here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from exhunt.case import CaseReader, quote
from exhunt.families import family, source_families
from exhunt.layout import DEFAULT_INSTALL
from exhunt.rules.model import Rule
from exhunt.rules.native import Compiler

CLASSES = ("exploitation", "scanning", "webshell")
REQUEST_SOURCES = ("iis", "httpproxy")


def class_rules(rules: list[Rule]) -> dict[str, dict[str, list[Rule]]]:
    """{class: {source: rules}} for the rules that count towards a request class."""
    out: dict[str, dict[str, list[Rule]]] = {c: {s: [] for s in REQUEST_SOURCES} for c in CLASSES}
    for r in rules:
        if r.kind not in CLASSES or r.where is None:
            continue
        for fam in source_families(r.source):  # a `web` rule counts on every request log
            if fam.name in REQUEST_SOURCES:
                out[r.kind][fam.name].append(r)
    return out


def hourly_counts(case: Path, rules: list[Rule]) -> list[dict[str, Any]]:
    """[{hour: ISO-8601 UTC, class: requests|exploitation|scanning|webshell, count}] sorted by hour, class."""
    reader = CaseReader.open_saved(case)
    try:
        tables = reader.tables()
        params = {"install_path": DEFAULT_INSTALL, "install_path_re": re.escape(DEFAULT_INSTALL)}
        counts: dict[tuple[str, str], int] = {}
        by_class = class_rules(rules)
        for source in REQUEST_SOURCES:
            fam = family(source)
            if fam.table not in tables:
                continue
            columns = reader.columns(fam.table)
            queries = [("requests", "true", [])]
            for cls in CLASSES:
                chosen = by_class[cls][source]
                if chosen:
                    comp = Compiler(fam, columns, params, case=reader)
                    where = " OR ".join(comp.compile(r.where) for r in chosen)
                    queries.append((cls, where, comp.args))
            for cls, where, args in queries:
                sql = (
                    f"SELECT strftime(date_trunc('hour', t._ts), '%Y-%m-%dT%H:00:00Z'), count(*) FROM {quote(fam.table)} t "
                    f"WHERE t._ts IS NOT NULL AND ({where}) GROUP BY 1"
                )
                for hour, n in reader.fetch(sql, args):
                    counts[(hour, cls)] = counts.get((hour, cls), 0) + int(n)
    finally:
        reader.close()
    return [{"hour": h, "class": c, "count": n} for (h, c), n in sorted(counts.items())]
