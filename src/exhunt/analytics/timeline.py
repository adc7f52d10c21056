"""One chronological story per host: findings, mailbox thefts and the attacker's other records.

Each entry carries a phase and an ATT&CK technique, the values that tie it to the rest (client
address, account, user agent, web path, request id) and its evidence as (path, line). The pivot:
every record from an address, account or rare user agent of a high-confidence finding, and every
request to a web-shell path, joins the timeline, summarised per (host, source, client, account,
agent, path, status) and bounded; an address or account that only shows up through the pivot is a
lead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from datetime import datetime
from typing import Any

import pyarrow as pa

from exhunt.analytics.sqlutil import HTTPPROXY, IIS, Table
from exhunt.case import CaseReader

PHASES = (
    "reconnaissance", "initial access", "persistence", "execution", "privilege escalation", "credential access",
    "lateral movement", "collection", "exfiltration", "defence evasion", "impact",
)  # fmt: skip
# the phases that say the intrusion went past the mail server, most serious first: a finding with a
# technique of one of them is placed there whatever its other techniques
BEYOND_SERVER = ("impact", "lateral movement", "privilege escalation")
TECHNIQUE_PHASE = {
    "T1595": "reconnaissance", "T1592": "reconnaissance", "T1190": "initial access", "T1078": "initial access",
    "T1505": "persistence", "T1098": "persistence", "T1136": "persistence", "T1059": "execution",
    "T1095": "execution", "T1572": "execution", "T1090": "execution", "T1003": "credential access",
    "T1560": "collection", "T1074": "collection", "T1114": "collection", "T1048": "exfiltration",
    "T1041": "exfiltration", "T1567": "exfiltration", "T1070": "defence evasion",
    "T1222": "privilege escalation", "T1484": "privilege escalation", "T1134": "privilege escalation",
    "T1068": "privilege escalation", "T1021": "lateral movement", "T1570": "lateral movement",
    "T1550": "lateral movement", "T1557": "credential access", "T1558": "credential access",
    "T1187": "credential access", "T1543": "persistence", "T1053": "persistence", "T1546": "persistence",
    "T1547": "persistence", "T1569": "execution", "T1486": "impact", "T1490": "impact", "T1496": "impact",
    "T1489": "impact", "T1485": "impact",
}  # fmt: skip
SESSION_PHASE = {
    "export-file-download": ("exfiltration", "T1048"),
    "forwarding": ("exfiltration", "T1114.003"),
    "delegate/permission": ("collection", "T1114.002"),
}
IP_FIELDS = ("c-ip", "ClientIpAddress", "client_ip", "client-ip", "IpAddress", "SourceAddress")
UA_FIELDS = ("cs(User-Agent)", "UserAgent")
ACCOUNT_FIELDS = ("cs-username", "AuthenticatedUser", "param3", "SubjectUserName", "TargetUserName")
STEM_FIELDS = ("cs-uri-stem", "UrlStem", "url_stem")
REQ_FIELDS = ("RequestId", "cafeReqId")
_CAFE = re.compile(r"cafeReqId=([0-9a-fA-F-]{36})")
PIVOT_LIMIT = 100  # pivot groups per source
RARE_UA_IPS = 3  # a user agent is pivoted on only when at most this many client addresses use it
QUIET_ACCOUNTS = {"nt authority\\system", "system", "-", ""}


def phase_of(f: dict[str, Any]) -> tuple[str, str | None]:
    """A finding's phase of the intrusion and the ATT&CK technique that places it there."""
    attack = list(f.get("attack") or [])
    rule = f.get("rule", "")
    if f.get("kind") == "webshell":
        used = any(w in rule for w in ("access", "process", "tunnel", "credentials", "request"))
        return ("execution" if used else "persistence"), (attack[0] if attack else "T1505.003")
    if f.get("kind") == "exploitation":
        return "initial access", next((t for t in attack if t.startswith("T1190")), attack[0] if attack else None)
    if f.get("kind") == "scanning":
        return "reconnaissance", attack[0] if attack else "T1595.002"
    for beyond in BEYOND_SERVER:
        for t in attack:
            if TECHNIQUE_PHASE.get(t.split(".")[0]) == beyond:
                return beyond, t
    for t in attack:
        phase = TECHNIQUE_PHASE.get(t.split(".")[0])
        if phase:
            return phase, t
    return "execution", attack[0] if attack else None


def _public_ip(value: str) -> bool:
    try:
        ip = ipaddress.ip_address(value.split("%")[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def ties_of(f: dict[str, Any]) -> dict[str, set[str]]:
    """The values of a finding (group and evidence records) that can tie it to other entries."""
    out: dict[str, set[str]] = {
        "ips": set(),
        "accounts": set(),
        "user_agents": set(),
        "paths": set(),
        "requests": set(),
    }
    sources = [f.get("group") or {}] + [e.get("record") or {} for e in f.get("evidence") or []]
    for rec in sources:
        if not isinstance(rec, dict):
            continue
        for k, v in rec.items():
            if not isinstance(v, str) or not v or v == "-":
                continue
            if k in IP_FIELDS or k in ("client_ips",):
                out["ips"].add(v)
            elif k in UA_FIELDS:
                out["user_agents"].add(v)
            elif k in ACCOUNT_FIELDS or k == "accessor":
                out["accounts"].add(v.lower())
            elif k in STEM_FIELDS:
                out["paths"].add(v.lower())
            elif k in REQ_FIELDS:
                out["requests"].add(v.lower())
            elif k in ("cs-uri-query", "UrlQuery") and (m := _CAFE.search(v)):
                out["requests"].add(m.group(1).lower())
        for v in rec.get("client_ips", []) if isinstance(rec.get("client_ips"), list) else []:
            out["ips"].add(str(v))
    out["ips"] = {i for i in out["ips"] if _public_ip(i)}
    out["accounts"] = {a for a in out["accounts"] if a not in QUIET_ACCOUNTS}
    return out


def _t(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() + "Z" if t else None


def _evidence(f: dict[str, Any], limit: int = 5) -> list[dict[str, Any]]:
    return [{"path": e.get("path"), "line": e.get("line")} for e in (f.get("evidence") or [])[:limit]]


def timeline(
    case: CaseReader,
    findings: list[dict[str, Any]],
    sessions: list[dict[str, Any]] | None = None,
    seeds: dict[str, set[str]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(timeline entries in time order per host, leads) from the scan's findings (result dicts), the
    mailbox sessions and the case's records."""
    entries: list[dict[str, Any]] = []
    for f in findings:
        if f.get("rule", "").startswith("analytics-") or f.get("severity") in ("info", "low"):
            continue
        phase, technique = phase_of(f)
        ties = ties_of(f)
        entries.append({
            "host": f.get("host"), "time": _iso(_t(f.get("first_seen"))), "end": _iso(_t(f.get("last_seen"))),
            "phase": phase, "technique": technique, "kind": "finding", "rule": f.get("rule"),
            "severity": f.get("severity"), "title": f.get("title"), "count": f.get("count"),
            "ties": {k: sorted(v)[:10] for k, v in ties.items() if v}, "evidence": _evidence(f),
        })  # fmt: skip
    for s in sessions or []:
        if s.get("verdict") not in ("taken", "abnormal"):
            continue
        phase, technique = SESSION_PHASE.get(s["path"], ("collection", "T1114.002"))
        ties = {"ips": [s["client_ip"]] if s["client_ip"] else [], "accounts": [s["accessor"]] if s["accessor"] else [],
                "user_agents": [s["user_agent"]] if s["user_agent"] else []}  # fmt: skip
        size = f", {s['bytes']:,} bytes" if s.get("bytes") else ""
        entries.append({
            "host": s["host"], "time": s["first"], "end": s["last"], "phase": phase, "technique": technique,
            "kind": "mailbox", "rule": "analytics-mailbox-taken" if s["verdict"] == "taken" else "analytics-mailbox-abnormal-read",
            "severity": "critical" if s["verdict"] == "taken" else "high",
            "title": f"Mailbox {s['mailbox']} {s['path']} by {s['accessor'] or 'unauthenticated'}: "
                     f"{s['requests']} request(s), {s['items']} item(s){size}",
            "count": s["requests"], "ties": {k: v for k, v in ties.items() if v},
            "evidence": [{"path": e["path"], "line": e["line"]} for e in s["evidence"][:5]],
        })  # fmt: skip
    seeds = seeds if seeds is not None else _seeds(case, findings)
    pivots, leads = _pivot(case, seeds, findings)
    entries.extend(pivots)
    _link(entries)
    entries.sort(
        key=lambda e: (e["host"] or "", e["time"] or "", PHASES.index(e["phase"]) if e["phase"] in PHASES else 9)
    )
    return entries, leads


def _seeds(case: CaseReader, findings: list[dict[str, Any]], server_ips: set[str] | None = None) -> dict[str, set[str]]:
    """Values to pivot on: from high-confidence findings of high or critical severity (never the
    server's own addresses, `server_ips`, read from the case when not given)."""
    seeds: dict[str, set[str]] = {"ips": set(), "accounts": set(), "user_agents": set(), "paths": set()}
    for f in findings:
        strong = f.get("severity") in ("high", "critical") and f.get("confidence", "high") == "high"
        if not strong:
            continue
        t = ties_of(f)
        seeds["ips"] |= t["ips"]
        seeds["accounts"] |= {a for a in t["accounts"] if not a.split("@")[0].endswith("$")}
        seeds["user_agents"] |= t["user_agents"]
        if f.get("kind") == "webshell":
            seeds["paths"] |= {p for p in t["paths"] if p.endswith((".aspx", ".ashx", ".asmx", ".asp"))}
    seeds["ips"] -= case.server_addresses() if server_ips is None else server_ips
    seeds["user_agents"] = _rare_agents(case, seeds["user_agents"])
    return seeds


def _rare_agents(case: CaseReader, agents: set[str]) -> set[str]:
    iis = Table(case, IIS)
    if not agents or not iis.has("cs(User-Agent)", "c-ip"):
        return set()
    with case.registered("_tl_ua", pa.table({"ua": sorted(agents)})):
        got = case.fetch(
            f'SELECT "cs(User-Agent)", count(DISTINCT "c-ip") FROM {iis.name} t '
            'SEMI JOIN _tl_ua u ON u.ua = t."cs(User-Agent)" GROUP BY 1'
        )
    return {ua for ua, n in got if n <= RARE_UA_IPS}


def _pivot(
    case: CaseReader, seeds: dict[str, set[str]], findings: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not any(seeds.values()):
        return [], []
    # groups of equal size are ordered by their values, so that a scan's timeline is the same every run
    known = {(e.get("path"), e.get("line")) for f in findings for e in f.get("evidence") or []}
    params = {k: pa.table({"v": sorted(v) or ["\x00"]}) for k, v in seeds.items()}  # never matches
    groups: list[tuple[Any, ...]] = []
    with contextlib.ExitStack() as stack:
        for k, t in params.items():
            stack.enter_context(case.registered(f"_tl_{k}", t))
        iis = Table(case, IIS)
        if iis.has("c-ip", "cs-uri-stem"):
            ua, user = iis.col("cs(User-Agent)"), iis.col("cs-username")
            groups += case.fetch(f"""
            SELECT 'iis', a.host, t."c-ip", lower(coalesce({user}, '')), coalesce({ua}, ''),
                   CASE WHEN lower(t."cs-uri-stem") IN (SELECT v FROM _tl_paths) THEN lower(t."cs-uri-stem")
                        ELSE regexp_extract(lower(t."cs-uri-stem"), '^/[^/]*', 0) || '/*' END,
                   try_cast({iis.col("sc-status")} AS INTEGER) AS status, count(*), min(t._ts), max(t._ts),
                   list(struct_pack(path := a.path, line := t._line) ORDER BY t._ts, a.path, t._line)[1:3]
            FROM {iis.name} t JOIN artifacts a ON a.id = t._artifact
            WHERE t."c-ip" IN (SELECT v FROM _tl_ips) OR {ua} IN (SELECT v FROM _tl_user_agents)
               OR lower(t."cs-uri-stem") IN (SELECT v FROM _tl_paths)
               OR (lower({user}) IN (SELECT v FROM _tl_accounts))
            GROUP BY ALL ORDER BY count(*) DESC, 2, 3, 4, 5, 6, 7 LIMIT {PIVOT_LIMIT}""")
        hp = Table(case, HTTPPROXY)
        if hp.has("ClientIpAddress"):
            ua, user, stem = hp.col("UserAgent"), hp.col("AuthenticatedUser"), hp.col("UrlStem")
            groups += case.fetch(f"""
            SELECT 'httpproxy', a.host, t."{hp.columns["clientipaddress"]}", lower(coalesce({user}, '')), coalesce({ua}, ''),
                   regexp_extract(lower(coalesce({stem}, '')), '^/[^/]*', 0) || '/*',
                   try_cast({hp.col("HttpStatus")} AS INTEGER), count(*), min(t._ts), max(t._ts),
                   list(struct_pack(path := a.path, line := t._line) ORDER BY t._ts, a.path, t._line)[1:3]
            FROM {hp.name} t JOIN artifacts a ON a.id = t._artifact
            WHERE t."{hp.columns["clientipaddress"]}" IN (SELECT v FROM _tl_ips) OR {ua} IN (SELECT v FROM _tl_user_agents)
               OR lower({user}) IN (SELECT v FROM _tl_accounts)
            GROUP BY ALL ORDER BY count(*) DESC, 2, 3, 4, 5, 6, 7 LIMIT {PIVOT_LIMIT}""")
    entries, lead_map = [], {}
    for src, host, ip, user, ua, stem, status, n, t0, t1, sample in groups:
        ev = [{"path": s["path"], "line": s["line"]} for s in sample]
        if all((e["path"], e["line"]) in known for e in ev) and n <= len(ev):
            continue
        why = []
        if ip in seeds["ips"]:
            why.append(f"address {ip}")
        if user and user in seeds["accounts"]:
            why.append(f"account {user}")
        if ua in seeds["user_agents"]:
            why.append("user agent")
        if stem in seeds["paths"]:
            why.append(f"web-shell path {stem}")
        shell = stem in seeds["paths"]
        phase, tech = (
            ("execution", "T1505.003") if shell
            else ("reconnaissance", "T1595") if status is not None and status >= 400
            else ("initial access", "T1190") if stem.startswith(("/ecp/", "/autodiscover", "/owa/auth")) and not user
            else ("collection", "T1114.002") if stem.startswith(("/ews", "/mapi", "/owa", "/microsoft-server-activesync"))
            else ("execution", None)
        )  # fmt: skip
        entries.append({
            "host": host, "time": _iso(t0), "end": _iso(t1), "phase": phase, "technique": tech, "kind": "pivot",
            "rule": None, "severity": None,
            "title": f"{n} {src} record(s) {status or ''} {stem or '-'} from {ip or '?'}"
                     + (f" as {user}" if user else "") + f" (pivot on {', '.join(why) or 'seed'})",
            "count": n, "ties": {k: v for k, v in {"ips": [ip] if ip else [], "accounts": [user] if user else [],
                                                     "user_agents": [ua] if ua else [], "paths": [stem] if stem else []}.items() if v},
            "evidence": ev,
        })  # fmt: skip
        for kind, value in (("ip", ip), ("account", user)):
            if not value or value in seeds["ips" if kind == "ip" else "accounts"] or value == "-":
                continue
            if kind == "ip" and (not _public_ip(value)):
                continue
            if kind == "account" and value.split("@")[0].endswith("$"):
                continue
            lead = lead_map.setdefault((host, kind, value), {
                "host": host, "kind": kind, "value": value, "via": set(), "count": 0, "first": _iso(t0),
                "last": _iso(t1), "evidence": ev,
            })  # fmt: skip
            lead["via"] |= set(why)
            lead["count"] += n
            lead["first"] = min(lead["first"] or "", _iso(t0) or "") or None
            lead["last"] = max(lead["last"] or "", _iso(t1) or "") or None
    leads = sorted(({**v, "via": sorted(v["via"])} for v in lead_map.values()), key=lambda x: -x["count"])
    return entries, leads


def _link(entries: list[dict[str, Any]]) -> None:
    """Give each entry the earlier entries of its host it shares a value with (`tied_to`, indices after sorting
    are not stable, so the link names the other entry's title and time)."""
    index: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for e in sorted(entries, key=lambda x: x["time"] or ""):
        links = []
        for kind, values in (e.get("ties") or {}).items():
            for v in values:
                for other in index.get((e["host"], kind, v), [])[-3:]:
                    links.append({"time": other["time"], "title": other["title"], "by": f"{kind[:-1]} {v}"})
                index.setdefault((e["host"], kind, v), []).append(e)
        e["tied_to"] = links[:5]


def to_table(entries: list[dict[str, Any]]) -> pa.Table:
    import json

    names = ("host", "time", "end", "phase", "technique", "kind", "rule", "severity", "title", "count")
    cols: dict[str, list[Any]] = {n: [e.get(n) for e in entries] for n in names}
    cols["ties"] = [json.dumps(e.get("ties") or {}) for e in entries]
    cols["tied_to"] = [json.dumps(e.get("tied_to") or []) for e in entries]
    cols["evidence"] = [json.dumps(e.get("evidence") or []) for e in entries]
    if not entries:
        return pa.table({n: pa.array([], pa.string()) for n in cols})
    return pa.table({k: pa.array(v, pa.int64() if k == "count" else pa.string()) for k, v in cols.items()})


def leads_table(leads: list[dict[str, Any]]) -> pa.Table:
    import json

    names = ("host", "kind", "value", "count", "first", "last")
    cols: dict[str, list[Any]] = {n: [x.get(n) for x in leads] for n in names}
    cols["via"] = [json.dumps(x.get("via") or []) for x in leads]
    cols["evidence"] = [json.dumps(x.get("evidence") or []) for x in leads]
    if not leads:
        return pa.table({n: pa.array([], pa.string()) for n in cols})
    return pa.table({k: pa.array(v, pa.int64() if k == "count" else pa.string()) for k, v in cols.items()})
