"""What was taken and what happened: mailbox access, stolen-mailbox verdicts, the intrusion timeline,
its leads and the incident summary, computed in SQL on an open case after the rules ran.

`analyse_case(case, findings, exposure)` returns the result keys `mailbox_access`, `timeline`, `leads`
and `incident`, and stores the tables `mailbox_access`, `timeline` and `leads` in the case. Every SQL
step goes through the `CaseReader` (`define`, `fetch`, `query`, `registered`, `keep_table`), and the
tables come from `exhunt.families`.
"""

from __future__ import annotations

import time
from typing import Any

import duckdb

from exhunt.case import CaseReader

__all__ = ["analyse_case"]


def analyse_case(
    case: CaseReader,
    findings: list[dict[str, Any]],
    exposure: dict[str, Any] | None = None,
    *,
    save: bool = True,
) -> dict[str, Any]:
    """Run every analysis on an open case; a failure is reported in the keys, never raised."""
    from exhunt.analytics.access import mailbox_access, to_table
    from exhunt.analytics.summary import incident_summary
    from exhunt.analytics.timeline import _seeds, leads_table, timeline
    from exhunt.analytics.timeline import to_table as timeline_table
    from exhunt.analytics.verdicts import mailbox_findings

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: list[float] = [started]) -> None:  # noqa: B006 - a running clock
        now = time.perf_counter()
        timings[name] = round(now - t0[0], 3)
        t0[0] = now

    try:
        server_ips = case.server_addresses()
        seeds = _seeds(case, findings, server_ips)
        lap("seeds")
        access = mailbox_access(case, seeds["ips"])
        lap("mailbox_access")
        access["findings"] = mailbox_findings(case, access["sessions"])
        lap("verdicts")
        # a mailbox taken is a high-confidence finding too: its client and account join the pivot
        for sess in access["sessions"]:
            if sess["verdict"] == "taken":
                if sess["client_ip"] and sess["client_ip"] not in server_ips:
                    seeds["ips"].add(sess["client_ip"])
                if sess["accessor"] and "@" in sess["accessor"] and not sess["accessor"].split("@")[0].endswith("$"):
                    seeds["accounts"].add(sess["accessor"])
        entries, leads = timeline(case, findings, access["sessions"], seeds)
        lap("timeline")
        incident = incident_summary(findings, access["sessions"], leads, exposure, server_ips)
        if save:
            case.keep_table("mailbox_access", to_table(access["sessions"]))
            case.keep_table("timeline", timeline_table(entries))
            case.keep_table("leads", leads_table(leads))
        lap("summary_and_tables")
        incident["seconds"] = round(time.perf_counter() - started, 3)
        incident["timings"] = timings
        return {"mailbox_access": access, "timeline": entries, "leads": leads, "incident": incident}
    except duckdb.Error as exc:  # the scan's own result stands; say what could not be computed
        why = str(exc).splitlines()[0][:200]
        return {
            "incident": {"error": f"analytics failed: {why}"},
            "mailbox_access": None,
            "timeline": None,
            "leads": None,
        }
    finally:
        case.drop_temp(
            ("_mx_agg", "_mx_sess", "_mx_pair", "_mx_mbase", "_mx_speak", "_mx_anchor_owner", "_mx_cmd", "_mx_hpg")
        )
