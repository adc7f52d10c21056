"""A STIX 2.1 bundle of what the attacker left: IPs, user agents and web-shell files.

For each observable, built with the `stix2` library: the cyber-observable object, an `indicator`
(a STIX pattern), `observed-data` (first/last time, count) and a `sighting` of the indicator on the
host(s) it was seen on; CVEs become `vulnerability` objects and ATT&CK ids `attack-pattern` objects,
each linked from the indicators with `indicates` relationships; one `report` object, the scan's
verdict and reason, refers to everything.

Observables come from findings that show an attack (exploitation, web shell, post-exploitation,
indicator; medium severity or more). Client addresses are taken from the client-IP columns only,
never a server's own address (any s-ip in the evidence), loopback or link-local; user agents from the user-agent columns; files from
file evidence with a SHA-256.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import stix2

from exhunt.report.common import SEVERITY_RANK, findings, parse_time

ATTACK_KINDS = {"exploitation", "webshell", "post-exploitation", "indicator"}
MIN_RANK = SEVERITY_RANK["medium"]
CLIENT_IP_COLUMNS = ("c-ip", "ClientIpAddress", "ClientIp", "client_ip")
SERVER_IP_COLUMNS = ("s-ip", "ServerIpAddress")
USER_AGENT_COLUMNS = ("cs(User-Agent)", "UserAgent", "user_agent")
VALUE_LIMIT = 1024


@dataclass
class Seen:
    """One observable across findings: when, how often, where and by which rules."""

    first: datetime | None = None
    last: datetime | None = None
    count: int = 0
    hosts: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    cves: set[str] = field(default_factory=set)
    attack: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    name: str = ""
    request: tuple[str, str] | None = None  # method and path of the first request seen

    def add(self, finding: dict[str, Any], count: int, when: list[datetime | None]) -> None:
        times = [t for t in when if t is not None]
        if times:
            self.first = min([*times, self.first] if self.first else times)
            self.last = max([*times, self.last] if self.last else times)
        self.count += max(count, 1)
        self.hosts.add(str(finding.get("host") or "unknown host"))
        self.rules.add(str(finding.get("rule") or ""))
        self.cves.update(str(c) for c in finding.get("cves") or [])
        self.attack.update(str(a) for a in finding.get("attack") or [])


def _ip(value: object) -> str | None:
    try:
        address = ipaddress.ip_address(str(value or "").strip())
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified or address.is_link_local:
        return None
    return str(address)


def _attack_findings(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        f
        for f in findings(doc)
        if str(f.get("kind")) in ATTACK_KINDS and SEVERITY_RANK.get(str(f.get("severity")).lower(), 0) >= MIN_RANK
    ]


def _server_addresses(doc: dict[str, Any]) -> set[str]:
    """The servers' own addresses (IIS s-ip of any record): a back-end or SSRF request the server
    made to itself shows it as the client, and it is not the attacker's."""
    out = set()
    for finding in findings(doc):
        for item in finding.get("evidence") or []:
            record = item.get("record") if isinstance(item, dict) and isinstance(item.get("record"), dict) else {}
            out.update(ip for c in SERVER_IP_COLUMNS if (ip := _ip(record.get(c))))
    return out


def observables(doc: dict[str, Any]) -> dict[str, dict[str, Seen]]:
    """{"ip" | "user_agent" | "file": {value: Seen}} from the attack findings."""
    seen: dict[str, dict[str, Seen]] = {"ip": {}, "user_agent": {}, "file": {}}
    servers = _server_addresses(doc)
    for finding in _attack_findings(doc):
        span = [parse_time(finding.get("first_seen")), parse_time(finding.get("last_seen"))]
        group = finding.get("group") if isinstance(finding.get("group"), dict) else {}
        grouped_ips = {ip for c in CLIENT_IP_COLUMNS if (ip := _ip(group.get(c))) and ip not in servers}
        for ip in grouped_ips:
            seen["ip"].setdefault(ip, Seen()).add(finding, int(finding.get("count") or 1), span)
        for item in finding.get("evidence") or []:
            record = item.get("record") if isinstance(item, dict) and isinstance(item.get("record"), dict) else {}
            when = [parse_time(item.get("time")) or span[0]]
            ips = {ip for c in CLIENT_IP_COLUMNS if (ip := _ip(record.get(c))) and ip not in servers}
            for ip in ips - grouped_ips:
                seen["ip"].setdefault(ip, Seen()).add(finding, 1, when)
            for column in USER_AGENT_COLUMNS:
                agent = record.get(column)
                if isinstance(agent, str) and agent.strip() not in ("", "-"):
                    entry = seen["user_agent"].setdefault(agent[:VALUE_LIMIT], Seen())
                    entry.add(finding, 1, when)
                    entry.ips.update(ips)
                    method = record.get("cs-method") or record.get("Method")
                    path = record.get("cs-uri-stem") or record.get("UrlStem")
                    if entry.request is None and isinstance(method, str) and isinstance(path, str) and method and path:
                        entry.request = (method[:VALUE_LIMIT], path[:VALUE_LIMIT])
            sha = record.get("sha256")
            if record.get("kind") == "file" and isinstance(sha, str) and len(sha) == 64:
                entry = seen["file"].setdefault(sha.lower(), Seen())
                entry.add(finding, 1, [parse_time(item.get("time")) or span[0]])
                entry.name = str(record.get("name") or entry.name)
    return seen


def pattern_string(value: str) -> str:
    """A STIX pattern string literal: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bundle(doc: dict[str, Any], now: datetime | None = None) -> stix2.Bundle:
    """The STIX 2.1 bundle of a result document."""
    now = now or datetime.now(UTC)
    author = stix2.Identity(name="exhunt", identity_class="system", description="exhunt scan of Exchange server logs")
    objects: list[Any] = [author]
    host_ids: dict[str, str] = {}
    for host in sorted(
        {str(f.get("host") or "unknown host") for f in findings(doc)} | set(map(str, doc.get("hosts") or []))
    ):
        identity = stix2.Identity(name=host, identity_class="system", created_by_ref=author.id)
        host_ids[host] = identity.id
        objects.append(identity)
    vulnerabilities: dict[str, str] = {}
    techniques: dict[str, str] = {}

    def targets(entry: Seen) -> list[str]:
        out = []
        for cve in sorted(entry.cves):
            if cve not in vulnerabilities:
                vuln = stix2.Vulnerability(
                    name=cve, created_by_ref=author.id, external_references=[{"source_name": "cve", "external_id": cve}]
                )
                vulnerabilities[cve] = vuln.id
                objects.append(vuln)
            out.append(vulnerabilities[cve])
        for technique in sorted(entry.attack):
            if technique not in techniques:
                pattern = stix2.AttackPattern(
                    name=f"MITRE ATT&CK {technique}",
                    created_by_ref=author.id,
                    external_references=[
                        {
                            "source_name": "mitre-attack",
                            "external_id": technique,
                            "url": f"https://attack.mitre.org/techniques/{technique.replace('.', '/')}/",
                        }
                    ],
                )
                techniques[technique] = pattern.id
                objects.append(pattern)
            out.append(techniques[technique])
        return out

    def record(observable: Any | None, entry: Seen, name: str, pattern: str) -> None:
        """Indicator, sighting and links of one observable; observed-data when there is an object."""
        first = entry.first or now
        last = entry.last or first
        indicator = stix2.Indicator(
            name=name,
            description=f"seen by exhunt rules {', '.join(sorted(entry.rules))} on {', '.join(sorted(entry.hosts))}",
            pattern=pattern,
            pattern_type="stix",
            valid_from=first,
            indicator_types=["malicious-activity"],
            created_by_ref=author.id,
        )
        count = max(1, min(entry.count, 999_999_999))
        observed = None
        if observable is not None:
            observed = stix2.ObservedData(
                first_observed=first, last_observed=last, number_observed=count, object_refs=[observable.id],
                created_by_ref=author.id,
            )  # fmt: skip
        sighting = stix2.Sighting(
            sighting_of_ref=indicator.id,
            observed_data_refs=[observed.id] if observed else None,
            where_sighted_refs=[host_ids[h] for h in sorted(entry.hosts) if h in host_ids],
            first_seen=first,
            last_seen=last,
            count=count,
            created_by_ref=author.id,
        )
        links = [
            stix2.Relationship(indicator.id, "indicates", target, created_by_ref=author.id) for target in targets(entry)
        ]
        objects.extend([o for o in (observable, observed) if o is not None] + [indicator, sighting, *links])

    seen = observables(doc)
    addresses: dict[str, Any] = {}
    for ip, entry in sorted(seen["ip"].items()):
        v6 = ":" in ip
        address = stix2.IPv6Address(value=ip) if v6 else stix2.IPv4Address(value=ip)
        addresses[ip] = address
        kind = "ipv6-addr" if v6 else "ipv4-addr"
        record(address, entry, f"Attacker IP address {ip}", f"[{kind}:value = {pattern_string(ip)}]")
    for agent, entry in sorted(seen["user_agent"].items()):
        # network-traffic needs an address and the HTTP extension a method and path: taken from the
        # first request with this agent (only the indicator and its sighting when they are unknown)
        sources = [addresses[ip] for ip in sorted(entry.ips) if ip in addresses]
        traffic = None
        if sources and entry.request:
            http = {
                "request_method": entry.request[0],
                "request_value": entry.request[1],
                "request_header": {"User-Agent": agent},
            }
            traffic = stix2.NetworkTraffic(
                src_ref=sources[0].id, protocols=["http"], extensions={"http-request-ext": http}
            )
        pattern = (
            f"[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = {pattern_string(agent)}]"
        )
        record(traffic, entry, f"Attacker user agent {agent[:200]}", pattern)
    for sha, entry in sorted(seen["file"].items()):
        file = stix2.File(name=entry.name or sha, hashes={"SHA-256": sha})
        record(
            file,
            entry,
            f"Web shell or attacker file {entry.name or sha}",
            f"[file:hashes.'SHA-256' = {pattern_string(sha)}]",
        )

    published = parse_time(doc.get("finished")) or now
    refs = [o.id for o in objects]
    report = stix2.Report(
        name=f"exhunt: {doc.get('verdict', 'UNKNOWN')} · {', '.join(map(str, doc.get('hosts') or [])) or 'no host'}",
        description=str(doc.get("reason") or ""),
        published=published,
        report_types=["threat-report"],
        object_refs=refs,
        created_by_ref=author.id,
        labels=[str(doc.get("verdict") or "unknown").lower().replace(" ", "-")],
    )
    return stix2.Bundle(objects=[*objects, report])


def write(doc: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(json.loads(bundle(doc).serialize()), indent=2, ensure_ascii=True) + "\n")
