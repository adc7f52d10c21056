"""Builds an offline collection shows, turned into exposure windows and mitigation notes.

Three witnesses: the `#Version` directive of each Exchange log (the build when the file was
started), HttpProxy's per-row Major/Minor/Build/RevisionVersion columns, and the versioned
`owa/auth/<build>/` folders of the front end (file times tell when a build was installed).
Observations are kept per build and day, then merged by `exposure_windows`.
"""

from __future__ import annotations

from typing import Any

from exhunt.errors import UsageError
from exhunt.exposure.answer import answer
from exhunt.exposure.builds import Observation, exposure_windows
from exhunt.exposure.config_state import ConfigState, VdirProtection
from exhunt.store import Store, _q


def observations(store: Store) -> list[Observation]:
    tables = store.tables()
    obs: list[Observation] = []
    parts = []
    for table in sorted(t for t in tables if t.startswith("log_") and t != "log_iis"):
        parts.append(
            f"SELECT a.version AS build, date_trunc('day', t._ts) AS day, min(t._ts) AS lo, max(t._ts) AS hi "
            f"FROM {_q(table)} t JOIN artifacts a ON a.id = t._artifact "
            f"WHERE a.version IS NOT NULL AND t._ts IS NOT NULL GROUP BY 1, 2"
        )
    if parts:
        rows = store.con.execute(" UNION ALL ".join(parts)).fetchall()
        obs += [Observation(b, lo, hi, "#Version of Exchange logs") for b, _, lo, hi in rows]
    if "log_httpproxy" in tables:
        cols = {c.lower() for c in store.columns("log_httpproxy")}
        if {"majorversion", "minorversion", "buildversion", "revisionversion"} <= cols:
            rows = store.con.execute(
                "SELECT concat_ws('.', MajorVersion, MinorVersion, BuildVersion, RevisionVersion), "
                "date_trunc('day', _ts), min(_ts), max(_ts) FROM log_httpproxy "
                "WHERE BuildVersion IS NOT NULL AND _ts IS NOT NULL GROUP BY 1, 2"
            ).fetchall()
            obs += [Observation(b, lo, hi, "HttpProxy version columns") for b, _, lo, hi in rows]
    rows = store.con.execute(
        r"SELECT regexp_extract(win_path, '\\owa\\auth\\(1[45]\.\d+\.\d+\.\d+)\\', 1) AS build, min(mtime) "
        r"FROM artifacts WHERE regexp_matches(win_path, '\\owa\\auth\\1[45]\.\d+\.\d+\.\d+\\') AND mtime IS NOT NULL "
        "GROUP BY 1"
    ).fetchall()
    obs += [Observation(b, t, t, "owa/auth/<build> folder (file time)") for b, t in rows]
    return sorted(obs, key=lambda o: (o.first_seen, o.last_seen))


def exposure_report(store: Store) -> dict[str, Any]:
    """The `exposure` section of a scan result."""
    windows = exposure_windows(observations(store))
    mitigations = []
    if "cfg_mitigations" in store.tables():
        mitigations = store.query(
            "SELECT a.path, m._line AS line, m.family, m.status, m.rule_name, m.tool, m.pattern "
            "FROM cfg_mitigations m JOIN artifacts a ON a.id = m._artifact ORDER BY a.path, m._line"
        )
    config = collected_configuration(store)
    rows = [{**w.to_dict(), "exposure": window_exposure(w.build, config)} for w in windows]
    text = [f"{w.text}; {_today(row['exposure'])}" for w, row in zip(windows, rows, strict=True)]
    return {"windows": rows, "mitigations": mitigations, "text": text}


def _today(summary: dict[str, Any]) -> str:
    if summary.get("as_of") is None:
        return "build not in the table"
    kev = len(summary["known_exploited"])
    return (
        f"known on {summary['as_of']}: {len(summary['exposed'])} CVE(s) open or configuration-dependent"
        f" ({kev} known exploited), {len(summary['missing_updates'])} update(s) missing"
    )


def collected_configuration(store: Store) -> ConfigState:
    """Extended Protection rows the IIS configuration source stored (one list per applicationHost.config)."""
    state = ConfigState()
    if "cfg_extended_protection" not in store.tables():
        return state
    rows = store.con.execute(
        "SELECT a.path, e.site, e.virtual_directory, e.expected, e.actual, e.ok "
        "FROM cfg_extended_protection e JOIN artifacts a ON a.id = e._artifact ORDER BY a.path"
    ).fetchall()
    for path, site, vdir, expected, actual, ok in rows:
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
