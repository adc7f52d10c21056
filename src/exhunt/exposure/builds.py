"""Exchange builds: parse them, say which ProxyLogon-era families a build was exposed to, and when."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from exhunt.errors import UsageError
from exhunt.exposure.table import BuildTable, CuRow, Cve, Fix, Product, default_table, short

VULNERABLE = "vulnerable"
PATCHED = "patched"
PROBABLY_PATCHED = "probably-patched"
UNKNOWN = "unknown"
STATUSES = (VULNERABLE, PATCHED, PROBABLY_PATCHED, UNKNOWN)
# When CVEs of one family disagree, the family takes the first of these that occurs.
_SEVERITY = (VULNERABLE, UNKNOWN, PROBABLY_PATCHED, PATCHED)

_BUILD_RE = re.compile(r"(\d{1,6})\.(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?", re.ASCII)


@dataclass(frozen=True, order=True)
class Build:
    """An Exchange build. `revision_known` is False for CU-level builds seen remotely (15.1.2176)."""

    major: int
    minor: int
    build: int
    revision: int = 0
    revision_known: bool = True

    def __str__(self) -> str:
        head = f"{self.major}.{self.minor}.{self.build}"
        return f"{head}.{self.revision}" if self.revision_known else head

    @property
    def numbers(self) -> tuple[int, int, int, int]:
        return self.major, self.minor, self.build, self.revision

    def padded(self) -> str:
        """Long form as in log headers: 15.01.2176.009."""
        head = f"{self.major}.{self.minor:02d}.{self.build:04d}"
        return f"{head}.{self.revision:03d}" if self.revision_known else head

    @property
    def product(self) -> str | None:
        found = default_table().product_for(self.numbers)
        return found.name if found else None

    @property
    def cu_name(self) -> str | None:
        row = default_table().row_for(self.numbers) if self.product else None
        return row.name if row else None


def parse_build(text: str, *, allow_partial: bool = False) -> Build:
    """Parse '15.1.2176.9' or '15.01.2176.009' (whitespace trimmed). Raise UsageError otherwise.

    With allow_partial, a CU-level '15.1.2176' (as shown by some OWA pages) is accepted too.
    """
    cleaned = text.strip() if isinstance(text, str) else ""
    found = _BUILD_RE.fullmatch(cleaned)
    if not found or (found.group(4) is None and not allow_partial):
        shown = repr(text)[:60] if isinstance(text, str) else type(text).__name__
        want = "four numbers" if not allow_partial else "three or four numbers"
        raise UsageError(f"malformed Exchange build {shown}: expected {want} like 15.1.2176.9 or 15.01.2176.009")
    major, minor, build, revision = found.groups()
    if revision is None:
        return Build(int(major), int(minor), int(build), 0, revision_known=False)
    return Build(int(major), int(minor), int(build), int(revision))


# ----------------------------------------------------------------------------- assessment results


@dataclass(frozen=True)
class CveStatus:
    cve: str
    family: str
    status: str
    update: str
    kb: str
    fixed_in: str | None
    source: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FamilyStatus:
    family: str
    label: str
    status: str
    cves: tuple[CveStatus, ...]
    note: str = ""

    @property
    def fixed_by(self) -> tuple[str, ...]:
        """'Apr21SU (KB5001779)' for each update this family needs, in table order."""
        seen: dict[str, None] = {}
        for c in self.cves:
            seen.setdefault(f"{c.update} ({c.kb})")
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "label": self.label,
            "status": self.status,
            "fixed_by": list(self.fixed_by),
            "note": self.note,
            "cves": [c.to_dict() for c in self.cves],
        }


@dataclass(frozen=True)
class Assessment:
    build: str
    product: str | None
    cu: str | None
    cu_build: str | None
    cu_source: str | None
    revision_known: bool
    families: tuple[FamilyStatus, ...]
    note: str = ""

    def family(self, key: str) -> FamilyStatus:
        return next(f for f in self.families if f.family == key)

    def status(self, key: str) -> str:
        return self.family(key).status

    def cve(self, cve: str) -> CveStatus:
        return next(c for f in self.families for c in f.cves if c.cve == cve)

    @property
    def vulnerable_families(self) -> tuple[str, ...]:
        return tuple(f.family for f in self.families if f.status == VULNERABLE)

    @property
    def where(self) -> str:
        """'Exchange 2016 CU18', or why the CU is not known."""
        if self.product and self.cu:
            return f"{self.product} {self.cu}"
        if self.product:
            return f"{self.product}, CU not in the build table"
        return "build not in the build table"

    def to_dict(self) -> dict[str, Any]:
        return {
            "build": self.build,
            "product": self.product,
            "cu": self.cu,
            "cu_build": self.cu_build,
            "cu_source": self.cu_source,
            "revision_known": self.revision_known,
            "note": self.note,
            "families": [f.to_dict() for f in self.families],
        }


# ----------------------------------------------------------------------------- assessment logic


def assess(build: Build | str, table: BuildTable | None = None) -> Assessment:
    """Per family and per CVE: vulnerable / patched / probably-patched / unknown, from the table only."""
    if isinstance(build, str):
        build = parse_build(build)
    table = table or default_table()
    product = table.product_for(build.numbers)
    row = table.row_for(build.numbers) if product else None
    families = tuple(_family_status(table, fam.key, fam.label, build, product, row) for fam in table.families)
    return Assessment(
        build=str(build),
        product=product.name if product else None,
        cu=row.name if row else None,
        cu_build=short(row.build) if row else None,
        cu_source=row.source if row else None,
        revision_known=build.revision_known,
        families=families,
        note=_assessment_note(build, product, row),
    )


def unknown_assessment(text: str, note: str, table: BuildTable | None = None) -> Assessment:
    """An all-unknown assessment for something that is not a readable build."""
    table = table or default_table()
    families = tuple(
        FamilyStatus(
            f.key,
            f.label,
            UNKNOWN,
            tuple(_cve(c, table, UNKNOWN, None, note) for c in table.family_cves(f.key)),
        )
        for f in table.families
    )
    return Assessment(text, None, None, None, None, False, families, note)


def _assessment_note(build: Build, product: Product | None, row: CuRow | None) -> str:
    if product is None:
        return f"{build} is not a build of a product in the build table (15.0 = 2013, 15.1 = 2016, 15.2 = 2019)"
    if row is None:
        return f"{build}: no {product.name} CU with build number {build.build} in the build table"
    base = f"{product.name} {row.name} (base build {short(row.build)}, source {row.source})"
    if not build.revision_known:
        base += "; only the CU is known: the security-update level cannot be told from a three-part build"
    return base


def _family_status(
    table: BuildTable, key: str, label: str, build: Build, product: Product | None, row: CuRow | None
) -> FamilyStatus:
    cves = [c for c in table.family_cves(key) if not (product and c.cve in product.not_affected)]
    statuses = tuple(_cve_status(table, c, build, product, row) for c in cves)
    skipped = len(table.family_cves(key)) - len(cves)
    note = f"{product.name} is not affected by {skipped} CVE(s) of this family" if skipped and product else ""
    status = next((s for s in _SEVERITY if any(c.status == s for c in statuses)), UNKNOWN)
    return FamilyStatus(key, label, status, statuses, note)


def _cve(
    cve: Cve, table: BuildTable, status: str, fix: Fix | None, note: str, fixed_in: str | None = None
) -> CveStatus:
    update = table.updates[cve.update]
    return CveStatus(
        cve=cve.cve,
        family=cve.family,
        status=status,
        update=update.name,
        kb=fix.kb if fix else update.kb,
        fixed_in=fixed_in,
        source=fix.source if fix else cve.source,
        note=note,
    )


def _cve_status(table: BuildTable, cve: Cve, build: Build, product: Product | None, row: CuRow | None) -> CveStatus:
    if product is None or row is None:
        return _cve(cve, table, UNKNOWN, None, "build not in the build table")
    fix = row.fix(cve.update)
    if fix is not None:
        return _own_fix_status(table, cve, build, fix)
    return _later_cu_status(table, cve, row)


def _own_fix_status(table: BuildTable, cve: Cve, build: Build, fix: Fix) -> CveStatus:
    where = f"{cve.update} for this CU is {fix.describe()}"
    if not build.revision_known:
        note = f"revision not visible, so the security-update level cannot be told: {where}"
        return _cve(cve, table, UNKNOWN, fix, note, short(fix.build))
    if build.numbers >= fix.high:
        return _cve(cve, table, PATCHED, fix, where, short(fix.build))
    if build.numbers >= fix.low:
        note = f"probably patched, sources disagree: {where}"
        return _cve(cve, table, PROBABLY_PATCHED, fix, note, short(fix.build))
    return _cve(cve, table, VULNERABLE, fix, f"below the fixed build: {where}", short(fix.build))


def _later_cu_status(table: BuildTable, cve: Cve, row: CuRow) -> CveStatus:
    latest = table.latest_fix(row.line, cve.update)
    if latest is None:
        return _cve(cve, table, UNKNOWN, None, f"no {cve.update} data for {row.product} in the build table")
    fixed_row, fix = latest
    if row.build >= fix.high:
        newest = f"{fixed_row.name} {short(fix.high)}"
        note = f"{row.name} came after {cve.update} and includes it (newest {cve.update}: {newest})"
        return _cve(cve, table, PATCHED, None, note)
    note = f"{row.name} never received {cve.update} (out of support); only a later CU with it fixes this"
    return _cve(cve, table, VULNERABLE, None, note)


# ----------------------------------------------------------------------------- exposure windows


class Observation(NamedTuple):
    """A build seen between two times, e.g. a log '#Version' header or an owa/auth/<build> folder."""

    build: str
    first_seen: datetime
    last_seen: datetime
    source: str


@dataclass(frozen=True)
class ExposureWindow:
    build: str
    first_seen: datetime
    last_seen: datetime
    sources: tuple[str, ...]
    observations: int
    assessment: Assessment
    text: str = field(default="")

    @property
    def vulnerable_families(self) -> tuple[str, ...]:
        return self.assessment.vulnerable_families

    def status(self, family: str) -> str:
        return self.assessment.status(family)

    def to_dict(self) -> dict[str, Any]:
        return {
            "build": self.build,
            "product": self.assessment.product,
            "cu": self.assessment.cu,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "sources": list(self.sources),
            "observations": self.observations,
            "statuses": {f.family: f.status for f in self.assessment.families},
            "vulnerable": list(self.vulnerable_families),
            "text": self.text,
            "assessment": self.assessment.to_dict(),
        }


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (Exchange and IIS logs are in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _key_and_assessment(text: str) -> tuple[str, Assessment]:
    try:
        build = parse_build(text, allow_partial=True)
    except UsageError:
        raw = str(text).strip()
        return raw, unknown_assessment(raw, "not a readable Exchange build")
    return str(build), assess(build)


def exposure_windows(
    observations: Iterable[Observation | tuple[str, datetime, datetime, str]],
) -> list[ExposureWindow]:
    """Merge time-ordered, contiguous observations of one build into windows and assess each.

    Pure: no I/O. Observations of different builds that overlap in time give overlapping windows.
    """
    items = []
    for raw in observations:
        obs = Observation(*raw)
        first, last = sorted((_utc(obs.first_seen), _utc(obs.last_seen)))
        items.append((first, last, obs.build, obs.source))
    items.sort(key=lambda item: (item[0], item[1]))
    groups: list[dict[str, Any]] = []
    cache: dict[str, tuple[str, Assessment]] = {}
    for first, last, text, source in items:
        if text not in cache:
            cache[text] = _key_and_assessment(text)
        key, assessment = cache[text]
        if groups and groups[-1]["key"] == key:
            group = groups[-1]
            group["last"] = max(group["last"], last)
            group["count"] += 1
            group["sources"].setdefault(source)
            continue
        groups.append(
            {"key": key, "first": first, "last": last, "count": 1, "sources": {source: None}, "a": assessment}
        )
    return [_window(g) for g in groups]


def _window(group: dict[str, Any]) -> ExposureWindow:
    assessment: Assessment = group["a"]
    text = window_text(group["key"], assessment, group["first"], group["last"])
    return ExposureWindow(
        build=group["key"],
        first_seen=group["first"],
        last_seen=group["last"],
        sources=tuple(group["sources"]),
        observations=group["count"],
        assessment=assessment,
        text=text,
    )


def _join(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def window_text(build: str, assessment: Assessment, first: datetime, last: datetime) -> str:
    """'ran 15.1.2106.2 (Exchange 2016 CU18), vulnerable to ProxyLogon, ..., from at least A until B'."""
    by_status: dict[str, list[str]] = {s: [] for s in STATUSES}
    for fam in assessment.families:
        by_status[fam.status].append(fam.label)
    parts = []
    if by_status[VULNERABLE]:
        parts.append("vulnerable to " + _join(by_status[VULNERABLE]))
    if by_status[PROBABLY_PATCHED]:
        parts.append("probably patched for " + _join(by_status[PROBABLY_PATCHED]) + " (sources disagree)")
    if by_status[PATCHED]:
        parts.append("patched for " + _join(by_status[PATCHED]))
    if by_status[UNKNOWN]:
        parts.append("status unknown for " + _join(by_status[UNKNOWN]))
    span = f"from at least {first:%Y-%m-%d} until {last:%Y-%m-%d}"
    return f"ran {build} ({assessment.where}), {'; '.join(parts)}, {span}"
