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
    rows = [{**w.to_dict(), "exposure": window_exposure(w.build)} for w in windows]
    return {"windows": rows, "mitigations": mitigations, "text": [w.text for w in windows]}


def window_exposure(build: str) -> dict[str, Any]:
    """Everything known today (the table's date) about a build a collection shows, for every family."""
    try:
        found = answer(build)
    except (UsageError, ValueError):
        return {"as_of": None, "verdict": "unknown", "exposed": [], "known_exploited": [], "missing_updates": []}
    return {
        "as_of": found.as_of,
        "verdict": found.verdict,
        "support": found.support.text,
        "missing_updates": [u.update for u in found.missing],
        "exposed": [c.cve for c in found.exposed],
        "known_exploited": [c.cve for c in found.known_exploited],
    }
