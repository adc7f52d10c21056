"""The Exchange build table (builds.toml) as typed, validated data."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

Nums = tuple[int, int, int, int]


def nums(text: str) -> Nums:
    """'15.01.2176.009' -> (15, 1, 2176, 9). Only for the table's own, trusted strings."""
    parts = tuple(int(p) for p in text.strip().split("."))
    if len(parts) != 4:
        raise ValueError(f"build {text!r} in the build table does not have four parts")
    return parts  # type: ignore[return-value]


def short(n: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in n)


@dataclass(frozen=True)
class Update:
    name: str
    kb: str
    released: str
    source: str
    cves_listed: bool = True

    @property
    def kind(self) -> str:
        """'SU' (security update) or 'HU' (hotfix update), from the name."""
        return "HU" if "HU" in self.name else "SU"


@dataclass(frozen=True)
class Family:
    key: str
    label: str


@dataclass(frozen=True)
class Cve:
    """One CVE: the update that fixes it ("" = no Exchange update does) and what else the fix needs."""

    cve: str
    family: str
    update: str
    source: str
    products: tuple[str, ...] = ()
    published: str | None = None
    condition: str | None = None
    overrides: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Condition:
    key: str
    text: str
    source: str


@dataclass(frozen=True)
class KevEntry:
    cve: str
    added: str
    source: str


@dataclass(frozen=True)
class EpExpectation:
    """Extended Protection (IIS tokenChecking) expected on one virtual directory, front and back end."""

    vdir: str
    front: str | None
    back: str | None


@dataclass(frozen=True)
class Product:
    name: str
    prefix: tuple[int, ...]
    min_build: int
    source: str
    not_affected: frozenset[str]
    key: str = ""
    support_end: str | None = None
    esu_until: str | None = None

    def matches(self, n: tuple[int, ...]) -> bool:
        return n[: len(self.prefix)] == self.prefix and n[2] >= self.min_build


@dataclass(frozen=True)
class Fix:
    """First fixed build of one update for one CU; `alt_*` is a disagreeing second source."""

    update: str
    kb: str
    build: Nums
    source: str
    alt_build: Nums | None = None
    alt_source: str | None = None

    @property
    def low(self) -> Nums:
        return min(self.build, self.alt_build) if self.alt_build else self.build

    @property
    def high(self) -> Nums:
        return max(self.build, self.alt_build) if self.alt_build else self.build

    def describe(self) -> str:
        text = f"{short(self.build)} ({self.source})"
        if self.alt_build:
            text += f" / {short(self.alt_build)} ({self.alt_source})"
        return text


@dataclass(frozen=True)
class CuRow:
    product: str
    name: str
    build: Nums
    source: str
    fixes: tuple[Fix, ...]
    released: str | None = None

    @property
    def line(self) -> tuple[int, int]:
        return self.build[0], self.build[1]

    @property
    def key(self) -> tuple[int, int, int]:
        return self.build[0], self.build[1], self.build[2]

    def fix(self, update: str) -> Fix | None:
        return next((f for f in self.fixes if f.update == update), None)


@dataclass(frozen=True)
class BuildTable:
    sources: dict[str, str]
    updates: dict[str, Update]
    families: tuple[Family, ...]
    cves: tuple[Cve, ...]
    products: tuple[Product, ...]
    rows: tuple[CuRow, ...]
    checked: str = ""
    newest_update: str = ""
    conditions: dict[str, Condition] = field(default_factory=dict)
    kev: dict[str, KevEntry] = field(default_factory=dict)
    kev_catalogue: str = ""
    kev_checked: str = ""
    extended_protection: tuple[EpExpectation, ...] = ()

    def product_named(self, name: str) -> Product | None:
        return next((p for p in self.products if p.name == name), None)

    def product_rows(self, product: str) -> tuple[CuRow, ...]:
        return tuple(r for r in self.rows if r.product == product)

    def cve(self, cve: str) -> Cve | None:
        return next((c for c in self.cves if c.cve == cve), None)

    def product_for(self, n: tuple[int, ...]) -> Product | None:
        found = [p for p in self.products if p.matches(n)]
        return max(found, key=lambda p: p.min_build) if found else None

    def row_for(self, n: tuple[int, ...]) -> CuRow | None:
        return next((r for r in self.rows if r.key == tuple(n[:3])), None)

    def latest_fix(self, line: tuple[int, int], update: str) -> tuple[CuRow, Fix] | None:
        """The newest fixed build of `update` in a product line (e.g. 15.1), with its CU."""
        pairs = [(r, f) for r in self.rows if r.line == line and (f := r.fix(update))]
        return max(pairs, key=lambda rf: rf[1].high) if pairs else None

    def family_cves(self, family: str) -> tuple[Cve, ...]:
        return tuple(c for c in self.cves if c.family == family)


def _fix(update: str, raw: dict[str, Any], updates: dict[str, Update]) -> Fix:
    alt = raw.get("alt_build")
    return Fix(
        update=update,
        kb=raw.get("kb", updates[update].kb),
        build=nums(raw["build"]),
        source=raw["source"],
        alt_build=nums(alt) if alt else None,
        alt_source=raw.get("alt_source"),
    )


def _row(raw: dict[str, Any], updates: dict[str, Update]) -> CuRow:
    fixes = tuple(_fix(name, fix, updates) for name, fix in raw.get("fixes", {}).items())
    return CuRow(raw["product"], raw["name"], nums(raw["build"]), raw["source"], fixes, raw.get("released"))


def _product(raw: dict[str, Any]) -> Product:
    prefix = tuple(int(p) for p in str(raw["prefix"]).split("."))
    return Product(
        raw["name"],
        prefix,
        int(raw.get("min_build", 0)),
        raw["source"],
        frozenset(raw.get("not_affected", ())),
        raw.get("key", ""),
        raw.get("support_end"),
        raw.get("esu_until"),
    )


def _cve_entry(cve: str, raw: dict[str, Any]) -> Cve:
    return Cve(
        cve,
        raw.get("family", ""),
        raw["update"],
        raw["source"],
        tuple(raw.get("products", ())),
        raw.get("published"),
        raw.get("condition"),
        tuple(raw.get("overrides", ())),
        raw.get("note", ""),
    )


def _kev(data: dict[str, Any]) -> dict[str, KevEntry]:
    kev = data.get("kev", {})
    found = {cve: KevEntry(cve, added, kev.get("source", "")) for cve, added in kev.get("added", {}).items()}
    for cve, later in kev.get("later", {}).items():
        found[cve] = KevEntry(cve, later["added"], later["source"])
    return found


def parse_table(data: dict[str, Any]) -> BuildTable:
    updates = {
        name: Update(name, u["kb"], u["released"], u["source"], not u.get("cves_unlisted", False))
        for name, u in data["updates"].items()
    }
    table = BuildTable(
        sources=dict(data["sources"]),
        updates=updates,
        families=tuple(Family(f["key"], f["label"]) for f in data["families"]),
        cves=tuple(_cve_entry(cve, c) for cve, c in data["cves"].items()),
        products=tuple(_product(p) for p in data["products"]),
        rows=tuple(_row(r, updates) for r in data["cu"]),
        checked=data.get("meta", {}).get("checked", ""),
        newest_update=data.get("meta", {}).get("newest_update", ""),
        conditions={k: Condition(k, c["text"], c["source"]) for k, c in data.get("conditions", {}).items()},
        kev=_kev(data),
        kev_catalogue=data.get("kev", {}).get("catalogue", ""),
        kev_checked=data.get("kev", {}).get("checked", ""),
        extended_protection=tuple(
            EpExpectation(e["vdir"], e.get("front"), e.get("back")) for e in data.get("extended_protection", ())
        ),
    )
    validate(table)
    return table


def validate(table: BuildTable) -> None:
    """Raise ValueError if the table contradicts itself (unknown keys, misplaced fixed builds)."""
    problems: list[str] = []
    known = set(table.sources)
    families = {f.key for f in table.families}
    for item in (*table.products, *table.updates.values()):
        if item.source not in known:
            problems.append(f"{item.name}: unknown source {item.source!r}")
    product_keys = {p.key for p in table.products}
    for cve in table.cves:
        if (cve.family and cve.family not in families) or (cve.update and cve.update not in table.updates):
            problems.append(f"{cve.cve}: unknown family or update")
        if cve.source not in known or (cve.condition and cve.condition not in table.conditions):
            problems.append(f"{cve.cve}: unknown source or condition")
        if not set(cve.products) <= product_keys:
            problems.append(f"{cve.cve}: unknown product key")
    for entry in (*table.conditions.values(), *table.kev.values()):
        if entry.source not in known:
            problems.append(f"{entry}: unknown source")
    for row in table.rows:
        label = f"{row.product} {row.name}"
        if row.source not in known or not any(p.name == row.product for p in table.products):
            problems.append(f"{label}: unknown source or product")
        for fix in row.fixes:
            if fix.update not in table.updates or fix.source not in known:
                problems.append(f"{label} {fix.update}: unknown update or source")
            if fix.alt_source and fix.alt_source not in known:
                problems.append(f"{label} {fix.update}: unknown alt_source")
            for b in filter(None, (fix.build, fix.alt_build)):
                if b[:3] != row.build[:3] or b < row.build:
                    problems.append(f"{label} {fix.update}: {short(b)} is not a later build of this CU")
    keys = [r.key for r in table.rows]
    if len(keys) != len(set(keys)):
        problems.append("two CU rows share a build number")
    if problems:
        raise ValueError("build table: " + "; ".join(problems))


def load_table(path: Path | None = None) -> BuildTable:
    if path is None:
        text = resources.files("exhunt.exposure").joinpath("builds.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return parse_table(tomllib.loads(text))


@functools.cache
def default_table() -> BuildTable:
    return load_table()
