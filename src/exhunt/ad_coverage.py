"""Whether the Active Directory checks could run: were a domain controller's Security logs collected?

The AD rules (replication rights granted, DCSync by non-DCs, privileged group changes seen on a DC,
logons arriving from the Exchange server) read events only a domain controller writes. Without a
DC's Security log, "no AD abuse found" means "not checked", and the coverage must say so. A DC is
recognised as in `exhunt.domain_hosts`: a computer whose own Security log holds Kerberos ticket
(4768/4769/4771) or directory-service (4662/5136...) events from Microsoft-Windows-Security-Auditing.
"""

from __future__ import annotations

from typing import Any

from exhunt.case import CaseReader
from exhunt.domain_hosts import DC_ONLY_EVENTS, SECURITY_PROVIDER, short_name
from exhunt.families import family

DIRECTORY_AUDIT_EVENTS = (4662, 5136)  # need "Audit Directory Service Access/Changes" on the DC


def ad_checks_state(case: CaseReader | Any) -> dict[str, Any]:
    """{"state": "ran" | "not-run", "domain_controllers": [...], "directory_auditing": bool,
    "events": {event_id: count}, "reason": text} from the case database."""
    if not isinstance(case, CaseReader):  # a bare DuckDB connection holding the case tables
        case = CaseReader(case)
    has_events = family("events").table in case.tables()
    if not has_events:
        return _state("not-run", [], False, {}, "no Windows event logs in the collection")
    ids = ", ".join(str(i) for i in DC_ONLY_EVENTS)
    rows = case.fetch(
        f"""
        SELECT {short_name("computer")} AS dc, event_id, count(*) AS n FROM {family("events").table}
        WHERE provider = ? AND event_id IN ({ids}) AND computer IS NOT NULL
        GROUP BY ALL ORDER BY dc, event_id
        """,
        [SECURITY_PROVIDER],
    )
    dcs = sorted({r[0] for r in rows})
    counts: dict[int, int] = {}
    for _, event_id, n in rows:
        counts[int(event_id)] = counts.get(int(event_id), 0) + int(n)
    if not dcs:
        return _state(
            "not-run", [], False, counts,
            "no domain controller's Security log in the collection: replication-right grants, DCSync and "
            "logons from the Exchange server to other hosts could not be checked",
        )  # fmt: skip
    directory = any(counts.get(i) for i in DIRECTORY_AUDIT_EVENTS)
    reason = f"Security log of {', '.join(dcs)} collected"
    if not directory:
        reason += (
            "; it holds no directory-service events (4662/5136), so replication-right grants and DCSync "
            "could not be checked (directory-service auditing is off or the events were not collected)"
        )
    return _state("ran", dcs, directory, counts, reason)


def _state(state: str, dcs: list[str], directory: bool, counts: dict[int, int], reason: str) -> dict[str, Any]:
    return {
        "state": state,
        "domain_controllers": dcs,
        "directory_auditing": directory,
        "events": {str(k): v for k, v in sorted(counts.items())},
        "reason": reason,
    }
