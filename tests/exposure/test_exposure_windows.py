"""Exposure windows: builds seen over time, merged and assessed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from exhunt.exposure import builds as b


def day(month: int, dd: int, hour: int = 0) -> datetime:
    return datetime(2021, month, dd, hour)


def test_mar21su_install_splits_two_windows() -> None:
    windows = b.exposure_windows(
        [
            ("15.1.2106.2", day(2, 20), day(3, 9), "HttpProxy #Version"),
            ("15.01.2106.013", day(3, 10), day(4, 30), "HttpProxy #Version"),
        ]
    )
    assert [w.build for w in windows] == ["15.1.2106.2", "15.1.2106.13"]
    first, second = windows
    assert first.status("proxylogon") == b.VULNERABLE
    assert "proxylogon" in first.vulnerable_families
    assert second.status("proxylogon") == b.PATCHED
    assert second.status("proxyshell") == b.VULNERABLE
    assert first.text.startswith("ran 15.1.2106.2 (Exchange 2016 CU18), vulnerable to ProxyLogon")
    assert first.text.endswith("from at least 2021-02-20 until 2021-03-09")
    assert "patched for ProxyLogon" in second.text and "vulnerable to ProxyShell" in second.text


def test_contiguous_observations_of_one_build_merge() -> None:
    observations = [
        b.Observation("15.1.2176.2", day(1, 5), day(1, 6), "EWS #Version"),
        b.Observation("15.1.2176.2", day(1, 1), day(1, 2), "owa/auth folder"),
        b.Observation("15.1.2176.9", day(3, 4), day(3, 20), "HttpProxy version column"),
        b.Observation("15.01.2176.002", day(1, 3), day(2, 28), "HttpProxy #Version"),
    ]
    windows = b.exposure_windows(observations)
    assert len(windows) == 2
    first = windows[0]
    assert (first.first_seen.date(), first.last_seen.date()) == (day(1, 1).date(), day(2, 28).date())
    assert first.observations == 3
    assert set(first.sources) == {"EWS #Version", "owa/auth folder", "HttpProxy #Version"}
    assert windows[1].build == "15.1.2176.9"


def test_same_build_again_after_another_is_a_new_window() -> None:
    windows = b.exposure_windows(
        [
            ("15.2.792.3", day(1, 1), day(1, 31), "a"),
            ("15.2.792.10", day(3, 3), day(3, 31), "a"),
            ("15.2.792.3", day(4, 1), day(4, 2), "b"),  # e.g. a restore from an old image
        ]
    )
    assert [w.build for w in windows] == ["15.2.792.3", "15.2.792.10", "15.2.792.3"]
    assert [w.status("proxylogon") for w in windows] == [b.VULNERABLE, b.PATCHED, b.VULNERABLE]


def test_times_are_normalised_to_utc_and_reversed_ranges_fixed() -> None:
    plus2 = timezone(timedelta(hours=2))
    windows = b.exposure_windows(
        [
            ("15.1.2106.2", datetime(2021, 3, 9, 1, tzinfo=plus2), datetime(2021, 2, 20, tzinfo=UTC), "x"),
            ("15.1.2106.13", datetime(2021, 3, 9, 12), datetime(2021, 3, 10), "y"),  # naive = UTC
        ]
    )
    assert [w.build for w in windows] == ["15.1.2106.2", "15.1.2106.13"]
    assert windows[0].first_seen == datetime(2021, 2, 20, tzinfo=UTC)
    assert windows[0].last_seen == datetime(2021, 3, 8, 23, tzinfo=UTC)
    assert windows[1].first_seen.tzinfo is not None


def test_partial_and_unreadable_builds_do_not_crash() -> None:
    windows = b.exposure_windows(
        [("15.1.2176", day(1, 1), day(1, 2), "owa/auth folder"), ("not-a-build", day(1, 3), day(1, 3), "?")]
    )
    assert windows[0].assessment.cu == "CU19" and not windows[0].assessment.revision_known
    assert windows[0].status("proxylogon") == b.UNKNOWN
    assert windows[1].build == "not-a-build"
    assert {f.status for f in windows[1].assessment.families} == {b.UNKNOWN}
    assert "status unknown for" in windows[1].text


def test_empty_input_and_json() -> None:
    assert b.exposure_windows([]) == []
    window = b.exposure_windows([("15.0.1497.2", day(2, 1), day(2, 2), "ews")])[0]
    data = json.loads(json.dumps(window.to_dict()))
    assert data["cu"] == "CU23" and data["statuses"]["proxylogon"] == b.VULNERABLE
    assert data["vulnerable"] == ["proxylogon", "proxyshell", "proxynotshell", "owassrf"]
    assert data["first_seen"].startswith("2021-02-01")
