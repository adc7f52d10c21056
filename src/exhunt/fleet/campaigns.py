"""Indicators per host, the ones hosts share, and campaigns: hosts linked by shared indicators.

Indicators come from a host's findings, never from its raw logs: the client IPs a finding is grouped
by (and its evidence's client IPs), user agents from evidence records, web-shell file names and SHA-256
from web-shell findings. Scanning and context findings give none (every Internet-facing server sees the
same scanners). Internal addresses (RFC 1918, loopback, link-local, CGNAT) name the server's own network
and are left out. Hosts sharing an IP, a file hash or a web-shell name are linked; each connected group
of two or more hosts is one campaign. User agents are listed when shared but do not link hosts: a
browser user agent is shared by millions of clients.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import PureWindowsPath
from typing import Any

_SOURCES = ("exploitation", "webshell", "post-exploitation", "indicator")
_IP_FIELDS = ("c-ip", "ClientIpAddress", "client_ip", "data.IpAddress", "data.SourceIp", "ClientIp")
_UA_FIELDS = ("cs(User-Agent)", "UserAgent")
_PATH_FIELDS = ("win_path", "path", "cs-uri-stem", "url_stem", "data.TargetFilename")
_INTERNAL = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
              "0.0.0.0/8", "::1/128", "fe80::/10", "fc00::/7", "::/128")
]  # fmt: skip
LINKING = ("ip", "sha256", "webshell")


def _ip(text: Any) -> str | None:
    if not isinstance(text, str) or not text or text == "-":
        return None
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if any(ip in n for n in _INTERNAL if n.version == ip.version):
        return None
    return str(ip)


def host_indicators(result: dict[str, Any]) -> list[dict[str, Any]]:
    """[{type, value, first_seen, rules}] for one host's result document."""
    found: dict[tuple[str, str], dict[str, Any]] = {}

    def add(kind: str, value: str | None, finding: dict[str, Any]) -> None:
        if not value:
            return
        value = value[:500]
        item = found.setdefault((kind, value), {"type": kind, "value": value, "first_seen": None, "rules": set()})
        item["rules"].add(finding["rule"])
        fs = finding.get("first_seen")
        if fs and (item["first_seen"] is None or fs < item["first_seen"]):
            item["first_seen"] = fs

    for f in result.get("findings", []):
        if f.get("kind") not in _SOURCES:
            continue
        group = f.get("group") or {}
        for k in _IP_FIELDS:
            add("ip", _ip(group.get(k)), f)
        for ev in f.get("evidence") or []:
            rec = ev.get("record") or {}
            if not isinstance(rec, dict):
                continue
            for k in _IP_FIELDS:
                add("ip", _ip(rec.get(k)), f)
            for k in _UA_FIELDS:
                ua = rec.get(k)
                if isinstance(ua, str) and ua not in ("", "-"):
                    add("user_agent", ua.replace("+", " ") if k == "cs(User-Agent)" else ua, f)
            if f.get("kind") == "webshell" and isinstance(rec.get("sha256"), str):
                add("sha256", rec["sha256"].lower(), f)
        if f.get("kind") == "webshell":
            for k in _PATH_FIELDS:
                v = group.get(k)
                if isinstance(v, str) and v.lower().endswith((".aspx", ".asmx", ".ashx", ".asp", ".php", ".jsp")):
                    add("webshell", PureWindowsPath(v.replace("/", "\\")).name.lower(), f)
    out = []
    for item in found.values():
        item["rules"] = sorted(item["rules"])
        out.append(item)
    out.sort(key=lambda i: (i["type"], i["value"]))
    return out


def shared_indicators(per_host: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Indicators seen on two or more hosts: [{type, value, hosts, first_seen}]."""
    where: dict[tuple[str, str], dict[str, Any]] = {}
    for host, items in per_host.items():
        for i in items:
            e = where.setdefault(
                (i["type"], i["value"]), {"type": i["type"], "value": i["value"], "hosts": [], "first_seen": None}
            )
            e["hosts"].append(host)
            if i["first_seen"] and (e["first_seen"] is None or i["first_seen"] < e["first_seen"]):
                e["first_seen"] = i["first_seen"]
    out = [dict(e, hosts=sorted(e["hosts"])) for e in where.values() if len(e["hosts"]) >= 2]
    out.sort(key=lambda e: (-len(e["hosts"]), e["type"], e["value"]))
    return out


def campaigns(
    shared: list[dict[str, Any]], tenant_of: dict[str, str], first_of: dict[str, str | None]
) -> list[dict[str, Any]]:
    """Connected groups of hosts linked by shared IPs, hashes and web-shell names, largest first."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for e in shared:
        if e["type"] in LINKING:
            root = find(e["hosts"][0])
            for h in e["hosts"][1:]:
                parent[find(h)] = root
    members: dict[str, set[str]] = defaultdict(set)
    for h in parent:
        members[find(h)].add(h)
    out = []
    for hosts in members.values():
        if len(hosts) < 2:
            continue
        inds = [e for e in shared if set(e["hosts"]) & hosts]
        firsts = sorted(t for h in hosts if (t := first_of.get(h)))
        out.append(
            {
                "hosts": sorted(hosts, key=lambda h: (first_of.get(h) or "~", h)),
                "tenants": sorted({tenant_of.get(h, "") for h in hosts}),
                "first_seen": firsts[0] if firsts else None,
                "indicators": [{"type": e["type"], "value": e["value"], "hosts": len(e["hosts"])} for e in inds],
            }
        )
    out.sort(key=lambda c: (-len(c["hosts"]), c["first_seen"] or "~"))
    for i, c in enumerate(out, 1):
        c["id"] = f"C{i}"
    return out
