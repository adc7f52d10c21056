"""A synthetic Exchange 2016 server collection with attack traces at known positions.

`generate(outdir, ...)` writes a KAPE-style tree `outdir/<HOST>/C/...` (Exchange logs, IIS logs,
web folders) plus `outdir/<HOST>/EventLogs/*.ndjson` (Winlogbeat-shaped Windows events), Message Tracking logs, and an
answer key `outdir/answer_key.json` listing every planted trace (path, 1-based line, expected rule),
the benign look-alikes and the format quirks. Output is byte-for-byte deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import files, theft
from .attacks import FAMILIES as ATTACK_FAMILIES
from .attacks import Attacks
from .benign import BenignTraffic, make_population
from .formats import Sink
from .intrusion import INTRUSION, Intrusion
from .mailflow import MailFlow
from .model import (
    AD_DOMAIN,
    ATTACKER_IPS,
    EXTERNAL_HOST,
    HOUR_MS,
    INSTALL_DATE,
    NETBIOS,
    SERVER_IP,
    SMTP_DOMAIN,
    Ids,
    Timeline,
    iso,
    to_ms,
)
from .scripted import Scripted
from .world import Schedule, World

__all__ = ["FAMILIES", "expand_families", "generate"]

FAMILIES = (*ATTACK_FAMILIES, INTRUSION, theft.FAMILY)

MB = 1_000_000
_FAMILY_IPS = {
    "proxylogon": ("proxylogon-exploit", "proxylogon-webshell"),
    "proxyshell": ("proxyshell",),
    "proxynotshell": ("proxynotshell",),
    "owassrf": ("owassrf",),
    "postexploit": ("c2",),
    "webshells": (),
    INTRUSION: (),
    theft.FAMILY: (),
}


def expand_families(names: str | frozenset[str] | set[str] | list[str] | tuple[str, ...]) -> frozenset[str]:
    """Validate family names (an iterable, or one comma-separated string); `all` stands for every family."""
    if isinstance(names, str):
        names = names.split(",")
    out: set[str] = set()
    for n in names:
        n = n.strip().lower()
        if not n:
            continue
        if n == "all":
            out.update(FAMILIES)
        elif n in FAMILIES:
            out.add(n)
        else:
            raise UsageError(f"unknown attack family {n!r}; choose from {', '.join(FAMILIES)} or all")
    return frozenset(out)


def generate(
    outdir: Path,
    *,
    seed: int = 1,
    users: int = 50,
    days: int = 14,
    start: date = date(2021, 2, 24),
    benign_only: bool = False,
    plant: frozenset[str] = frozenset({"proxylogon"}),
    target_mb: float | None = None,
    host: str = "EXCH01",
    progress: Callable[[int], None] | None = None,
    attack_start: datetime | None = None,
) -> dict[str, Any]:
    """Write the synthetic collection into `outdir` and return the answer key (also saved there).
    `attack_start` (UTC) moves the planted attacks so the first ProxyLogon request is written then."""
    if days < 1 or users < 1:
        raise UsageError("days and users must be at least 1")
    if target_mb is not None and target_mb <= 0:
        raise UsageError("target_mb must be positive")
    families: frozenset[str] = frozenset() if benign_only else expand_families(plant)
    outdir = Path(outdir)
    if (outdir / host).exists() and any((outdir / host).iterdir()):
        raise UsageError(f"{outdir / host} already exists and is not empty; choose an empty output folder")
    outdir.mkdir(parents=True, exist_ok=True)

    tl = Timeline(start, days)
    sink = Sink(progress)
    world = _run(
        outdir,
        host,
        tl,
        sink,
        seed=seed,
        users=users,
        families=families,
        target_mb=target_mb,
        attack_start=attack_start,
    )
    files.settle_dir_mtimes(outdir / host, to_ms(INSTALL_DATE))
    if progress is not None:
        progress(sink.bytes)

    key = _answer_key(
        world,
        world.exec_upn,
        families,
        seed=seed,
        users=users,
        days=days,
        start=start,
        benign_only=benign_only,
        target_mb=target_mb,
        host=host,
    )
    (outdir / "answer_key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    return key


def _run(
    outdir: Path,
    host: str,
    tl: Timeline,
    sink: Sink,
    *,
    seed: int,
    users: int,
    families: frozenset[str],
    target_mb: float | None,
    attack_start: datetime | None = None,
) -> World:
    """Plan the scripted and planted activity, then write the period hour by hour."""
    world = World(outdir, host, tl, sink)
    pop = make_population(random.Random(f"{seed}:population"), Ids(random.Random(f"{seed}:ids")), users)
    world.exec_upn = pop.exec_user.upn
    traffic = BenignTraffic(world, random.Random(f"{seed}:traffic"), pop)
    sched = Schedule()
    scripted = Scripted(world, random.Random(f"{seed}:scripted"), pop, sched)
    scripted.plan()
    if families:
        Attacks(world, random.Random(f"{seed}:attacks"), pop, sched, families).plan(attack_start)
    MailFlow(world, random.Random(f"{seed}:mailflow"), pop, sched, families).plan()
    Intrusion(world, random.Random(f"{seed}:intrusion"), pop, sched, INTRUSION in families).plan()
    if theft.FAMILY in families:
        theft.Theft(world, random.Random(f"{seed}:theft"), pop, sched).plan()
    for rel in files.write_standard(outdir, host, tl):
        world.key.benign_at(None, "vendor-zip", path=rel, line=None)
    for name in ("RedirSuiteServiceProxy.aspx", "TimeoutLogout.aspx"):
        world.key.benign_at(None, "standard-file", path=f"{host}/{files.OWA_AUTH}/{name}", line=None)
    world.key.benign_at(None, "standard-file", path=f"{host}/{files.ECP_AUTH}/TimeoutLogoff.aspx", line=None)

    scale = _ScaleControl(traffic, tl, target_mb)
    for h in range(tl.t0, tl.t_end, HOUR_MS):
        before = sink.bytes
        n = traffic.hour(h, scale.scale)
        scripted.hour_events(h, traffic.new_files)
        sched.run_until(h + HOUR_MS)
        world.end_hour(h)
        scale.observe(h, n, sink.bytes - before, sink.bytes)
    world.close()
    return world


class _ScaleControl:
    """Chooses the benign traffic scale hour by hour so the total log size lands near `target_mb`.

    Bytes per user request come from rendering a sample; the fixed bytes per hour (probes, events,
    scripted rows) are learnt from the hours already written.
    """

    def __init__(self, traffic: BenignTraffic, tl: Timeline, target_mb: float | None) -> None:
        self.traffic = traffic
        self.target = None if target_mb is None else target_mb * MB
        hours = list(range(tl.t0, tl.t_end, HOUR_MS))
        self.remaining = {h: 0.0 for h in hours}
        acc = 0.0
        for h in reversed(hours):
            acc += traffic.expected(h)
            self.remaining[h] = acc
        self.hours_left = {h: len(hours) - i for i, h in enumerate(hours)}
        self.per_req = traffic.bytes_per_request() if self.target is not None else 0.0
        self.fixed = traffic.probe_bytes_per_hour() + 25_000.0
        self.fixed_sum = 0.0
        self.n_hours = 0
        self.scale = 1.0 if self.target is None else self._solve(tl.t0, 0)

    def _solve(self, h: int, written: int) -> float:
        assert self.target is not None
        left = self.target - written - self.fixed * self.hours_left[h]
        demand = self.per_req * self.remaining[h]
        return max(0.0, left / demand) if demand > 0 else 0.0

    def observe(self, h: int, n_user: int, hour_bytes: int, written: int) -> None:
        if self.target is None:
            return
        self.n_hours += 1
        self.fixed_sum += max(0.0, hour_bytes - n_user * self.per_req)
        self.fixed = self.fixed_sum / self.n_hours
        nxt = h + HOUR_MS
        if nxt in self.hours_left:
            self.scale = self._solve(nxt, written)


def _answer_key(world: World, exec_upn: str, families: frozenset[str], **gen: Any) -> dict[str, Any]:
    tl = world.tl
    body = world.answer()
    body["traces"].sort(key=lambda e: (e["time"], e["id"]))
    used_ips = {k: ATTACKER_IPS[k] for f in sorted(families) for k in _FAMILY_IPS[f]}
    return {
        "format": "exhunt-synth-answer-key",
        "version": 1,
        "generator": {
            **{k: (v.isoformat() if isinstance(v, date) else v) for k, v in gen.items()},
            "families": sorted(families),
        },
        "host": world.host,
        "fqdn": world.fqdn,
        "netbios_domain": NETBIOS,
        "ad_domain": AD_DOMAIN,
        "smtp_domain": SMTP_DOMAIN,
        "external_host": EXTERNAL_HOST,
        "server_ip": SERVER_IP,
        "period": {"from": iso(tl.t0), "to": iso(tl.t_end)},
        "builds": tl.builds,
        "httpproxy_schemas": [
            {"columns": 70, "from": iso(tl.t0), "to": iso(tl.schema_switch)},
            {"columns": 74, "from": iso(tl.schema_switch), "to": iso(tl.t_end)},
        ],
        "iis": {
            "restart": iso(tl.iis_restart),
            "extra_fields": ["cs-host", "sc-bytes"],
            "extra_fields_from": iso(tl.iis_fields_on),
            "extra_fields_to": iso(tl.iis_fields_off),
        },
        "attacker_ips": used_ips,
        "executive_mailbox": exec_upn if "proxylogon" in families else None,
        "event_level_style": "text (information/warning/error), as Winlogbeat writes it",
        "mailbox_theft": theft.answer(world),
        "traces": body["traces"],
        "benign": body["benign"],
        "quirks": body["quirks"],
        "stats": {"log_files": world.sink.files, "log_bytes": world.sink.bytes, "log_lines": world.sink.lines},
    }
