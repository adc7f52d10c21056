"""A scan's exposure windows use today's table and the collection's Extended Protection state."""

from __future__ import annotations

from pathlib import Path

from exposure_helpers import CONFIG_DIR

from exhunt.scan import ScanOptions, scan
from tests.conftest import INSTALL, httpproxy_log, write

APPHOST = "EXCH01/C/Windows/System32/inetsrv/config/applicationHost.config"


def _rows(revision: str) -> list[dict[str, str]]:
    return [{"DateTime": "2026-11-20T10:00:00.000Z", "MajorVersion": "15", "MinorVersion": "2",
             "BuildVersion": "1748", "RevisionVersion": revision}]  # fmt: skip


def test_scan_window_uses_todays_table_and_collected_extended_protection(collection: Path, config_dir: Path) -> None:
    write(collection, APPHOST, (config_dir / "applicationHost.config").read_text(encoding="utf-8-sig"), crlf=False)
    write(
        collection,
        f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2026112010-1.LOG",
        httpproxy_log(_rows("10"), version="15.02.1748.010"),
    )
    exposure = scan(collection, ScanOptions()).to_dict()["exposure"]
    window = exposure["windows"][0]
    assert window["build"] == "15.2.1748.10"
    today = window["exposure"]
    assert today["as_of"] == "2026-12-01"
    assert {"Apr25HU", "Aug26SU"} <= set(today["missing_updates"])
    assert "CVE-2024-21410" in today["known_exploited"]
    assert today["extended_protection"] == "exposed-by-configuration"  # tokenChecking None in that file
    assert "known on 2026-12-01" in exposure["text"][0]


def test_scan_without_config_leaves_extended_protection_open(collection: Path) -> None:
    write(
        collection,
        f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2026112010-1.LOG",
        httpproxy_log(_rows("43"), version="15.02.1748.043"),
    )
    today = scan(collection, ScanOptions()).exposure.windows[0]["exposure"]
    assert today["extended_protection"] == "fixed-only-if"
    assert CONFIG_DIR.name == "IIS"


def test_the_html_report_shows_what_is_known_today(collection: Path, config_dir: Path) -> None:
    from exhunt.report.html import render

    write(collection, APPHOST, (config_dir / "applicationHost.config").read_text(encoding="utf-8-sig"), crlf=False)
    write(collection, f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2026112010-1.LOG",
          httpproxy_log(_rows("10"), version="15.02.1748.010"))  # fmt: skip
    page = render(scan(collection, ScanOptions()).to_dict())
    table = page[page.index('id="exposure-table"') :].split("</table>", 1)[0]
    assert "known exploited: " in table and "CVE-2024-21410" in table
    assert "CVE-2024-21410: exposed-by-configuration" in table and "update(s) missing" in table
