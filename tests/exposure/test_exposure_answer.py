"""The exposure answer against expectations restated by hand from the sources, not from the code.

Sources: microsoft/CSS-Exchange Shared/Get-ExchangeBuildVersionInformation.ps1 (fixed build of every SU per
CU), Diagnostics/HealthChecker/Analyzer/Security/Invoke-AnalyzerSecurityCveCheck.ps1 ($suNameDictionary and
the override list) with the configuration analyzers beside it, microsoft/Get-ExchangeBuildNumber
ExchangeBuildNumbers.csv (dates, 2026 updates), the June 2026 release summary (Jun26SU CVEs) and the CISA
KEV catalogue. The rule for "patched" is HealthChecker's (Shared/CompareExchangeBuildLevel.ps1).
"""

from __future__ import annotations

import pytest

from exhunt.exposure.answer import CONDITIONAL, EXPOSED, answer
from exhunt.exposure.table import default_table

E13, E16, E19, SE = "2013", "2016", "2019", "SE"
ALL3 = (E13, E16, E19)
NEW = (E16, E19, SE)

# Update -> [(CVEs, products)], restated from $suNameDictionary (and the config analyzers for the CVEs whose
# update only makes the fix possible). Only updates from July 2019 on are needed by the builds below.
UPDATE_CVES: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "Jul19SU": [(("CVE-2019-1084", "CVE-2019-1137"), ALL3), (("CVE-2019-1136",), (E13, E16))],
    "Nov19SU": [(("CVE-2019-1373",), ALL3)],
    "Feb20SU": [(("CVE-2020-0688", "CVE-2020-0692"), ALL3)],
    "Mar20SU": [(("CVE-2020-0903",), (E16, E19))],
    "Sep20SU": [(("CVE-2020-16875",), (E16, E19))],
    "Oct20SU": [(("CVE-2020-16969",), ALL3)],
    "Nov20SU": [(("CVE-2020-17083", "CVE-2020-17084", "CVE-2020-17085"), ALL3)],
    "Dec20SU": [
        (("CVE-2020-17117", "CVE-2020-17132", "CVE-2020-17142", "CVE-2020-17143"), ALL3),
        (("CVE-2020-17141",), (E16, E19)),
    ],
    "Feb21SU": [(("CVE-2021-24085",), (E16, E19))],
    "Mar21SU": [
        (
            (
                "CVE-2021-26855",
                "CVE-2021-26857",
                "CVE-2021-26858",
                "CVE-2021-27065",
                "CVE-2021-26412",
                "CVE-2021-27078",
                "CVE-2021-26854",
            ),
            ALL3,
        )
    ],
    # ProxyShell's 34473/34523 were fixed by the April 2021 updates (Microsoft's CVE records).
    "Apr21SU": [
        (("CVE-2021-28480", "CVE-2021-28481", "CVE-2021-28482", "CVE-2021-28483"), ALL3),
        (("CVE-2021-34473", "CVE-2021-34523"), ALL3),
    ],
    "May21SU": [(("CVE-2021-31195", "CVE-2021-31198", "CVE-2021-31207", "CVE-2021-31209"), ALL3)],
    "Jul21SU": [(("CVE-2021-31206", "CVE-2021-31196", "CVE-2021-33768"), ALL3)],
    "Oct21SU": [(("CVE-2021-26427",), ALL3), (("CVE-2021-41350", "CVE-2021-41348", "CVE-2021-34453"), (E16, E19))],
    "Nov21SU": [(("CVE-2021-42305", "CVE-2021-41349"), ALL3), (("CVE-2021-42321",), (E16, E19))],
    "Jan22SU": [(("CVE-2022-21855", "CVE-2022-21846", "CVE-2022-21969"), ALL3)],
    "Mar22SU": [(("CVE-2022-23277",), ALL3), (("CVE-2022-24463",), (E16, E19))],
    "Aug22SU": [
        (("CVE-2022-34692",), (E16, E19)),
        (("CVE-2022-24516", "CVE-2022-21979", "CVE-2022-21980", "CVE-2022-24477", "CVE-2022-30134"), ALL3),
        (("CVE-2024-21410",), NEW),  # Extended Protection needs Aug22SU
    ],
    "Nov22SU": [
        (("CVE-2022-41040", "CVE-2022-41082", "CVE-2022-41079", "CVE-2022-41078", "CVE-2022-41080"), ALL3),
        (("CVE-2022-41123",), (E16, E19)),
    ],
    "Jan23SU": [
        (("CVE-2023-21762",), ALL3),
        (("CVE-2023-21745", "CVE-2023-21761", "CVE-2023-21763", "CVE-2023-21764"), (E16, E19)),
    ],
    "Feb23SU": [(("CVE-2023-21529", "CVE-2023-21706", "CVE-2023-21707"), ALL3), (("CVE-2023-21710",), (E16, E19))],
    "Mar23SU": [(("CVE-2023-21707",), ALL3)],
    "Jun23SU": [(("CVE-2023-28310", "CVE-2023-32031"), (E16, E19))],
    "Aug23SU": [
        (
            (
                "CVE-2023-38181",
                "CVE-2023-38182",
                "CVE-2023-38185",
                "CVE-2023-35368",
                "CVE-2023-35388",
                "CVE-2023-36777",
                "CVE-2023-36757",
                "CVE-2023-36756",
                "CVE-2023-36745",
                "CVE-2023-36744",
            ),
            (E16, E19),
        )
    ],
    "Oct23SU": [(("CVE-2023-36778",), (E16, E19))],
    "Nov23SU": [(("CVE-2023-36050", "CVE-2023-36039", "CVE-2023-36035", "CVE-2023-36439"), (E16, E19))],
    "Mar24SU": [(("CVE-2024-26198",), (E16, E19))],
    "Nov24SUv2": [(("CVE-2024-49040",), (E16, E19))],
    "Apr25HU": [(("CVE-2025-53786",), (E16, E19))],
    "Aug25SU": [(("CVE-2025-25005", "CVE-2025-25006", "CVE-2025-25007", "CVE-2025-33051"), NEW)],
    "Oct25SU": [(("CVE-2025-59249", "CVE-2025-53782", "CVE-2025-59248"), NEW)],
    "Dec25SU": [(("CVE-2025-64666", "CVE-2025-64667"), NEW)],
    "Feb26SU": [(("CVE-2026-21527",), NEW)],
    "Jun26SU": [
        (
            (
                "CVE-2026-42897",
                "CVE-2026-47631",
                "CVE-2026-45583",
                "CVE-2026-45504",
                "CVE-2026-45503",
                "CVE-2026-45502",
                "CVE-2026-45501",
                "CVE-2026-45500",
            ),
            NEW,
        )
    ],
}

# Fixed builds per CU, in release order (CSS-BUILD dictionary; 2026 entries from ExchangeBuildNumbers.csv).
E19_CU15 = [("Apr25HU", 24), ("May25HU", 26), ("Aug25SU", 36), ("Sep25HU", 37), ("Oct25SU", 39), ("Dec25SU", 42),
            ("Feb26SU", 43), ("Jun26SU", 46), ("Jul26SU", 48), ("Aug26SU", 49)]  # fmt: skip
E19_CU14 = [("Mar24SU", 9), ("Apr24HU", 11), ("Nov24SU", 13), ("Nov24SUv2", 14), ("Apr25HU", 25), ("May25HU", 27),
            ("Aug25SU", 33), ("Sep25HU", 34), ("Oct25SU", 36), ("Dec25SU", 37), ("Feb26SU", 39), ("Jun26SU", 41),
            ("Jul26SU", 43), ("Aug26SU", 44)]  # fmt: skip
E19_CU13 = [("Jun23SU", 16), ("Aug23SU", 23), ("Aug23SUv2", 25), ("Oct23SU", 27), ("Nov23SU", 28), ("Mar24SU", 32),
            ("Apr24HU", 34), ("Nov24SU", 38), ("Nov24SUv2", 39)]  # fmt: skip
E19_CU12 = [("May22SU", 9), ("Aug22SU", 12), ("Oct22SU", 15), ("Nov22SU", 20), ("Jan23SU", 21), ("Feb23SU", 25),
            ("Mar23SU", 26), ("Jun23SU", 30), ("Aug23SU", 36), ("Aug23SUv2", 37), ("Oct23SU", 39), ("Nov23SU", 40)]  # fmt: skip
E16_CU23 = [("May22SU", 9), ("Aug22SU", 12), ("Oct22SU", 13), ("Nov22SU", 16), ("Jan23SU", 17), ("Feb23SU", 21),
            ("Mar23SU", 23), ("Jun23SU", 27), ("Aug23SU", 31), ("Aug23SUv2", 32), ("Oct23SU", 34), ("Nov23SU", 35),
            ("Mar24SU", 37), ("Apr24HU", 39), ("Nov24SU", 43), ("Nov24SUv2", 44), ("Apr25HU", 55), ("May25HU", 57),
            ("Aug25SU", 58), ("Sep25HU", 59), ("Oct25SU", 61), ("Dec25SU", 63), ("Feb26SU", 66), ("Jun26SU", 69),
            ("Jul26SU", 71), ("Aug26SU", 72)]  # fmt: skip
E13_CU23 = [("Jul19SU", 3), ("Nov19SU", 4), ("Feb20SU", 6), ("Oct20SU", 7), ("Nov20SU", 8), ("Dec20SU", 10),
            ("Mar21SU", 12), ("Apr21SU", 15), ("May21SU", 18), ("Jul21SU", 23), ("Oct21SU", 24), ("Nov21SU", 26),
            ("Jan22SU", 28), ("Mar22SU", 33), ("May22SU", 36), ("Aug22SU", 40), ("Oct22SU", 42), ("Nov22SU", 44),
            ("Jan23SU", 45), ("Feb23SU", 47), ("Mar23SU", 48)]  # fmt: skip
SE_RTM = [("Aug25SU", 20), ("Sep25HU", 27), ("Oct25SU", 29), ("Dec25SU", 35), ("Feb26SU", 37), ("May26HU", 41),
          ("Jun26SU", 43), ("Jul26SU", 45), ("Aug26SU", 46)]  # fmt: skip
# Updates a CU never got that a later CU of its product did (all still missing on it).
AFTER_CU13 = [u for u, _ in E19_CU15]
AFTER_CU12 = ["Mar24SU", "Apr24HU", "Nov24SU", "Nov24SUv2", *AFTER_CU13]

CHAINS = [
    ("15.2.1748", E19, E19_CU15, []),
    ("15.2.1544", E19, E19_CU14, []),
    ("15.2.1258", E19, E19_CU13, AFTER_CU13),
    ("15.2.1118", E19, E19_CU12, AFTER_CU12),
    ("15.1.2507", E16, E16_CU23, []),
    ("15.0.1497", E13, E13_CU23, []),
    ("15.2.2562", SE, SE_RTM, []),
]


def _cases() -> list[tuple[str, str, set[str]]]:
    """Per chain: the base build and, for each fix, one below, at and one above it."""
    cases: dict[str, tuple[str, str, set[str]]] = {}
    base_revisions = {"15.2.1748": 10, "15.2.1544": 4, "15.2.1258": 12, "15.2.1118": 7, "15.1.2507": 6,
                      "15.0.1497": 2, "15.2.2562": 17}  # fmt: skip
    for head, product, chain, later in CHAINS:
        revisions = {base_revisions[head]}
        for _, fixed in chain:
            revisions |= {fixed - 1, fixed, fixed + 1}
        for revision in sorted(r for r in revisions if r >= base_revisions[head]):
            missing = {u for u, fixed in chain if revision < fixed} | set(later)
            cases[f"{head}.{revision}"] = (f"{head}.{revision}", product, missing)
    return list(cases.values())


CASES = _cases()


def expected_cves(missing: set[str], product: str) -> set[str]:
    return {cve for u in missing for cves, products in UPDATE_CVES.get(u, []) if product in products for cve in cves}


def test_at_least_forty_builds_across_versions() -> None:
    assert len(CASES) >= 40
    assert {c[1] for c in CASES} == {E13, E16, E19, SE}


@pytest.mark.parametrize(("build", "product", "missing"), CASES, ids=[c[0] for c in CASES])
def test_missing_updates_and_cves(build: str, product: str, missing: set[str]) -> None:
    result = answer(build, as_of="2026-12-01")
    assert {u.update for u in result.missing} == missing
    exposed = {c.cve for c in result.cves if c.state == EXPOSED}
    assert exposed == expected_cves(missing, product)


# Every CU's base build: product, CU, release date and two facts from the dictionary.
BASES = [(r.product, r.name, ".".join(map(str, r.build))) for r in default_table().rows if r.product != "Exchange 2010"]


def test_every_cu_of_the_dictionary_is_a_row() -> None:
    """CU counts of GetExchangeBuildDictionary (2013 CU1-CU23, 2016 CU1-CU23, 2019 CU1-CU15, SE RTM) + RTMs."""
    names = {(p, cu) for p, cu, _ in BASES}
    assert {cu for p, cu in names if p == "Exchange 2016"} == {"RTM", *(f"CU{i}" for i in range(1, 24))}
    assert {cu for p, cu in names if p == "Exchange 2019"} == {"RTM", *(f"CU{i}" for i in range(1, 16))}
    assert {cu for p, cu in names if p == "Exchange 2013"} >= {"RTM", "CU1", "CU23", "SP1 (CU4)"}
    assert {cu for p, cu in names if p == "Exchange SE"} == {"RTM"}


@pytest.mark.parametrize(("product", "cu", "base"), BASES, ids=[f"{b[0]}-{b[1]}" for b in BASES])
def test_every_base_build(product: str, cu: str, base: str) -> None:
    result = answer(base, as_of="2026-12-01")
    assert (result.product, result.cu) == (product, cu)
    assert result.cu_released
    missing = {u.update for u in result.missing}
    if product == "Exchange 2013":
        # 2013 left support on 2023-04-11; Mar23SU is its last update: every 2013 base build misses it.
        assert "Mar23SU" in missing and "Aug23SU" not in missing
        assert result.support.since == "2023-04-11"
    elif product == "Exchange SE":
        assert "Aug25SU" in missing and result.support.status == "in-support"
    else:
        assert "Aug26SU" in missing and result.support.since == "2025-10-14"


def test_cu15_base_on_2026_12_01() -> None:
    result = answer("15.2.1748.10", as_of="2026-12-01")
    assert result.support.status == "out-of-support" and result.support.since == "2025-10-14"
    assert result.support.esu_only
    dates = {u.update: u.released for u in result.missing}
    assert dates["Apr25HU"] == "2025-04-18" and dates["Feb26SU"] == "2026-02-10" and dates["Aug26SU"] == "2026-08-11"
    ep = result.cve("CVE-2024-21410")
    assert ep.known_exploited == "2024-02-15"
    assert ep.state == CONDITIONAL and "Extended Protection" in ep.condition_text
    assert result.known_exploited[0].cve in {"CVE-2024-21410", "CVE-2026-42897"}  # KEV first
    order = [c.cve for c in result.exposed]
    assert order.index("CVE-2024-21410") < order.index("CVE-2025-59249")
    assert result.cve("CVE-2025-53786").state == EXPOSED  # Apr25HU missing


def test_as_of_proxylogon_day() -> None:
    result = answer("15.1.2106.2", as_of="2021-03-02")
    exposed = {c.cve for c in result.exposed}
    assert {"CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858", "CVE-2021-27065"} <= exposed
    assert all(c.published <= "2021-03-02" for c in result.exposed)
    assert not exposed & {"CVE-2021-34473", "CVE-2021-34523", "CVE-2021-31207", "CVE-2022-41040"}
    assert {u.update for u in result.missing} == {"Oct20SU", "Nov20SU", "Dec20SU", "Feb21SU", "Mar21SU"}
    assert result.support.status == "in-support"
    # Known today: the same build was also exposed to ProxyShell's flaws on those days.
    today = {c.cve for c in answer("15.1.2106.2").exposed}
    assert {"CVE-2021-34473", "CVE-2021-34523", "CVE-2021-31207"} <= today


def test_zero_day_before_its_fix() -> None:
    """ProxyNotShell was public on 2022-09-30; Nov22SU came on 2022-11-08."""
    result = answer("15.2.1118.15", as_of="2022-10-15")
    state = {c.cve: c.state for c in result.exposed}
    assert state["CVE-2022-41040"] == "no-fix-released" and state["CVE-2022-41082"] == "no-fix-released"
    assert "CVE-2022-41080" not in state


def test_newer_than_table_is_never_patched() -> None:
    result = answer("15.2.2562.99")
    assert any("may be out of date" in n and "2026-12-01" in n for n in result.notes)
    newer_cu = answer("15.2.2600.1")
    assert newer_cu.verdict == "newer-than-table" and "2026-12-01" in newer_cu.headline
    assert "patched" not in newer_cu.headline


def test_scan_windows_use_todays_knowledge() -> None:
    from exhunt.exposure.builds import exposure_windows
    from exhunt.exposure.observed import window_exposure

    window = exposure_windows([("15.1.2106.2", *(__import__("datetime").datetime(2021, 3, 1),) * 2, "x")])[0]
    assert window.status("proxyshell") == "vulnerable"
    summary = window_exposure(window.build)
    assert summary["as_of"] == "2026-12-01"
    assert {"CVE-2021-34473", "CVE-2021-26855"} <= set(summary["exposed"])
