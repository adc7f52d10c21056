"""Spikes against each host's own history, and the fleet-wide wave they form.

Method (stated in every result under `fleet.method`): a seasonal Poisson tail test. For host h, class c
and hour t with count k, the expected rate is

    lambda = max(median of c's counts at t's hour of day on h's other days,
                 mean of c's hourly count over h's other hours,
                 FLOOR)

and t is a spike when k >= MIN_COUNT and P(X >= k | Poisson(lambda)) < ALPHA. The same-hour median keeps
a scan that arrives every day at 03:00 from looking new at 03:00; the overall mean keeps a host that is
always busy from being compared with zero; FLOOR keeps a host with no history from turning one record
into a spike. Hours with no records of a class count as 0 between the host's first and last logged hour.

A host joins the wave at its first exploitation or web-shell spike; its join time is the first
exploitation/web-shell finding inside that hour (the hour itself when none falls inside). Join times
closer than WAVE_GAP_HOURS chain into one wave; the reported wave is the one with the most hosts (the
earliest on a tie). A wave needs WAVE_MIN_HOSTS hosts to be called fleet-wide.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from exhunt.fleet.hourly import CLASSES

MIN_COUNT = 5
ALPHA = 1e-4
FLOOR = 0.5
WAVE_GAP_HOURS = 24
WAVE_MIN_HOSTS = 2
WAVE_CLASSES = ("exploitation", "webshell")

METHOD = {
    "name": "seasonal Poisson tail test",
    "baseline": "max(same hour-of-day median over the host's other days, host's mean hourly count, floor)",
    "floor": FLOOR,
    "min_count": MIN_COUNT,
    "alpha": ALPHA,
    "season": "24 h, UTC",
    "wave_classes": list(WAVE_CLASSES),
    "wave_gap_hours": WAVE_GAP_HOURS,
    "wave_min_hosts": WAVE_MIN_HOSTS,
    "counts": "request-log records (IIS + HttpProxy) per hour matching the class's built-in rules",
}


def poisson_tail(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam), summed from k upward in log space (no underflow to 0 before 1e-300)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    if k <= lam:  # the bulk: 1 - cdf is accurate enough here
        cdf = math.fsum(math.exp(i * math.log(lam) - lam - math.lgamma(i + 1)) for i in range(k))
        return max(0.0, 1.0 - cdf)
    total, i = 0.0, k
    while True:
        term = math.exp(i * math.log(lam) - lam - math.lgamma(i + 1))
        total += term
        if term < total * 1e-12 or term == 0.0:
            return min(1.0, total)
        i += 1


def _parse(hour: str) -> datetime:
    return datetime.strptime(hour, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def host_spikes(hourly: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spikes of one host: [{hour, class, count, expected, p}] in hour order."""
    if not hourly:
        return []
    hours = sorted({_parse(r["hour"]) for r in hourly})
    first, last = hours[0], hours[-1]
    span = [first + timedelta(hours=i) for i in range(int((last - first).total_seconds() // 3600) + 1)]
    by: dict[str, dict[datetime, int]] = defaultdict(dict)
    for r in hourly:
        by[r["class"]][_parse(r["hour"])] = int(r["count"])
    out = []
    for cls in CLASSES:
        counts = [by[cls].get(t, 0) for t in span]
        total = sum(counts)
        for i, (t, k) in enumerate(zip(span, counts, strict=True)):
            if k < MIN_COUNT:
                continue
            same_hour = [counts[j] for j in range(i % 24, len(span), 24) if j != i]
            others = len(span) - 1
            mean = (total - k) / others if others else 0.0
            lam = max(statistics.median(same_hour) if same_hour else 0.0, mean, FLOOR)
            p = poisson_tail(k, lam)
            if p < ALPHA:
                out.append({"hour": _fmt(t), "class": cls, "count": k, "expected": round(lam, 3), "p": p})
    out.sort(key=lambda s: (s["hour"], s["class"]))
    return out


def join_time(spikes: list[dict[str, Any]], findings: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(join hour, join time) of a host: its first exploitation/web-shell spike, refined by its findings."""
    wave = [s for s in spikes if s["class"] in WAVE_CLASSES]
    if not wave:
        return None
    hour = wave[0]["hour"]
    t0 = _parse(hour)
    inside = sorted(
        f["first_seen"]
        for f in findings
        if f.get("kind") in ("exploitation", "webshell")
        and f.get("first_seen")
        and t0 <= _ts(f["first_seen"]) < t0 + timedelta(hours=1)
    )
    return hour, (_fmt_exact(_ts(inside[0])) if inside else hour)


def _ts(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _fmt_exact(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def waves(joins: dict[str, tuple[str, str]], hourly_by_host: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Chain hosts' join times into waves; each with start hour, size (hosts, records) and join order."""
    order = sorted(joins.items(), key=lambda kv: (kv[1][1], kv[0]))
    groups: list[list[tuple[str, tuple[str, str]]]] = []
    for key, (hour, exact) in order:
        if groups and _ts(exact) - _ts(groups[-1][-1][1][1]) <= timedelta(hours=WAVE_GAP_HOURS):
            groups[-1].append((key, (hour, exact)))
        else:
            groups.append([(key, (hour, exact))])
    out = []
    for g in groups:
        start = _parse(g[0][1][0])
        end = _parse(max(h for _, (h, _) in g)) + timedelta(hours=1)
        records = {c: 0 for c in WAVE_CLASSES}
        for key, _ in g:
            for r in hourly_by_host.get(key, []):
                if r["class"] in records and start <= _parse(r["hour"]) < end + timedelta(hours=WAVE_GAP_HOURS):
                    records[r["class"]] += int(r["count"])
        out.append(
            {
                "start_hour": _fmt(start),
                "end_hour": _fmt(end),
                "hosts": len(g),
                "records": records,
                "fleet_wide": len(g) >= WAVE_MIN_HOSTS,
                "order": [{"host": key, "join_hour": hour, "first_seen": exact} for key, (hour, exact) in g],
            }
        )
    return out


def main_wave(all_waves: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The wave with the most hosts, the earliest on a tie; None when no host spiked."""
    if not all_waves:
        return None
    return sorted(all_waves, key=lambda w: (-w["hosts"], w["start_hour"]))[0]
