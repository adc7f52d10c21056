"""Build parsing and per-family assessment against the research tables (§3.3), restated here on purpose."""

from __future__ import annotations

import json

import pytest

from exhunt.errors import UsageError
from exhunt.exposure import builds as b
from exhunt.exposure.table import default_table, load_table, parse_table

# (product, CU, base build, Mar21SU build per CSS-BUILD, GEBN value where it differs) - research §3.3.
MAR21 = [
    ("Exchange 2013", "SP1 (CU4)", "15.0.847.32", "15.0.847.64", None),
    ("Exchange 2013", "CU21", "15.0.1395.4", "15.0.1395.12", None),
    ("Exchange 2013", "CU22", "15.0.1473.3", "15.0.1473.6", None),
    ("Exchange 2013", "CU23", "15.0.1497.2", "15.0.1497.12", None),
    ("Exchange 2016", "CU8", "15.1.1415.2", "15.1.1415.8", "15.1.1415.10"),
    ("Exchange 2016", "CU9", "15.1.1466.3", "15.1.1466.13", "15.1.1466.16"),
    ("Exchange 2016", "CU10", "15.1.1531.3", "15.1.1531.12", None),
    ("Exchange 2016", "CU11", "15.1.1591.10", "15.1.1591.18", None),
    ("Exchange 2016", "CU12", "15.1.1713.5", "15.1.1713.10", None),
    ("Exchange 2016", "CU13", "15.1.1779.2", "15.1.1779.8", None),
    ("Exchange 2016", "CU14", "15.1.1847.3", "15.1.1847.12", None),
    ("Exchange 2016", "CU15", "15.1.1913.5", "15.1.1913.12", None),
    ("Exchange 2016", "CU16", "15.1.1979.3", "15.1.1979.8", None),
    ("Exchange 2016", "CU17", "15.1.2044.4", "15.1.2044.13", None),
    ("Exchange 2016", "CU18", "15.1.2106.2", "15.1.2106.13", None),
    ("Exchange 2016", "CU19", "15.1.2176.2", "15.1.2176.9", None),
    ("Exchange 2019", "RTM", "15.2.221.12", "15.2.221.18", None),
    ("Exchange 2019", "CU1", "15.2.330.5", "15.2.330.11", None),
    ("Exchange 2019", "CU2", "15.2.397.3", "15.2.397.11", None),
    ("Exchange 2019", "CU3", "15.2.464.5", "15.2.464.15", None),
    ("Exchange 2019", "CU4", "15.2.529.5", "15.2.529.13", None),
    ("Exchange 2019", "CU5", "15.2.595.3", "15.2.595.8", None),
    ("Exchange 2019", "CU6", "15.2.659.4", "15.2.659.12", None),
    ("Exchange 2019", "CU7", "15.2.721.2", "15.2.721.13", None),
    ("Exchange 2019", "CU8", "15.2.792.3", "15.2.792.10", None),
]

# (CU label, Apr21SU build for 34473/34523, May21SU build for 31207) - research §3.3 ProxyShell.
PROXYSHELL = [
    ("2013 CU23", "15.0.1497.15", "15.0.1497.18"),
    ("2016 CU19", "15.1.2176.12", "15.1.2176.14"),
    ("2016 CU20", "15.1.2242.8", "15.1.2242.10"),
    ("2019 CU8", "15.2.792.13", "15.2.792.15"),
    ("2019 CU9", "15.2.858.10", "15.2.858.12"),
]

# (CU label, Nov22SU build) - research §3.3 ProxyNotShell + OWASSRF.
NOV22 = [
    ("2013 CU23", "15.0.1497.44"),
    ("2016 CU22", "15.1.2375.37"),
    ("2016 CU23", "15.1.2507.16"),
    ("2019 CU11", "15.2.986.36"),
    ("2019 CU12", "15.2.1118.20"),
]


def minus_one(build: str) -> str:
    head, revision = build.rsplit(".", 1)
    return f"{head}.{int(revision) - 1}"


def plus(build: str, n: int) -> str:
    head, revision = build.rsplit(".", 1)
    return f"{head}.{int(revision) + n}"


def statuses(build: str) -> dict[str, str]:
    return {f.family: f.status for f in b.assess(build).families}


def cve_status(build: str, cve: str) -> str:
    return b.assess(build).cve(cve).status


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("15.1.2176.9", (15, 1, 2176, 9)),
        ("15.01.2176.009", (15, 1, 2176, 9)),
        ("  15.02.0721.013\t", (15, 2, 721, 13)),
        ("15.00.1497.002", (15, 0, 1497, 2)),
        ("14.03.0513.000", (14, 3, 513, 0)),
    ],
)
def test_parse_short_and_padded(text: str, numbers: tuple[int, ...]) -> None:
    parsed = b.parse_build(text)
    assert parsed.numbers == numbers
    assert str(parsed) == ".".join(map(str, numbers))
    assert b.parse_build(parsed.padded()) == parsed


def test_padded_form_is_long_form() -> None:
    assert b.parse_build("15.1.2176.9").padded() == "15.01.2176.009"


@pytest.mark.parametrize(
    "text",
    ["", "   ", "15.1.2176", "15.1.2176.9.1", "a.b.c.d", "15..2176.9", "15.1.2176.-9", "15.1.2176.9x",
     "v15.1.2176.9", "1234567.1.1.1", "15.1.2176.9\n15.1.2176.12", "15,1,2176,9", "１５.1.2176.9"],
)  # fmt: skip
def test_malformed_builds_raise_one_line_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        b.parse_build(text)
    message = str(caught.value)
    assert "\n" not in message and "malformed" in message


def test_partial_build_needs_opt_in() -> None:
    with pytest.raises(UsageError):
        b.parse_build("15.1.2176")
    partial = b.parse_build("15.01.2176", allow_partial=True)
    assert not partial.revision_known
    assert str(partial) == "15.1.2176"


def test_builds_order_numerically() -> None:
    texts = ["15.1.2176.14", "15.1.2176.9", "15.01.2106.013", "15.2.221.18", "15.1.2176.12"]
    ordered = [str(x) for x in sorted(b.parse_build(t) for t in texts)]
    assert ordered == ["15.1.2106.13", "15.1.2176.9", "15.1.2176.12", "15.1.2176.14", "15.2.221.18"]


def test_build_product_and_cu_lookup() -> None:
    build = b.parse_build("15.01.2176.014")
    assert (build.product, build.cu_name) == ("Exchange 2016", "CU19")
    assert b.parse_build("15.2.2562.17").product == "Exchange SE"
    assert b.parse_build("15.2.1748.10").product == "Exchange 2019"
    assert b.parse_build("15.3.100.1").product is None
    assert b.parse_build("15.1.2200.5").cu_name is None


# ----------------------------------------------------------------------------- ProxyLogon rows


@pytest.mark.parametrize(("product", "cu", "base", "fixed", "gebn"), MAR21, ids=[f"{r[0]}-{r[1]}" for r in MAR21])
def test_mar21_rows(product: str, cu: str, base: str, fixed: str, gebn: str | None) -> None:
    assessment = b.assess(base)
    assert (assessment.product, assessment.cu, assessment.cu_build) == (product, cu, base)
    assert assessment.status("proxylogon") == b.VULNERABLE
    assert b.assess(minus_one(fixed)).status("proxylogon") == b.VULNERABLE
    high = gebn or fixed
    assert b.assess(high).status("proxylogon") == b.PATCHED
    assert b.assess(plus(high, 7)).status("proxylogon") == b.PATCHED
    proxylogon = b.assess(high).family("proxylogon")
    assert {c.cve for c in proxylogon.cves} == {"CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858", "CVE-2021-27065"}
    assert proxylogon.fixed_by == ("Mar21SU (KB5000871)",)
    assert {c.fixed_in for c in proxylogon.cves} == {fixed}
    if gebn is None:
        assert b.assess(fixed).status("proxylogon") == b.PATCHED


@pytest.mark.parametrize(("base", "low", "high"), [(r[2], r[3], r[4]) for r in MAR21 if r[4]])
def test_sources_disagree_rows(base: str, low: str, high: str) -> None:
    assert b.assess(minus_one(low)).status("proxylogon") == b.VULNERABLE
    for revision in (low, minus_one(high)):
        assessment = b.assess(revision)
        assert assessment.status("proxylogon") == b.PROBABLY_PATCHED
        note = assessment.cve("CVE-2021-26855").note
        assert "sources disagree" in note and low in note and high in note
    assert b.assess(high).status("proxylogon") == b.PATCHED


def test_later_cus_include_mar21() -> None:
    for build in ("15.1.2242.4", "15.2.858.5", "15.1.2308.8", "15.2.922.7", "15.2.1258.12", "15.2.2562.17"):
        assert b.assess(build).status("proxylogon") == b.PATCHED, build


# ----------------------------------------------------------------------------- ProxyShell rows


@pytest.mark.parametrize(("label", "apr", "may"), PROXYSHELL, ids=[r[0] for r in PROXYSHELL])
def test_proxyshell_rows(label: str, apr: str, may: str) -> None:
    before = b.assess(minus_one(apr))
    assert before.status("proxyshell") == b.VULNERABLE
    assert {c.cve: c.status for c in before.family("proxyshell").cves} == {
        "CVE-2021-34473": b.VULNERABLE,
        "CVE-2021-34523": b.VULNERABLE,
        "CVE-2021-31207": b.VULNERABLE,
    }
    at_apr = b.assess(apr)
    assert at_apr.cve("CVE-2021-34473").status == b.PATCHED
    assert at_apr.cve("CVE-2021-34523").status == b.PATCHED
    assert at_apr.cve("CVE-2021-31207").status == b.VULNERABLE
    assert at_apr.status("proxyshell") == b.VULNERABLE  # needs both April and May
    assert b.assess(minus_one(may)).status("proxyshell") == b.VULNERABLE
    at_may = b.assess(may)
    assert at_may.status("proxyshell") == b.PATCHED
    assert at_may.family("proxyshell").fixed_by == ("Apr21SU (KB5001779)", "May21SU (KB5003435)")
    assert at_may.status("proxylogon") == b.PATCHED


@pytest.mark.parametrize(
    "build",
    ["15.1.2106.13", "15.2.721.13", "15.0.1473.6", "15.0.1395.12", "15.0.847.64", "15.2.221.18"],
)
def test_old_cus_never_got_proxyshell_fixes(build: str) -> None:
    assessment = b.assess(build)
    assert assessment.status("proxylogon") == b.PATCHED
    assert assessment.status("proxyshell") == b.VULNERABLE
    assert "never received" in assessment.cve("CVE-2021-34473").note


def test_research_example_cu19_mar21su() -> None:
    assert statuses("15.1.2176.9")["proxylogon"] == b.PATCHED
    assert statuses("15.1.2176.9")["proxyshell"] == b.VULNERABLE


def test_cus_after_may21_include_proxyshell_fixes() -> None:
    for build in ("15.1.2308.8", "15.2.922.7", "15.1.2375.7", "15.2.986.5"):
        assert b.assess(build).status("proxyshell") == b.PATCHED, build


# ----------------------------------------------------------------------------- ProxyNotShell / OWASSRF


@pytest.mark.parametrize(("label", "fixed"), NOV22, ids=[r[0] for r in NOV22])
def test_nov22_rows(label: str, fixed: str) -> None:
    before = b.assess(minus_one(fixed))
    assert before.status("proxynotshell") == b.VULNERABLE
    assert before.status("owassrf") == b.VULNERABLE
    after = b.assess(fixed)
    assert after.status("proxynotshell") == b.PATCHED
    assert after.status("owassrf") == b.PATCHED
    assert {c.cve for c in after.family("proxynotshell").cves} == {"CVE-2022-41040", "CVE-2022-41082"}
    assert [c.cve for c in after.family("owassrf").cves] == ["CVE-2022-41080"]
    assert after.family("owassrf").fixed_by == ("Nov22SU (KB5019758)",)
    assert after.status("proxyshell") == b.PATCHED


@pytest.mark.parametrize(("build", "expected"), [
    ("15.1.2308.27", b.VULNERABLE),  # E2016 CU21 never got Nov22SU
    ("15.2.922.27", b.VULNERABLE),   # E2019 CU10 never got Nov22SU
    ("15.2.1258.12", b.PATCHED),     # E2019 CU13 came later
    ("15.2.1748.10", b.PATCHED),
])  # fmt: skip
def test_nov22_outside_the_fixed_cus(build: str, expected: str) -> None:
    assert b.assess(build).status("proxynotshell") == expected
    assert b.assess(build).status("owassrf") == expected


# ----------------------------------------------------------------------------- unknown and special builds


@pytest.mark.parametrize(
    "build",
    ["15.1.2200.5", "15.3.100.1", "14.3.509.0", "8.3.517.0", "16.0.1.1"],
)
def test_unknown_builds_are_unknown(build: str) -> None:
    assessment = b.assess(build)
    assert set(statuses(build).values()) == {b.UNKNOWN}
    assert all(c.status == b.UNKNOWN for f in assessment.families for c in f.cves)
    assert assessment.cu is None and assessment.note


@pytest.mark.parametrize(("build", "cu"), [("15.0.1076.9", "CU8"), ("15.1.1261.35", "CU7")])
def test_older_cus_are_now_in_the_table(build: str, cu: str) -> None:
    """These two were listed as unknown builds before the table held every CU (2013 CU8, 2016 CU7)."""
    assessment = b.assess(build)
    assert assessment.cu == cu
    assert assessment.status("proxylogon") == b.VULNERABLE  # these CUs never received Mar21SU


def test_exchange_2010_only_26857() -> None:
    assessment = b.assess("14.3.513.0")
    proxylogon = assessment.family("proxylogon")
    assert [c.cve for c in proxylogon.cves] == ["CVE-2021-26857"]
    assert proxylogon.status == b.PATCHED
    assert proxylogon.fixed_by == ("Mar21SU (KB5000978)",)
    assert {assessment.status(f) for f in ("proxyshell", "proxynotshell", "owassrf")} == {b.UNKNOWN}


def test_partial_build_assesses_cu_only() -> None:
    cu19 = b.assess(b.parse_build("15.1.2176", allow_partial=True))
    assert cu19.cu == "CU19" and not cu19.revision_known
    assert cu19.status("proxylogon") == b.UNKNOWN
    assert "cannot be told" in cu19.cve("CVE-2021-26855").note
    assert cu19.status("proxynotshell") == b.VULNERABLE  # no CU19 build ever got Nov22SU
    cu20 = b.assess(b.parse_build("15.1.2242", allow_partial=True))
    assert cu20.status("proxylogon") == b.PATCHED
    assert cu20.status("proxyshell") == b.UNKNOWN


def test_padded_and_short_assess_alike() -> None:
    assert b.assess("15.01.2176.012").to_dict() == b.assess("15.1.2176.12").to_dict()


def test_assessment_is_json_serialisable() -> None:
    data = json.loads(json.dumps(b.assess("15.1.1466.14").to_dict()))
    assert data["cu"] == "CU9"
    assert data["families"][0]["status"] == b.PROBABLY_PATCHED


# ----------------------------------------------------------------------------- the table itself


def test_every_research_row_is_in_the_table() -> None:
    rows = {(r.product, r.name): r for r in default_table().rows}
    for product, cu, base, fixed, gebn in MAR21:
        row = rows[(product, cu)]
        assert ".".join(map(str, row.build)) == base
        fix = row.fix("Mar21SU")
        assert fix is not None
        assert ".".join(map(str, fix.build)) == fixed
        assert (".".join(map(str, fix.alt_build)) if fix.alt_build else None) == gebn
        assert fix.source == ("GEBN" if cu in ("SP1 (CU4)", "RTM") else "CSS-BUILD")


def test_table_sources_are_declared() -> None:
    table = default_table()
    used = {r.source for r in table.rows} | {f.source for r in table.rows for f in r.fixes}
    assert used <= set(table.sources)
    assert {"CSS-BUILD", "GEBN", "CVE-REC"} <= used


def test_validation_rejects_a_misplaced_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tomllib
    from importlib import resources

    text = resources.files("exhunt.exposure").joinpath("builds.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    data["cu"][1]["fixes"]["Mar21SU"]["build"] = "15.1.2176.9"  # another CU's build
    with pytest.raises(ValueError, match="not a later build of this CU"):
        parse_table(data)
    broken = tmp_path / "builds.toml"
    broken.write_text(text.replace('source = "CSS-BUILD"', 'source = "NOPE"', 1), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown"):
        load_table(broken)
