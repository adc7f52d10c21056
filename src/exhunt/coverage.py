"""What the collection covers: per log family, how many files and records over which time span,
which expected artifacts are missing, and whether the logs reach back to each campaign's window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exhunt.rules.model import Rule
from exhunt.rules.native import VIEWS
from exhunt.store import Store, _q

FAMILY_TITLES = {
    "log_iis": "IIS W3C",
    "log_httpproxy": "HttpProxy",
    "log_ecp_server": "ECP Server",
    "log_ecp_activity": "ECP Activity",
    "log_oab_generator": "OAB Generator",
    "log_ews": "EWS",
    "log_rps_http": "Rps_Http",
    "log_rps_cmdlet": "Rps_Cmdlet",
    "log_message_tracking": "Message Tracking",
    "events": "Windows events",
}
# When each campaign was exploited in the wild (public reporting); logs must reach into the window.
CAMPAIGN_WINDOWS = {
    "proxylogon": (datetime(2021, 1, 1), datetime(2021, 3, 31), "ProxyLogon"),
    "proxyshell": (datetime(2021, 8, 1), datetime(2021, 12, 31), "ProxyShell"),
    "proxynotshell": (datetime(2022, 8, 1), datetime(2022, 12, 31), "ProxyNotShell"),
    "owassrf": (datetime(2022, 11, 1), datetime(2023, 3, 31), "OWASSRF"),
}
EXPECTED = {
    "log_httpproxy": "HttpProxy logs (V15/Logging/HttpProxy/<protocol>/HttpProxy_*.LOG)",
    "log_iis": "IIS logs (inetpub/logs/LogFiles/W3SVC1 and W3SVC2)",
    "log_ecp_server": "ECP Server logs (V15/Logging/ECP/Server/ECPServer*.LOG)",
    "log_oab_generator": "OAB generator logs (V15/Logging/OABGeneratorLog)",
    "events": "Windows event logs (Application, MSExchange Management, Security; EVTX or JSON lines)",
}


@dataclass
class FamilyCoverage:
    family: str
    title: str
    files: int
    records: int
    first: datetime | None
    last: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "title": self.title,
            "files": self.files,
            "records": self.records,
            "first": self.first.isoformat() + "Z" if self.first else None,
            "last": self.last.isoformat() + "Z" if self.last else None,
        }


def measure(store: Store) -> list[FamilyCoverage]:
    out = []
    tables = store.tables()
    for table in sorted(t for t in tables if t.startswith("log_") or t == "events"):
        ts = "ts" if table == "events" else "_ts"
        files, records, first, last = store.con.execute(
            f"SELECT count(DISTINCT _artifact), count(*), min({ts}), max({ts}) FROM {_q(table)}"
        ).fetchone()
        if records:
            out.append(FamilyCoverage(table, FAMILY_TITLES.get(table, table[4:]), files, records, first, last))
    return out


def missing(coverage: list[FamilyCoverage], is_exchange: bool) -> list[str]:
    if not is_exchange:
        return []
    have = {c.family for c in coverage}
    return [f"no {text}" for fam, text in EXPECTED.items() if fam not in have]


def window_warnings(coverage: list[FamilyCoverage], rules: list[Rule]) -> list[str]:
    """One line naming the campaigns whose exploitation window the relevant logs do not reach."""
    by_family = {c.family: c for c in coverage}
    blind = []
    for campaign, (start, end, name) in CAMPAIGN_WINDOWS.items():
        tables = {VIEWS[r.source].table for r in rules if r.campaign == campaign and r.source != "files"}
        spans = [by_family[t] for t in tables if t in by_family and by_family[t].first and by_family[t].last]
        if spans and not any(c.first <= end and c.last >= start for c in spans):
            blind.append(f"{name} ({start:%Y-%m} – {end:%Y-%m})")
    if not blind:
        return []
    first = min(c.first for c in coverage if c.first)
    last = max(c.last for c in coverage if c.last)
    names = ", ".join(blind[:-1]) + (" or " if len(blind) > 1 else "") + blind[-1]
    return [f"the logs span {first:%Y-%m-%d} – {last:%Y-%m-%d}: they cannot show {names} exploitation"]
