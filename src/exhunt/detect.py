"""Stage 2: run the rules on the case database.

Each rule is one SQL query over its family's table (see `rules.native`); a rule that fails on this
data becomes a problem and never costs the other rules.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb

from exhunt.case import CaseReader
from exhunt.layout import DEFAULT_INSTALL
from exhunt.result import Problem
from exhunt.rules.model import Rule
from exhunt.rules.native import RawFinding, run_rule, run_with_shared_view

RULE_THREADS = 2  # most rule queries are small and plan on one thread (rules on 1 GB: 1.3 s -> 0.95 s)


def rule_params(install_path: str | None) -> dict[str, str]:
    """The values rules may name as `{install_path}` and `{install_path_re}`."""
    path = install_path or DEFAULT_INSTALL
    return {"install_path": path, "install_path_re": re.escape(path)}


def detect(
    case: CaseReader, rules: list[Rule], params: dict[str, str], samples: int | None, threads: int
) -> tuple[list[RawFinding], list[Problem]]:
    """Every rule's hits, grouped by host and group key, and the rules that failed."""
    local = threading.local()
    cursors: list[CaseReader] = []

    def cursor() -> CaseReader:
        if not hasattr(local, "case"):
            local.case = case.cursor(frozen=True)  # rules add no record table
            cursors.append(local.case)
        return local.case

    def one(rule: Rule) -> list[RawFinding] | duckdb.Error:
        try:
            return run_rule(cursor(), rule, params, samples)
        except duckdb.Error as exc:
            return exc

    def shared(group: list[Rule]) -> list[list[RawFinding] | duckdb.Error]:
        try:
            return list(run_with_shared_view(cursor(), group, samples))
        except duckdb.Error:  # one rule's condition failed the view: run each alone, so only it is lost
            return [one(rule) for rule in group]

    alone, groups = _by_view(rules)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(RULE_THREADS, threads))) as pool:
            grouped = pool.map(shared, groups)
            outcomes = dict(zip(map(id, alone), pool.map(one, alone), strict=True))
            for group, results in zip(groups, grouped, strict=True):
                outcomes.update(zip(map(id, group), results, strict=True))
    finally:
        for cur in cursors:
            cur.close()
    raw: list[RawFinding] = []
    problems: list[Problem] = []
    for rule in rules:
        outcome = outcomes[id(rule)]
        if isinstance(outcome, duckdb.Error):
            why = str(outcome).splitlines()[0][:200]
            problems.append(Problem(rule.origin or rule.id, None, f"rule {rule.id} failed: {why}", "detect"))
        else:
            raw.extend(outcome)
    return raw, problems


def _by_view(rules: list[Rule]) -> tuple[list[Rule], list[list[Rule]]]:
    """Rules run alone, and the generated rules grouped by the sources of their field view."""
    alone: list[Rule] = []
    groups: dict[tuple[str, str], list[Rule]] = {}
    for rule in rules:
        if rule.view is None:
            alone.append(rule)
        else:
            groups.setdefault((rule.source, rule.view.sources), []).append(rule)
    return alone, list(groups.values())
