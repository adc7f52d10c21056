"""Elastic Common Schema NDJSON: one alert document per finding, one event document per evidence record.

Field names are those of ECS 8.17.0 (https://www.elastic.co/guide/en/ecs/8.17/ecs-field-reference.html);
`ecs.version` says so in every document. Log columns are mapped to their ECS fields (IIS W3C,
HttpProxy/EWS/RPS CSV columns, Windows event data, file metadata); a column without an ECS field stays
in `event.original` (the raw line). Values of typed fields (ip, long, date) are only written when they
parse as that type, so an attacker's "IP address" cannot break the index mapping.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, TextIO

from exhunt.report.common import SEVERITY_RANK, evidence_of, findings, iso, parse_time

ECS_VERSION = "8.17.0"
SEVERITY_NUMBER = {"info": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}  # risk-score bands

# log column -> ECS field (string values)
TEXT_FIELDS = {
    "cs-method": "http.request.method",
    "Method": "http.request.method",
    "HttpMethod": "http.request.method",
    "cs-uri-stem": "url.path",
    "UrlStem": "url.path",
    "cs-uri-query": "url.query",
    "UrlQuery": "url.query",
    "UrlHost": "url.domain",
    "cs(User-Agent)": "user_agent.original",
    "UserAgent": "user_agent.original",
    "cs(Referer)": "http.request.referrer",
    "cs-username": "user.name",
    "AuthenticatedUser": "user.name",
    "ClientRequestId": "http.request.id",
    "RequestId": "http.request.id",
}
IP_FIELDS = {"c-ip": "source.ip", "ClientIpAddress": "source.ip", "s-ip": "destination.ip"}
PORT_FIELDS = {"s-port": "destination.port"}
STATUS_FIELDS = ("sc-status", "HttpStatus", "StatusCode")
# Windows event data -> ECS
EVENT_DATA_TEXT = {
    "Image": "process.executable",
    "CommandLine": "process.command_line",
    "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line",
    "TargetFilename": "file.path",
    "User": "user.name",
    "SubjectUserName": "user.name",
    "NewProcessName": "process.executable",
    "ParentProcessName": "process.parent.executable",
}
EVENT_DATA_INT = {"ProcessId": "process.pid", "ParentProcessId": "process.parent.pid"}


def _put(doc: dict[str, Any], dotted: str, value: object) -> None:
    """Set a dotted ECS field in nested objects (an existing value is kept)."""
    if value is None or value == "" or value == "-":
        return
    node = doc
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node.setdefault(leaf, value)


def _ip(value: object) -> str | None:
    text = str(value or "").strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value or "").strip()
    if text.startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            return None
    return int(text) if text.lstrip("-").isdigit() and len(text) < 19 else None


def _rule(doc: dict[str, Any], finding: dict[str, Any]) -> None:
    _put(doc, "rule.id", str(finding.get("rule") or ""))
    _put(doc, "rule.name", str(finding.get("title") or ""))
    _put(doc, "rule.ruleset", "exhunt")
    _put(doc, "rule.category", str(finding.get("kind") or ""))
    cves = [str(c) for c in finding.get("cves") or []]
    if cves:
        _put(doc, "vulnerability.id", cves)
    attack = [str(a) for a in finding.get("attack") or []]
    if attack:
        _put(doc, "threat.framework", "MITRE ATT&CK")
        _put(doc, "threat.technique.id", [a.split(".")[0] for a in attack])
        subs = [a for a in attack if "." in a]
        if subs:
            _put(doc, "threat.technique.subtechnique.id", subs)
    severity = str(finding.get("severity") or "info").lower()
    _put(doc, "event.severity", SEVERITY_RANK.get(severity, 0))
    _put(doc, "event.risk_score", float(SEVERITY_NUMBER.get(severity, 1)))
    _put(doc, "host.name", str(finding.get("host") or ""))
    _put(doc, "labels.exhunt_severity", severity)
    _put(doc, "labels.exhunt_campaign", str(finding.get("campaign") or ""))


def _record(doc: dict[str, Any], record: dict[str, Any]) -> None:
    for column, value in record.items():
        if column in TEXT_FIELDS and isinstance(value, str):
            _put(doc, TEXT_FIELDS[column], value)
        elif column in IP_FIELDS:
            _put(doc, IP_FIELDS[column], _ip(value))
        elif column in PORT_FIELDS:
            _put(doc, PORT_FIELDS[column], _int(value))
        elif column in STATUS_FIELDS:
            _put(doc, "http.response.status_code", _int(value))
    if record.get("time-taken") is not None and _int(record.get("time-taken")) is not None:
        _put(doc, "event.duration", _int(record["time-taken"]) * 1_000_000)  # ms -> ns
    if "event_id" in record:  # a Windows event
        _put(doc, "event.code", str(record.get("event_id")))
        _put(doc, "event.provider", str(record.get("provider") or ""))
        _put(doc, "log.level", str(record.get("level") or ""))
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        for name, value in data.items():
            if name in EVENT_DATA_TEXT and isinstance(value, str):
                _put(doc, EVENT_DATA_TEXT[name], value)
            elif name in EVENT_DATA_INT:
                _put(doc, EVENT_DATA_INT[name], _int(value))
        if isinstance(record.get("message"), str):
            _put(doc, "message", record["message"])
    if record.get("kind") == "file":
        _put(doc, "file.path", str(record.get("win_path") or record.get("path") or ""))
        _put(doc, "file.name", str(record.get("name") or ""))
        _put(doc, "file.extension", str(record.get("ext") or "").lstrip("."))
        _put(doc, "file.size", _int(record.get("size_bytes")))
        _put(doc, "file.hash.sha256", str(record.get("sha256") or ""))
        mtime = parse_time(record.get("mtime"))
        if mtime:
            _put(doc, "file.mtime", iso(mtime))
    if "url" in doc and "path" in doc["url"]:
        query = doc["url"].get("query")
        _put(doc, "url.original", doc["url"]["path"] + (f"?{query}" if query else ""))


def documents(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The ECS documents of a result document."""
    out = []
    for number, finding in enumerate(findings(doc), 1):
        first, last = parse_time(finding.get("first_seen")), parse_time(finding.get("last_seen"))
        alert: dict[str, Any] = {"ecs": {"version": ECS_VERSION}}
        if first:
            _put(alert, "@timestamp", iso(first))
            _put(alert, "event.start", iso(first))
        if last:
            _put(alert, "event.end", iso(last))
        _put(alert, "event.kind", "alert")
        _put(alert, "event.module", "exhunt")
        _put(alert, "event.dataset", "exhunt.finding")
        _put(alert, "event.reference", f"exhunt:finding:{number}")
        _put(alert, "message", f"{finding.get('title')} ({finding.get('count')} hits)")
        _put(alert, "labels.exhunt_finding", str(number))
        _put(alert, "labels.exhunt_hit_count", str(finding.get("count")))
        _rule(alert, finding)
        out.append(alert)
    for number, finding, item in evidence_of(doc):
        when = parse_time(item.get("time")) or parse_time(finding.get("first_seen"))
        event: dict[str, Any] = {"ecs": {"version": ECS_VERSION}}
        if when:
            _put(event, "@timestamp", iso(when))
        _put(event, "event.kind", "event")
        _put(event, "event.module", "exhunt")
        _put(event, "event.dataset", "exhunt.evidence")
        _put(event, "event.reference", f"exhunt:finding:{number}")
        if isinstance(item.get("raw"), str):
            _put(event, "event.original", item["raw"])
        _put(event, "log.file.path", str(item.get("path") or ""))
        _put(event, "labels.exhunt_finding", str(number))
        if item.get("line") is not None:
            _put(event, "labels.exhunt_line", str(item["line"]))
        if item.get("record_id") is not None:
            _put(event, "event.sequence", _int(item["record_id"]))
        _record(event, item.get("record") if isinstance(item.get("record"), dict) else {})
        _rule(event, finding)
        out.append(event)
    return out


def write(doc: dict[str, Any], out: TextIO) -> None:
    for item in documents(doc):
        out.write(json.dumps(item, ensure_ascii=True, default=str) + "\n")
