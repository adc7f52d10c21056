"""Builds an offline collection shows, turned into exposure windows and mitigation notes.

Three witnesses: the `#Version` directive of each Exchange log (the build when the file was
started), HttpProxy's per-row Major/Minor/Build/RevisionVersion columns, and the versioned
`owa/auth/<build>/` folders of the front end (file times tell when a build was installed).
Observations are kept per build and day, then merged by `exposure_windows`; each window is then
answered with everything known today (the build table's date).
"""

from __future__ import annotations

from typing import Any

from exhunt.case import CaseReader
from exhunt.errors import UsageError
from exhunt.exposure.answer import answer
from exhunt.exposure.builds import Observation, exposure_windows
from exhunt.exposure.config_state import ConfigState, VdirProtection


def observations(case: CaseReader) -> list[Observation]:
    obs = [Observation(build, lo, hi, witness) for build, lo, hi, witness in case.build_days()]
    return sorted(obs, key=lambda o: (o.first_seen, o.last_seen))


def exposure_report(case: CaseReader) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The exposure windows (each with what is known today), the mitigations found, and one line each."""
    windows = exposure_windows(observations(case))
    config = collected_configuration(case)
    rows = [{**w.to_dict(), "exposure": window_exposure(w.build, config)} for w in windows]
    text = [f"{w.text}; {_today(row['exposure'])}" for w, row in zip(windows, rows, strict=True)]
    return rows, case.mitigations(), text


def _today(summary: dict[str, Any]) -> str:
    if summary.get("as_of") is None:
        return "build not in the table"
    kev = len(summary["known_exploited"])
    return (
        f"known on {summary['as_of']}: {len(summary['exposed'])} CVE(s) open or configuration-dependent"
        f" ({kev} known exploited), {len(summary['missing_updates'])} update(s) missing"
    )


def collected_configuration(case: CaseReader) -> ConfigState:
    """Extended Protection rows the IIS configuration source stored (one list per applicationHost.config)."""
    state = ConfigState()
    for path, site, vdir, expected, actual, ok in case.extended_protection():
        state.extended_protection.setdefault(str(path), []).append(
            VdirProtection(str(site), str(vdir), str(expected), str(actual), ok == "true")
        )
    return state


def window_exposure(build: str, config: ConfigState | None = None) -> dict[str, Any]:
    """Everything known today (the table's date) about a build a collection shows, for every family."""
    try:
        found = answer(build, config=config)
    except (UsageError, ValueError):
        return {"as_of": None, "verdict": "unknown", "exposed": [], "known_exploited": [], "missing_updates": []}
    return {
        "as_of": found.as_of,
        "verdict": found.verdict,
        "support": found.support.text,
        "missing_updates": [u.update for u in found.missing],
        "exposed": [c.cve for c in found.exposed],
        "known_exploited": [c.cve for c in found.known_exploited],
        "extended_protection": found.cve("CVE-2024-21410").state if _has(found, "CVE-2024-21410") else None,
    }


def _has(found: Any, cve: str) -> bool:
    return any(c.cve == cve for c in found.cves)
