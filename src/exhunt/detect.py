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
from exhunt.rules.native import RawFinding, run_rule

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

    def one(rule: Rule) -> list[RawFinding] | duckdb.Error:
        if not hasattr(local, "case"):
            local.case = case.cursor()
            cursors.append(local.case)
        try:
            return run_rule(local.case, rule, params, samples)
        except duckdb.Error as exc:
            return exc

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(RULE_THREADS, threads))) as pool:
            outcomes = list(pool.map(one, rules))
    finally:
        for cur in cursors:
            cur.close()
    raw: list[RawFinding] = []
    problems: list[Problem] = []
    for rule, outcome in zip(rules, outcomes, strict=True):
        if isinstance(outcome, duckdb.Error):
            why = str(outcome).splitlines()[0][:200]
            problems.append(Problem(rule.origin or rule.id, None, f"rule {rule.id} failed: {why}", "detect"))
        else:
            raw.extend(outcome)
    return raw, problems
