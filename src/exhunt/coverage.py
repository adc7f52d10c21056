"""What the collection covers: per log family, how many files and records over which time span,
which expected artifacts are missing, and whether the logs reach back to each campaign's window.

The span is where the bulk of the records lies (0.1 % to 99.9 % of them by time), so a few lines
with attacker-written dates (0001-01-01, 9999-12-31) cannot stretch it and switch a campaign warning
off; the records outside it are counted and reported as suspicious timestamps.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from exhunt.case import CaseReader
from exhunt.families import FAMILIES, family, source_families
from exhunt.result import FamilyCoverage, Problem
from exhunt.rules.columns import rule_columns
from exhunt.rules.model import Rule
from exhunt.sources.fieldmap import FieldMap

# When each campaign was exploited in the wild (public reporting); logs must reach into the window.
CAMPAIGN_WINDOWS = {
    "proxylogon": (datetime(2021, 1, 1), datetime(2021, 3, 31), "ProxyLogon"),
    "proxyshell": (datetime(2021, 8, 1), datetime(2021, 12, 31), "ProxyShell"),
    "proxynotshell": (datetime(2022, 8, 1), datetime(2022, 12, 31), "ProxyNotShell"),
    "owassrf": (datetime(2022, 11, 1), datetime(2023, 3, 31), "OWASSRF"),
}


# No Exchange 2013+ log can be older than Exchange 2013 itself (released in late 2012) or newer than now.
EARLIEST_PLAUSIBLE = datetime(2012, 10, 1)


def measure(case: CaseReader, now: datetime | None = None) -> list[FamilyCoverage]:
    plausible = (EARLIEST_PLAUSIBLE, (now or datetime.now(UTC).replace(tzinfo=None)) + timedelta(days=2))
    out = []
    for fam in case.record_families():
        files, records, earliest, latest, first, last, outliers = case.span(fam, plausible)
        if records:
            out.append(FamilyCoverage(fam.table, fam.title, files, records, first, last, earliest, latest, outliers))
    return out


def shape_notes(coverage: list[FamilyCoverage], artifacts: list[dict[str, Any]]) -> list[FamilyCoverage]:
    """Say in each family's coverage which of its files were read through a field map or with an
    inferred field list (the artifact's log type names it), with how many files each."""
    shapes: dict[str, Counter[str]] = {}
    for row in artifacts:
        log_type = row.get("log_type") or ""
        if row.get("log_table") and ("field map" in log_type or "fields inferred" in log_type):
            shapes.setdefault(row["log_table"], Counter())[log_type] += 1
    for c in coverage:
        c.notes.extend(f"{n:,} file(s): {shape}" for shape, n in sorted(shapes.get(c.family, Counter()).items()))
    return coverage


def map_notes(maps: tuple[FieldMap, ...], artifacts: list[dict[str, Any]], rules: list[Rule]) -> list[Problem]:
    """One note per user field map (`--map`): the mapping used, how many files it read, and the
    columns the family's rules read that it leaves empty (those rules cannot match its rows)."""
    out = []
    for m in maps:
        used = sum(1 for r in artifacts if (r.get("log_type") or "").endswith(f"(field map {m.name})"))
        filled = {c.lower() for c in [*m.columns, *m.constants]}
        unfilled: dict[str, int] = {}
        for rule in rules:
            for col in rule_columns(rule).get(m.family, filled) - filled:
                unfilled[col] = unfilled.get(col, 0) + 1
        reason = f"field map used for {used:,} file(s): {m.describe()}"
        if unfilled:
            top = ", ".join(f"{c} ({n})" for c, n in sorted(unfilled.items(), key=lambda kv: (-kv[1], kv[0]))[:8])
            reason += f"; columns rules read that it leaves empty (rules): {top}"
        out.append(Problem(m.origin, None, reason, "read", missed=False))
    return out


def map_warnings(maps: tuple[FieldMap, ...], artifacts: list[dict[str, Any]], rules: list[Rule]) -> list[str]:
    """A warning per user field map that read files but leaves columns empty that rules of its family
    need: those rules could not match, so a clean result does not clear what they look for."""
    out = []
    for m in maps:
        if not any((r.get("log_type") or "").endswith(f"(field map {m.name})") for r in artifacts):
            continue
        filled = {c.lower() for c in [*m.columns, *m.constants]}
        blind = [r for r in rules if rule_columns(r).get(m.family, filled) - filled]
        if blind:
            out.append(
                f"field map {m.name} leaves columns empty that {len(blind)} {family(m.family).title} rule(s) read "
                "(see notes): those rules could not match the mapped rows"
            )
    return out


def missing(coverage: list[FamilyCoverage], is_exchange: bool) -> list[str]:
    if not is_exchange:
        return []
    have = {c.family for c in coverage}
    return [f"no {f.expected}" for f in FAMILIES if f.expected and f.table not in have]


def has_web_logs(coverage: list[FamilyCoverage]) -> bool:
    """Did any family that records web requests have records (the exploitation checks could run)?"""
    web = {f.table for f in FAMILIES if f.web}
    return any(c.family in web for c in coverage)


def timestamp_warnings(coverage: list[FamilyCoverage]) -> list[str]:
    """Records dated far outside the bulk of their family's: forged or broken clocks."""
    out = []
    for c in coverage:
        if c.outliers and c.earliest and c.latest and c.first and c.last:
            far = (c.first - c.earliest).days > 1 or (c.latest - c.last).days > 1
            if far:
                out.append(
                    f"{c.title}: {c.outliers:,} record(s) dated outside the span of the rest "
                    f"({c.earliest:%Y-%m-%d} … {c.latest:%Y-%m-%d} against {c.first:%Y-%m-%d} – {c.last:%Y-%m-%d}): "
                    "suspicious timestamps, not counted in the span"
                )
    return out


def window_warnings(coverage: list[FamilyCoverage], rules: list[Rule]) -> list[str]:
    """One line naming the campaigns whose exploitation window the relevant logs do not reach."""
    by_family = {c.family: c for c in coverage}
    blind = []
    for campaign, (start, end, name) in CAMPAIGN_WINDOWS.items():
        tables = {
            f.table for r in rules if r.campaign == campaign for f in source_families(r.source) if f.kind != "files"
        }
        spans = [by_family[t] for t in tables if t in by_family and by_family[t].first and by_family[t].last]
        if spans and not any(c.first <= end and c.last >= start for c in spans):  # type: ignore[operator]
            blind.append(f"{name} ({start:%Y-%m} – {end:%Y-%m})")
    if not blind:
        return []
    first = min(c.first for c in coverage if c.first)
    last = max(c.last for c in coverage if c.last)
    names = ", ".join(blind[:-1]) + (" or " if len(blind) > 1 else "") + blind[-1]
    return [f"the logs span {first:%Y-%m-%d} – {last:%Y-%m-%d}: they cannot show {names} exploitation"]
