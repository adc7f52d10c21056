"""The fleet view from per-host records: ranked hosts, hourly counts, spikes, waves, campaigns, tenants."""

from __future__ import annotations

from typing import Any

from exhunt.fleet.campaigns import campaigns, host_indicators, shared_indicators
from exhunt.fleet.discover import Discovery
from exhunt.fleet.spikes import METHOD, host_spikes, join_time, main_wave, waves
from exhunt.judge import severity_rank

FAILED = "FAILED"
_VERDICT_RANK = {"COMPROMISED": 4, "SUSPICIOUS": 3, FAILED: 2, "INCOMPLETE": 2, "NO EVIDENCE FOUND": 0}
_COMPROMISE_KINDS = ("exploitation", "webshell", "post-exploitation")


def first_compromise(result: dict[str, Any]) -> str | None:
    """The earliest high/critical exploitation, web-shell or post-exploitation finding of a host."""
    times = [
        f["first_seen"]
        for f in result.get("findings", [])
        if f.get("kind") in _COMPROMISE_KINDS and f.get("severity") in ("high", "critical") and f.get("first_seen")
    ]
    return min(times) if times else None


def analyse(disc: Discovery, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    hosts: list[dict[str, Any]] = []
    indicators: dict[str, list[dict[str, Any]]] = {}
    joins: dict[str, tuple[str, str]] = {}
    hourly: list[dict[str, Any]] = []
    hourly_by_host: dict[str, list[dict[str, Any]]] = {}
    for spec in disc.hosts:
        rec = records[spec.key]
        res = rec.get("result")
        row: dict[str, Any] = {
            "key": spec.key, "tenant": spec.tenant, "name": spec.name, "path": str(spec.path),
            "status": rec["status"], "reason": rec.get("reason"), "attempts": rec.get("attempts", 0),
        }  # fmt: skip
        if res is None:
            row.update(verdict=FAILED, exit_code=3, severity=None, findings=0, first_compromise=None,
                       join_hour=None, spikes=[], bytes_read=0, result=None, case=None)  # fmt: skip
        else:
            spikes = host_spikes(rec.get("hourly", []))
            j = join_time(spikes, res.get("findings", []))
            if j:
                joins[spec.key] = j
            sev = max((f["severity"] for f in res.get("findings", [])), key=severity_rank, default=None)
            indicators[spec.key] = host_indicators(res)
            row.update(
                verdict=res["verdict"], reason=rec.get("reason") or res.get("reason"), exit_code=res["exit_code"],
                severity=sev, findings=len(res.get("findings", [])), first_compromise=first_compromise(res),
                join_hour=j[0] if j else None, spikes=spikes, bytes_read=res["stats"]["bytes_read"],
                result=f"hosts/{spec.key}/result.json", case=f"hosts/{spec.key}/case.duckdb",
                indicators=indicators[spec.key], hourly_error=rec.get("hourly_error"),
            )  # fmt: skip
        hourly_by_host[spec.key] = rec.get("hourly", [])
        hourly.extend({"host": spec.key, **h} for h in rec.get("hourly", []))
        hosts.append(row)
    hosts.sort(
        key=lambda h: (
            -_VERDICT_RANK.get(h["verdict"], 1),
            -severity_rank(h["severity"]) if h["severity"] else 0,
            h["first_compromise"] or "~",
            h["key"],
        )
    )
    for rank, h in enumerate(hosts, 1):
        h["rank"] = rank
    all_waves = waves(joins, hourly_by_host)
    wave = main_wave(all_waves)
    shared = shared_indicators(indicators)
    tenant_of = {h["key"]: h["tenant"] for h in hosts}
    first_of = {h["key"]: h["first_compromise"] for h in hosts}
    return {
        "verdict": _fleet_verdict(hosts),
        "method": METHOD,
        "hosts": hosts,
        "hourly": hourly,
        "wave": wave if wave and wave["fleet_wide"] else None,
        "waves": all_waves,
        "shared_indicators": shared,
        "campaigns": campaigns(shared, tenant_of, first_of),
        "tenants": _tenants(disc, hosts),
        "problems": disc.problems,
    }


def _fleet_verdict(hosts: list[dict[str, Any]]) -> str:
    verdicts = {h["verdict"] for h in hosts}
    for v in ("COMPROMISED", "SUSPICIOUS"):
        if v in verdicts:
            return v
    if verdicts & {FAILED, "INCOMPLETE"} or not hosts:
        return "INCOMPLETE"
    return "NO EVIDENCE FOUND"


def _tenants(disc: Discovery, hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = sorted(set(disc.tenants) | {h["tenant"] for h in hosts})
    out = []
    for t in names:
        mine = [h for h in hosts if h["tenant"] == t]
        firsts = sorted(h["first_compromise"] for h in mine if h["first_compromise"])
        out.append(
            {
                "tenant": t,
                "hosts": len(mine),
                "compromised": sum(h["verdict"] == "COMPROMISED" for h in mine),
                "suspicious": sum(h["verdict"] == "SUSPICIOUS" for h in mine),
                "clean": sum(h["verdict"] == "NO EVIDENCE FOUND" for h in mine),
                "incomplete": sum(h["verdict"] == "INCOMPLETE" for h in mine),
                "failed": sum(h["verdict"] == FAILED for h in mine),
                "first_compromise": firsts[0] if firsts else None,
                "note": "tenant folder holds no host collection" if not mine else None,
            }
        )
    return out
