"""A synthetic fleet: many small Exchange servers in tenant folders, one campaign reaching a known subset
of them in a known order, daily scanning on every server, and a fleet answer key.

Layout: `OUTDIR/<tenant>/<HOST>/{C,EventLogs}/...` (one `exhunt.synth.generate` collection per host) and
`OUTDIR/fleet_answer_key.json`. Hosts differ in seed, user count (size) and start date (period length);
every period ends on the same day, so the campaign day is inside all of them. What the generator cannot
vary: every log is written in UTC (as IIS and Exchange write them, so there is no time-zone shift to
make) and every server runs the same builds (CU18, and the March 2021 SU only when the period reaches
2021-03-09).

The campaign: the hit hosts, in a seeded random order, get the ProxyLogon chain planted one per hour
from `CAMPAIGN_START` (host n at CAMPAIGN_START + n hours + a few minutes). Every host, hit or not, is
swept by the same scanner every day at the same hour: refused probes the rules label scanning, which a
seasonal baseline must not call a spike.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from exhunt.errors import UsageError
from exhunt.synth import generate

CAMPAIGN_START = datetime(2021, 2, 25, 1, 0, tzinfo=UTC)
PERIOD_END = date(2021, 2, 27)  # exclusive: every host's logs end at 2021-02-27 00:00 UTC
SCAN_HOUR = 13  # the daily sweep, UTC
SCANNER_IP = "198.51.100.250"
SWEEP_PROBES = 12
_PROBES = (
    ("GET", "/autodiscover/autodiscover.json",
     "@evil.com/owa/&Email=autodiscover/autodiscover.json%3f@evil.com&Protocol=XYZ&FooProtocol=Powershell", "400",
     "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)+AppleWebKit/537.36+(KHTML,+like+Gecko)+Chrome/74.0.3729.169+Safari/537.36"),
    ("GET", "/owa/auth/x.js", "-", "404", "Mozilla/5.0+zgrab/0.x"),
)  # fmt: skip


def generate_fleet(
    outdir: Path,
    *,
    hosts: int = 20,
    tenants: int = 3,
    seed: int = 1,
    users: int = 3,
    days: int = 3,
    hit: int | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Write the fleet into `outdir` and return its answer key (also saved as fleet_answer_key.json)."""
    if hosts < 1 or tenants < 1 or tenants > hosts:
        raise UsageError("need at least one host per tenant")
    if days < 3:
        raise UsageError("a fleet needs at least 3 days per host (history for the spike baseline)")
    outdir = Path(outdir)
    if outdir.exists() and any(outdir.iterdir()):
        raise UsageError(f"{outdir} already exists and is not empty; choose an empty output folder")
    outdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}:fleet")
    names = [f"tenant{chr(ord('a') + t)}" if tenants <= 26 else f"tenant{t + 1:03d}" for t in range(tenants)]
    plan = [{"tenant": names[i % tenants], "host": f"EXCH{i + 1:02d}"} for i in range(hosts)]
    n_hit = hit if hit is not None else max(2, round(hosts * 0.4))
    n_hit = max(0, min(n_hit, hosts))
    order = rng.sample(range(hosts), n_hit)
    jobs = jobs or min(len(plan), os.cpu_count() or 1)
    staging = Path(tempfile.mkdtemp(prefix=".synth-staging-", dir=outdir))
    try:
        work = []
        for i, h in enumerate(plan):
            h_days = days + (i % 2)  # odd hosts start a day earlier
            position = order.index(i) if i in order else None
            attack = None
            if position is not None:
                attack = CAMPAIGN_START + timedelta(hours=position, minutes=5 + (7 * position) % 50)
            h.update(
                key=f"{h['tenant']}/{h['host']}", seed=seed * 1000 + i, users=users + (i % 3), days=h_days,
                start=(PERIOD_END - timedelta(days=h_days)).isoformat(), hit=position is not None,
                hit_position=position, attack_start=attack.strftime("%Y-%m-%dT%H:%M:%SZ") if attack else None,
                expected_verdict="COMPROMISED" if position is not None else "NO EVIDENCE FOUND",
            )  # fmt: skip
            work.append((staging, i, dict(h), attack))
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                done = list(pool.map(_one_host, work))
        else:
            done = [_one_host(w) for w in work]
        for h, (traces, ips, sweep) in zip(plan, done, strict=True):
            dest = outdir / h["tenant"] / h["host"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging / h["host"] / h["host"]), str(dest))
            h.update(scanning_sweep=sweep, traces=traces, attacker_ips=ips)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    hits = sorted((h for h in plan if h["hit"]), key=lambda h: h["hit_position"])
    answer = {
        "format": "exhunt-synth-fleet-answer-key",
        "version": 1,
        "generator": {"hosts": hosts, "tenants": tenants, "seed": seed, "users": users, "days": days},
        "tenants": names,
        "campaign": {
            "start_hour": CAMPAIGN_START.strftime("%Y-%m-%dT%H:00:00Z"),
            "hosts": [h["key"] for h in hits],
            "join_hours": [h["attack_start"][:13] + ":00:00Z" for h in hits],
            "attacker_ips": sorted({ip for h in hits for ip in h["attacker_ips"].values()}),
        },
        "scanning": {"ip": SCANNER_IP, "hour_utc": SCAN_HOUR, "probes_per_day": SWEEP_PROBES},
        "hosts": plan,
    }
    (outdir / "fleet_answer_key.json").write_text(json.dumps(answer, indent=1) + "\n", encoding="utf-8")
    return answer


def _one_host(job: tuple[Path, int, dict[str, Any], datetime | None]) -> tuple[list, dict, list[str]]:
    """Generate one host into the staging folder (runs in a worker process)."""
    staging, i, h, attack = job
    key = generate(
        staging / h["host"],
        seed=h["seed"],
        users=h["users"],
        days=h["days"],
        start=date.fromisoformat(h["start"]),
        benign_only=attack is None,
        plant=frozenset({"proxylogon"}),
        host=h["host"],
        attack_start=attack,
    )
    sweep = _daily_sweep(staging / h["host"] / h["host"], date.fromisoformat(h["start"]), h["days"], i)
    return key["traces"], key["attacker_ips"], sweep


def _daily_sweep(host_root: Path, start: date, days: int, index: int) -> list[str]:
    """Append the scanner's daily probes to each day's front-end IIS log (in that file's own #Fields),
    keeping the file's modification time. Returns the files touched, relative to the host folder."""
    w3 = host_root / "C" / "inetpub" / "logs" / "LogFiles" / "W3SVC1"
    touched = []
    for d in range(days):
        day = start + timedelta(days=d)
        log = w3 / f"u_ex{day.strftime('%y%m%d')}.log"
        if not log.exists():
            continue
        st = log.stat()
        text = log.read_text(encoding="utf-8")
        fields = [ln for ln in text.splitlines() if ln.startswith("#Fields:")][-1].split()[1:]
        lines = []
        for n in range(SWEEP_PROBES):
            t = datetime(day.year, day.month, day.day, SCAN_HOUR, 10 + (index % 7), tzinfo=UTC) + timedelta(
                seconds=37 * n
            )
            method, stem, query, status, ua = _PROBES[n % len(_PROBES)]
            values = {
                "date": t.strftime("%Y-%m-%d"), "time": t.strftime("%H:%M:%S"), "s-ip": "10.10.1.20",
                "cs-method": method, "cs-uri-stem": stem, "cs-uri-query": query, "s-port": "443",
                "cs-username": "-", "c-ip": SCANNER_IP, "cs(User-Agent)": ua, "cs(Referer)": "-",
                "sc-status": status, "sc-substatus": "0", "sc-win32-status": "0", "time-taken": "3",
            }  # fmt: skip
            lines.append(" ".join(values.get(f, "-") for f in fields))
        with open(log, "a", encoding="utf-8", newline="") as fh:
            fh.write(("" if text.endswith("\n") else "\r\n") + "\r\n".join(lines) + "\r\n")
        os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns))
        touched.append(log.relative_to(host_root.parent).as_posix())
    return touched
