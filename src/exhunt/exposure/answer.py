"""The exposure answer for one build on one day: support, missing updates, CVEs by update, conditions.

Uses HealthChecker's rule for "patched" (see builds.toml) over every update in the table, and only what
had been published by `as_of` (default: the day the table was last checked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from exhunt.exposure.builds import Build, parse_build
from exhunt.exposure.config_state import ConfigState
from exhunt.exposure.table import BuildTable, CuRow, Cve, Product, Update, default_table, short

NOT_AFFECTED = "not-affected"
INCLUDED = "included"
MISSING = "missing"
PROBABLY = "probably-included"
UNKNOWN = "unknown"

EXPOSED = "exposed"  # the fix is missing
CONDITIONAL = "fixed-only-if"  # the update is there, the configuration decides and is not known
CONFIG_FIXED = "fixed-by-configuration"  # the update is there and the configuration read completes the fix
CONFIG_MISSING = "exposed-by-configuration"  # the update is there but the configuration read undoes it
NO_FIX_YET = "no-fix-released"  # published by as_of, but the update came later


@dataclass(frozen=True)
class CveAnswer:
    cve: str
    update: str
    state: str
    published: str
    known_exploited: str | None  # date CISA added it to KEV, when known on as_of
    condition: str | None
    condition_text: str
    detail: str
    source: str

    @property
    def exposed(self) -> bool:
        return self.state in (EXPOSED, CONDITIONAL, CONFIG_MISSING, NO_FIX_YET)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class UpdateAnswer:
    update: str
    released: str
    kb: str
    kind: str
    status: str
    esu_only: bool
    fixed_build: str | None
    cves: tuple[CveAnswer, ...]
    cves_listed: bool
    source: str

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "cves"}
        return {**data, "cves": [c.cve for c in self.cves]}


@dataclass(frozen=True)
class Support:
    status: str  # in-support | out-of-support | unknown
    since: str | None
    text: str
    esu_only: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Answer:
    build: str
    product: str | None
    cu: str | None
    cu_released: str | None
    as_of: str
    table_checked: str
    verdict: str  # exposed | no-known-exposure | newer-than-table | unknown
    headline: str
    support: Support
    missing: tuple[UpdateAnswer, ...]
    cves: tuple[CveAnswer, ...]
    notes: tuple[str, ...] = ()
    configuration: dict[str, Any] = field(default_factory=dict)

    @property
    def exposed(self) -> tuple[CveAnswer, ...]:
        return tuple(c for c in self.cves if c.exposed)

    @property
    def known_exploited(self) -> tuple[CveAnswer, ...]:
        return tuple(c for c in self.exposed if c.known_exploited)

    def cve(self, cve: str) -> CveAnswer:
        return next(c for c in self.cves if c.cve == cve)

    def exposed_by_update(self) -> dict[str, list[CveAnswer]]:
        grouped: dict[str, list[CveAnswer]] = {}
        for c in self.exposed:
            grouped.setdefault(c.update or "(no Exchange update)", []).append(c)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        return {
            "build": self.build,
            "product": self.product,
            "cu": self.cu,
            "cu_released": self.cu_released,
            "as_of": self.as_of,
            "table_checked": self.table_checked,
            "verdict": self.verdict,
            "headline": self.headline,
            "support": self.support.to_dict(),
            "missing_updates": [u.to_dict() for u in self.missing],
            "known_exploited": [c.cve for c in self.known_exploited],
            "exposed": [c.to_dict() for c in self.exposed],
            "exposed_by_update": {k: [c.cve for c in v] for k, v in self.exposed_by_update().items()},
            "fixed_only_if": [c.to_dict() for c in self.cves if c.condition and c.state != EXPOSED],
            "notes": list(self.notes),
            "configuration": self.configuration,
        }


# ----------------------------------------------------------------------------- update status


def update_status(table: BuildTable, product: Product, build: Build, update: str, as_of: str) -> tuple[str, str | None]:
    """HealthChecker's rule for one update: (status, fixed build of the build's own CU or newest)."""
    pairs = [(r, f) for r in table.product_rows(product.name) if (f := r.fix(update)) and _known(r, as_of)]
    if not pairs:
        return NOT_AFFECTED, None
    newest_row, newest = max(pairs, key=lambda rf: rf[1].high)
    row = table.row_for(build.numbers)
    own = row.fix(update) if row and row.product == product.name else None
    if not build.revision_known:
        base = row.build if row else build.numbers
        if base >= newest.high:
            return INCLUDED, short(newest.high)
        return (UNKNOWN if own else MISSING), short(own.build if own else newest.high)
    if build.numbers >= newest.high:
        return INCLUDED, short(newest.high)
    if own is None:
        return MISSING, short(newest.high) if newest_row else None
    if build.numbers >= own.high:
        return INCLUDED, short(own.high)
    if build.numbers >= own.low:
        return PROBABLY, short(own.high)
    return MISSING, short(own.build)


def _known(row: CuRow, as_of: str) -> bool:
    return row.released is None or row.released <= as_of


# ----------------------------------------------------------------------------- the answer


def answer(
    build: Build | str,
    as_of: str | date | None = None,
    config: ConfigState | None = None,
    table: BuildTable | None = None,
) -> Answer:
    """Everything the table says about `build` as known on `as_of` (ISO date; default: the table's date)."""
    table = table or default_table()
    if isinstance(build, str):
        build = parse_build(build, allow_partial=True)
    day = _day(as_of, table)
    product = table.product_for(build.numbers)
    config = config or ConfigState()
    if product is None:
        return _unknown(build, day, table, f"{build} is not a build of a product in the build table")
    row = table.row_for(build.numbers)
    support = support_status(product, day, table)
    if row is None or row.product != product.name:
        return _unknown_cu(build, product, day, table, support)
    updates = [u for u in sorted(table.updates.values(), key=lambda u: (u.released, u.name)) if u.released <= day]
    missing: list[UpdateAnswer] = []
    cves: list[CveAnswer] = []
    statuses: dict[str, tuple[str, str | None]] = {}
    for update in updates:
        status, fixed = update_status(table, product, build, update.name, day)
        statuses[update.name] = (status, fixed)
        if status in (MISSING, UNKNOWN, PROBABLY):
            esu = bool(product.support_end and update.released > product.support_end)
            missing.append(
                UpdateAnswer(
                    update.name, update.released, _kb(table, row, update), update.kind, status, esu, fixed,
                    (), update.cves_listed, update.source,
                )
            )  # fmt: skip
    for cve in table.cves:
        if not _applies(cve, product, table, day):
            continue
        cves.append(_cve_answer(table, cve, product, statuses, day, config))
    by_update: dict[str, tuple[CveAnswer, ...]] = {}
    for c in cves:
        by_update[c.update] = (*by_update.get(c.update, ()), c)
    missing = [_with_cves(u, by_update.get(u.update, ())) for u in missing]
    missing.sort(key=lambda u: (u.released, u.update), reverse=True)
    cves.sort(key=lambda c: (c.known_exploited is None, c.update == "", c.published, c.cve))
    notes = _notes(table, product, row, build, day, updates)
    newer = _newer_than_table(table, row, build)
    verdict, headline = _verdict(build, product, row, cves, missing, newer, table)
    if newer:
        notes = (*notes, newer)
    unassessed = _unassessed(product, day)
    if unassessed:
        notes = (*notes, unassessed)
        if verdict == "no-known-exposure":
            verdict, headline = "out-of-support", f"{build} ({product.name} {row.name}): {unassessed}"
    if day > table.checked:
        notes = (*notes, f"{day} is after the table's date ({table.checked}): later updates and CVEs are unknown")
    if row.released and day < row.released:
        notes = (*notes, f"{product.name} {row.name} was released on {row.released}, after {day}")
    return Answer(
        build=str(build),
        product=product.name,
        cu=row.name,
        cu_released=row.released,
        as_of=day,
        table_checked=table.checked,
        verdict=verdict,
        headline=headline,
        support=support,
        missing=tuple(missing),
        cves=tuple(cves),
        notes=notes,
        configuration=config.to_dict(),
    )


def _with_cves(update: UpdateAnswer, cves: tuple[CveAnswer, ...]) -> UpdateAnswer:
    return UpdateAnswer(**{**update.__dict__, "cves": tuple(c for c in cves if c.exposed)})


def _day(as_of: str | date | None, table: BuildTable) -> str:
    if as_of is None:
        return table.checked
    return as_of.isoformat() if isinstance(as_of, date) else date.fromisoformat(str(as_of).strip()).isoformat()


def _applies(cve: Cve, product: Product, table: BuildTable, day: str) -> bool:
    if cve.products and product.key not in cve.products:
        return False
    if cve.cve in product.not_affected:
        return False
    return _published(cve, table) <= day


def _published(cve: Cve, table: BuildTable) -> str:
    if cve.published:
        return cve.published
    update = table.updates.get(cve.update)
    return update.released if update else "0000-00-00"


def _kb(table: BuildTable, row: CuRow, update: Update) -> str:
    own = row.fix(update.name)
    if own and own.kb:
        return own.kb
    kbs = {f.kb for r in table.product_rows(row.product) if (f := r.fix(update.name)) and f.kb}
    return update.kb or (next(iter(kbs)) if len(kbs) == 1 else "")


def _cve_answer(
    table: BuildTable,
    cve: Cve,
    product: Product,
    statuses: dict[str, tuple[str, str | None]],
    day: str,
    config: ConfigState,
) -> CveAnswer:
    kev = table.kev.get(cve.cve)
    kev_date = kev.added if kev and kev.added <= day else None
    cond = table.conditions.get(cve.condition or "")
    base = {
        "cve": cve.cve,
        "update": cve.update,
        "published": _published(cve, table),
        "known_exploited": kev_date,
        "condition": cve.condition,
        "condition_text": cond.text if cond else "",
        "source": cve.source,
    }
    if cve.update and cve.update not in statuses:
        return CveAnswer(state=NO_FIX_YET, detail=f"no update fixed it yet on {day} ({cve.note})".strip(), **base)
    if cve.update:
        status, fixed = statuses[cve.update]
        if status in (MISSING, UNKNOWN, PROBABLY):
            detail = f"{cve.update} missing" + (f" (fixed in {fixed})" if fixed else "")
            if status == UNKNOWN:
                detail = f"{cve.update} cannot be told from a three-part build"
            if status == PROBABLY:
                detail = f"{cve.update} probably included, sources disagree (fixed in {fixed})"
            return CveAnswer(state=EXPOSED, detail=detail, **base)
    if not cve.condition:
        return CveAnswer(state=INCLUDED, detail=f"{cve.update} included", **base)
    judged, why = config.judge(cve, table)
    if judged is True:
        return CveAnswer(state=CONFIG_FIXED, detail=why, **base)
    if judged is False:
        return CveAnswer(state=CONFIG_MISSING, detail=why, **base)
    return CveAnswer(state=CONDITIONAL, detail=why or "configuration not in the collection", **base)


# ----------------------------------------------------------------------------- support and verdict


def support_status(product: Product, day: str, table: BuildTable | None = None) -> Support:
    """In support, out of support since DATE (with ESU), or unknown."""
    if not product.support_end:
        return Support("in-support", None, f"{product.name}: in support (Modern Lifecycle)", False)
    if day < product.support_end:
        return Support("in-support", None, f"{product.name}: in support until {product.support_end}", False)
    text = f"{product.name}: out of support since {product.support_end}"
    if product.esu_until:
        text += (
            f"; updates released after that date went only to Extended Security Update customers"
            f" (ESU through {product.esu_until})"
        )
    return Support("out-of-support", product.support_end, text, bool(product.esu_until))


def _notes(
    table: BuildTable, product: Product, row: CuRow, build: Build, day: str, updates: list[Update]
) -> tuple[str, ...]:
    notes = []
    if not build.revision_known:
        notes.append("only the CU is known: which of its updates are installed cannot be told from a three-part build")
    own = [table.updates[f.update].released for f in row.fixes if f.update in table.updates]
    own = [d for d in own if d <= day]
    others = [u.released for u in updates if update_status(table, product, build, u.name, day)[0] == MISSING]
    last = max(own) if own else row.released
    if others and last and max(others) > last:
        notes.append(f"{product.name} {row.name} got no security update after {last}; only a later CU gets newer ones")
    return tuple(notes)


def _unassessed(product: Product, day: str) -> str:
    """Out of support with no update program left: Microsoft no longer says which new CVEs affect it."""
    if not product.support_end or day < product.support_end:
        return ""
    if product.esu_until and day[:7] <= product.esu_until:
        return ""
    return (
        f"out of support since {product.support_end}: flaws found later are not assessed for it and no update "
        "fixes them, so no known exposure does not mean safe"
    )


def _newer_than_table(table: BuildTable, row: CuRow, build: Build) -> str:
    known = [f.high for f in row.fixes] + [row.build]
    if build.revision_known and build.numbers > max(known):
        return (
            f"{build} is newer than any {row.product} {row.name} build in the table (checked {table.checked}); "
            "the table may be out of date, so updates after it cannot be judged"
        )
    return ""


def _verdict(
    build: Build,
    product: Product,
    row: CuRow,
    cves: list[CveAnswer],
    missing: list[UpdateAnswer],
    newer: str,
    table: BuildTable,
) -> tuple[str, str]:
    exposed = [c for c in cves if c.exposed]
    hard = [c for c in exposed if c.state != CONDITIONAL]
    where = f"{product.name} {row.name}"
    if exposed and not build.revision_known:
        kev = sum(1 for c in exposed if c.known_exploited)
        return "su-level-unknown", (
            f"{build} ({where}): the security-update level cannot be told from a three-part build; up to "
            f"{len(exposed)} CVE(s) open ({kev} known exploited) unless the CU's updates are installed"
        )
    if exposed:
        kev = sum(1 for c in exposed if c.known_exploited)
        text = (
            f"{build} ({where}): {len(hard)} CVE(s) unfixed, {len(exposed) - len(hard)} fixed only if configured, "
            f"{kev} known exploited; {len(missing)} update(s) missing"
        )
        return ("exposed" if hard or missing else "configuration-dependent"), text
    if newer:
        return (
            "newer-than-table",
            f"{build} ({where}): newer than the build table of {table.checked}; may be out of date",
        )
    if missing:
        return "exposed", f"{build} ({where}): {len(missing)} update(s) missing"
    return "no-known-exposure", f"{build} ({where}): no exposure known to the table of {table.checked}"


def _unknown(build: Build, day: str, table: BuildTable, why: str) -> Answer:
    support = Support("unknown", None, why, False)
    return Answer(str(build), None, None, None, day, table.checked, "unknown", why, support, (), (), (why,))


def _unknown_cu(build: Build, product: Product, day: str, table: BuildTable, support: Support) -> Answer:
    rows = table.product_rows(product.name)
    newest = max(rows, key=lambda r: r.build) if rows else None
    if newest and build.numbers[2] > newest.build[2]:
        why = (
            f"{build} is newer than the newest {product.name} CU in the table ({newest.name}, {short(newest.build)}); "
            f"the table (checked {table.checked}) may be out of date"
        )
        return Answer(
            str(build), product.name, None, None, day, table.checked, "newer-than-table", why, support, (), (), (why,)
        )
    why = f"{build}: no {product.name} CU with build number {build.numbers[2]} in the table"
    return Answer(str(build), product.name, None, None, day, table.checked, "unknown", why, support, (), (), (why,))
