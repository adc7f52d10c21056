"""Mailbox sessions turned into finding-shaped entries: "mailbox contents taken" and "mailbox read
abnormally", one per mailbox and host, shaped like the result's `findings[]` entries."""

from __future__ import annotations

import json
from typing import Any

from exhunt.analytics.sqlutil import EVENTS, EWS, HTTPPROXY, IIS, TRACKING, Table
from exhunt.case import CaseReader

TAKEN = "analytics-mailbox-taken"
ABNORMAL = "analytics-mailbox-abnormal-read"
ATTACK = {
    "ssrf-ews": ["T1114.002", "T1190"],
    "stolen-credentials": ["T1114.002", "T1078"],
    "export-cmdlet": ["T1114.002"],
    "export-file-download": ["T1114.002", "T1048"],
    "forwarding": ["T1114.003"],
    "delegate/permission": ["T1114.002", "T1098.002"],
}
BIG = 10_000_000  # bytes: a mailbox with more than this taken is critical whatever the path
SOURCE_FAMILIES = {"ews": EWS, "httpproxy": HTTPPROXY, "iis": IIS, "tracking": TRACKING}  # evidence label -> family


def mailbox_findings(case: CaseReader, sessions: list[dict[str, Any]], samples: int = 5) -> list[dict[str, Any]]:
    """One entry per (host, mailbox, verdict) for the `taken` and `abnormal` sessions."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for s in sessions:
        if s["verdict"] in ("taken", "abnormal"):
            groups.setdefault((s["host"], s["mailbox_key"], s["verdict"]), []).append(s)
    out: list[dict[str, Any]] = []
    picked: list[list[dict[str, Any]]] = []
    for (host, _key, verdict), ss in groups.items():
        paths = sorted({s["path"] for s in ss})
        nbytes = sum(s["bytes"] or 0 for s in ss)
        items = sum(s["items"] for s in ss)
        taken = verdict == "taken"
        critical = nbytes >= BIG or any(p in ("ssrf-ews", "export-file-download") for p in paths)
        severity = "critical" if taken and critical else "high"
        mailbox = max((s["mailbox"] for s in ss), key=lambda m: ("@" in m, len(m)))
        evidence = [e for s in ss for e in s["evidence"]]
        evidence.sort(key=lambda e: (e["time"] or "", e["path"] or "", e["line"] or 0))
        picked.append([dict(e) for e in evidence[:samples]])
        accessors = sorted({s["accessor"] for s in ss if s["accessor"]})
        ips = sorted({s["client_ip"] for s in ss if s["client_ip"]})
        out.append({
            "rule": TAKEN if taken else ABNORMAL,
            "title": f"Mailbox contents taken: {mailbox}" if taken else f"Mailbox read abnormally: {mailbox}",
            "severity": severity,
            "confidence": "high" if taken else "medium",
            "kind": "post-exploitation",
            "campaign": None,
            "cves": ["CVE-2021-26855"] if "ssrf-ews" in paths else [],
            "attack": sorted({t for p in paths for t in ATTACK.get(p, ["T1114.002"])}),
            "host": host,
            "group": {"mailbox": mailbox, "paths": paths, "accessors": accessors, "client_ips": ips},
            "first_seen": min(s["first"] for s in ss),
            "last_seen": max(s["last"] for s in ss),
            "count": sum(s["requests"] for s in ss),
            "note": _note(ss, nbytes, items),
            "evidence": [],
        })  # fmt: skip
    attach_records(case, [e for ev in picked for e in ev])
    for f, ev in zip(out, picked, strict=True):
        f["evidence"] = _records(ev)
    out.sort(key=lambda f: (f["severity"] != "critical", f["first_seen"] or "", f["group"]["mailbox"]))
    return out


def _note(ss: list[dict[str, Any]], nbytes: int, items: int) -> str:
    parts = []
    for s in ss:
        ops = ", ".join(f"{k} x{v}" for k, v in s["operations"].items())
        who = s["accessor"] or "unauthenticated"
        src = f" from {s['client_ip']}" if s["client_ip"] else ""
        parts.append(f"{s['path']}: {who}{src} ({ops})")
    size = f"{nbytes:,} bytes" if nbytes else "size not logged"
    return (
        f"{items} item(s), {size}; "
        + "; ".join(parts)
        + ". Why: "
        + "; ".join(dict.fromkeys(r for s in ss for r in s["reasons"]))
    )


def _records(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence entries with the parsed record re-read from the case (raw lines stay in the files)."""
    return [
        {"path": e["path"], "line": e["line"], "record_id": None, "time": e["time"], "record": e.get("record", {}),
         "raw": None}
        for e in evidence
    ]  # fmt: skip


def attach_records(case: CaseReader, evidence: list[dict[str, Any]]) -> None:
    """Give each evidence entry its parsed record from the case: one query per source family."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for e in evidence:
        if e.get("artifact") is not None:
            by_source.setdefault(e.get("source", ""), []).append(e)
    for source, items in by_source.items():
        if source == "cmdlet":
            fam, cols = EVENTS, "t.data"
        elif source in SOURCE_FAMILIES and Table(case, SOURCE_FAMILIES[source]).exists:
            fam = SOURCE_FAMILIES[source]
            cols = case.fields_sql(fam.table)
        else:
            continue
        got = case.rows_at(fam, [(e["artifact"], e["line"]) for e in items], cols)
        found = {}
        for key, rec in got.items():
            if source == "cmdlet":
                found[key] = json.loads(rec["data"]) if rec["data"] else {}
            else:
                found[key] = {n: v for n, v in rec.items() if v not in (None, "")}
        for e in items:
            e["record"] = found.get((e["artifact"], e["line"]), {})
