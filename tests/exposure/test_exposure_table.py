"""The build table's own consistency, and HealthChecker's three-way rule for 'patched'."""

from __future__ import annotations

from datetime import date

import pytest

from exhunt.exposure.answer import INCLUDED, MISSING, NOT_AFFECTED, update_status
from exhunt.exposure.build_sources import builds_from_healthchecker
from exhunt.exposure.builds import parse_build
from exhunt.exposure.table import default_table


def test_every_row_is_dated_and_sourced() -> None:
    table = default_table()
    assert table.checked == "2026-12-01" and table.kev_checked == "2026-12-01"
    for update in table.updates.values():
        date.fromisoformat(update.released)
        assert update.source in table.sources
    for row in table.rows:
        assert row.released, (row.product, row.name)
        date.fromisoformat(row.released)
        assert all(f.source in table.sources for f in row.fixes)
    for cve in table.cves:
        assert cve.source in table.sources and cve.products, cve.cve
    assert {e.source for e in table.kev.values()} <= set(table.sources)
    assert table.kev["CVE-2024-21410"].added == "2024-02-15"
    assert table.cve("CVE-2024-21410").condition == "extended_protection"  # type: ignore[union-attr]


def test_support_dates() -> None:
    table = default_table()
    ends = {p.name: p.support_end for p in table.products}
    assert ends["Exchange 2016"] == ends["Exchange 2019"] == "2025-10-14"
    assert ends["Exchange 2013"] == "2023-04-11" and ends["Exchange SE"] is None


@pytest.mark.parametrize(
    ("build", "update", "expected"),
    [
        ("15.0.1497.48", "Aug23SU", NOT_AFFECTED),  # no Exchange 2013 CU got Aug23SU
        ("15.2.2562.17", "Mar21SU", NOT_AFFECTED),  # no SE CU got it
        ("15.2.1258.12", "Nov22SU", INCLUDED),  # above 2019's newest Nov22SU fix (CU12 1118.20)
        ("15.2.1118.19", "Nov22SU", MISSING),  # CU12 got it at .20
        ("15.2.1118.20", "Nov22SU", INCLUDED),
        ("15.2.922.27", "Nov22SU", MISSING),  # CU10 never got it
        ("15.2.1544.24", "Apr25HU", MISSING),  # CU14's Apr25HU is .25 (CU15's is .24)
        ("15.2.1544.25", "Apr25HU", INCLUDED),
    ],
)
def test_healthchecker_rule(build: str, update: str, expected: str) -> None:
    table = default_table()
    parsed = parse_build(build)
    product = table.product_for(parsed.numbers)
    assert product is not None
    assert update_status(table, product, parsed, update, table.checked)[0] == expected


def test_healthchecker_html_report() -> None:
    html = (
        "<table><tr><th>Version</th><td>Exchange 2019 CU15</td></tr><tr><th>Build Number</th><td>15.2.1748.43</td></tr>"
    )
    assert [str(f.build) for f in builds_from_healthchecker(html)] == ["15.2.1748.43"]
