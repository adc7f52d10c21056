"""What was taken and what happened: mailbox access, stolen-mailbox verdicts, the intrusion timeline,
its leads and the incident summary, computed in SQL on an open case after the rules ran.

`analyse_case(con, findings, exposure)` returns the result keys `mailbox_access`, `timeline`, `leads`
and `incident`, and stores the tables `mailbox_access`, `timeline` and `leads` in the case.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import duckdb

__all__ = ["analyse_case"]


def analyse_case(
    con: duckdb.DuckDBPyConnection,
    findings: list[dict[str, Any]],
    exposure: dict[str, Any] | None = None,
    *,
    save: bool = True,
) -> dict[str, Any]:
    """Run every analysis on a case connection; a failure is reported in the keys, never raised."""
    from exhunt.analytics.access import mailbox_access, to_table
    from exhunt.analytics.summary import incident_summary
    from exhunt.analytics.timeline import _seeds, _server_ips, leads_table, timeline
    from exhunt.analytics.timeline import to_table as timeline_table
    from exhunt.analytics.verdicts import mailbox_findings

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: list[float] = [started]) -> None:  # noqa: B006 - a running clock
        now = time.perf_counter()
        timings[name] = round(now - t0[0], 3)
        t0[0] = now

    try:
        seeds = _seeds(con, findings)
        lap("seeds")
        access = mailbox_access(con, seeds["ips"])
        lap("mailbox_access")
        access["findings"] = mailbox_findings(con, access["sessions"])
        lap("verdicts")
        # a mailbox taken is a high-confidence finding too: its client and account join the pivot
        for sess in access["sessions"]:
            if sess["verdict"] == "taken":
                if sess["client_ip"] and sess["client_ip"] not in _server_ips(con):
                    seeds["ips"].add(sess["client_ip"])
                if sess["accessor"] and "@" in sess["accessor"] and not sess["accessor"].split("@")[0].endswith("$"):
                    seeds["accounts"].add(sess["accessor"])
        entries, leads = timeline(con, findings, access["sessions"], seeds)
        lap("timeline")
        incident = incident_summary(findings, access["sessions"], leads, exposure, _server_ips(con))
        if save:
            for name, table in (
                ("mailbox_access", to_table(access["sessions"])),
                ("timeline", timeline_table(entries)),
                ("leads", leads_table(leads)),
            ):
                con.register("_an_rows", table)
                try:
                    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _an_rows")
                finally:
                    con.unregister("_an_rows")
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
        for obj in ("_mx_agg", "_mx_sess", "_mx_pair", "_mx_mbase", "_mx_speak", "_mx_anchor_owner", "_mx_cmd"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {obj}")
