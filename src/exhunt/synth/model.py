"""Shared facts of the synthetic server: names, addresses, builds, the timeline and id makers.

Times are integers: milliseconds since the Unix epoch, UTC. Every generated log writes UTC.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

AD_DOMAIN = "corp.example"  # Active Directory DNS domain
NETBIOS = "CORP"
SMTP_DOMAIN = "example.org"
EXTERNAL_HOST = "mail.example.org"
SERVER_IP = "10.10.1.20"
SERVER_IP6 = "fe80::5d1c:7a2e:3b9f:c14%12"  # what the back-end site logs for proxied requests
DOMAIN_SID = "S-1-5-21-3623811015-3361044348-30300820"
INSTALL_DIR = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"
INSTALL_REL = "C/Program Files/Microsoft/Exchange Server/V15"
INSTALL_DATE = datetime(2020, 10, 14, 21, 37, 12, tzinfo=UTC)  # CU18 set-up finished

# Published attacker infrastructure (research notes §2.5) and documentation addresses.
PL_EXPLOIT_IP = "130.255.189.21"  # HAFNIUM-era SSRF chain (HelseCERT)
PL_SHELL_IP = "139.162.202.236"  # later web-shell access (HelseCERT)
PNS_IP = "125.212.220.48"  # ProxyNotShell campaign (GTSC)
PS_IP = "203.0.113.66"  # ProxyShell operator (documentation range)
OWASSRF_IP = "203.0.113.45"  # OWASSRF operator (documentation range)
C2_IP = "203.0.113.7"  # PowerCat listener (documentation range)
ATTACKER_IPS = {
    "proxylogon-exploit": PL_EXPLOIT_IP,
    "proxylogon-webshell": PL_SHELL_IP,
    "proxyshell": PS_IP,
    "proxynotshell": PNS_IP,
    "owassrf": OWASSRF_IP,
    "c2": C2_IP,
}

OWASSRF_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/105.0.5195.54 Safari/537.36"
)


@dataclass(frozen=True)
class Build:
    """An Exchange build such as 15.1.2106.2."""

    major: int
    minor: int
    build: int
    rev: int

    @classmethod
    def parse(cls, text: str) -> Build:
        a, b, c, d = (int(x) for x in text.split("."))
        return cls(a, b, c, d)

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}.{self.rev}"

    @property
    def long(self) -> str:
        """Zero-padded form used in log headers: 15.01.2106.002."""
        return f"{self.major}.{self.minor:02d}.{self.build:04d}.{self.rev:03d}"


CU18 = Build.parse("15.1.2106.2")
MAR21SU = Build.parse("15.1.2106.13")
SU_INSTALL = datetime(2021, 3, 9, 18, 0, tzinfo=UTC)  # services back on the new build
SU_DOWNTIME_MS = 40 * 60_000  # set-up stops the services this long before SU_INSTALL


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(t: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t)


def iso(t: int) -> str:
    """2021-03-03T04:12:01.123Z"""
    d = from_ms(t)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t % 1000:03d}Z"


def iis_date_time(t: int) -> tuple[str, str]:
    d = from_ms(t)
    return d.strftime("%Y-%m-%d"), d.strftime("%H:%M:%S")


@dataclass
class Timeline:
    """The generated period and the moments the server changed."""

    start: date
    days: int
    t0: int = 0
    t_end: int = 0
    build_switch: int | None = None  # when MAR21SU took over, if inside the period
    schema_switch: int = 0  # HttpProxy logs move from the 70- to the 74-column schema
    iis_restart: int = 0  # IIS restart: the W3C header block is written again
    iis_fields_on: int = 0  # admin adds cs-host and sc-bytes to the W3C fields
    iis_fields_off: int = 0  # ... and reverts
    downtime: tuple[int, int] | None = None
    builds: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t0 = to_ms(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC))
        self.t_end = self.t0 + self.days * DAY_MS
        su = to_ms(SU_INSTALL)
        if self.t0 < su < self.t_end:
            self.build_switch = su
            self.downtime = (su - SU_DOWNTIME_MS, su)
            self.iis_restart = su
        else:
            self.iis_restart = self.t0 + (self.days // 2) * DAY_MS + 2 * HOUR_MS + 17 * 60_000
        if self.days >= 3:
            self.schema_switch = self.t0 + 2 * DAY_MS
        elif self.days == 2:
            self.schema_switch = self.t0 + DAY_MS
        else:
            self.schema_switch = self.t0 + 12 * HOUR_MS
        cfg_day = self.t0 + (1 if self.days > 1 else 0) * DAY_MS
        self.iis_fields_on = cfg_day + 10 * HOUR_MS
        self.iis_fields_off = cfg_day + 16 * HOUR_MS
        if self.build_switch is None:
            self.builds = [{"build": CU18.short, "from": iso(self.t0), "to": iso(self.t_end)}]
        else:
            self.builds = [
                {"build": CU18.short, "from": iso(self.t0), "to": iso(self.build_switch)},
                {"build": MAR21SU.short, "from": iso(self.build_switch), "to": iso(self.t_end)},
            ]

    def build_at(self, t: int) -> Build:
        return MAR21SU if self.build_switch is not None and t >= self.build_switch else CU18

    def hp_columns_at(self, t: int) -> int:
        return 74 if t >= self.schema_switch else 70

    def iis_extended_at(self, t: int) -> bool:
        return self.iis_fields_on <= t < self.iis_fields_off

    def down(self, t: int) -> bool:
        return self.downtime is not None and self.downtime[0] <= t < self.downtime[1]

    def day_of(self, when: date, fallback_index: int) -> int:
        """Start (ms) of `when` if inside the period, else of day `fallback_index` (clamped)."""
        t = to_ms(datetime(when.year, when.month, when.day, tzinfo=UTC))
        if self.t0 <= t < self.t_end:
            return t
        return self.t0 + max(0, min(fallback_index, self.days - 1)) * DAY_MS

    def clamp_day(self, t: int) -> int:
        """The day start `t` falls on, pulled back inside the period."""
        last = self.t_end - DAY_MS
        return max(self.t0, min(t - (t - self.t0) % DAY_MS, last))


class Ids:
    """Deterministic GUIDs and hex strings from one RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._pool = ""
        self._pos = 0

    def _hex32(self) -> str:
        if self._pos >= len(self._pool):
            self._pool = self.rng.randbytes(16 * 512).hex()
            self._pos = 0
        h = self._pool[self._pos : self._pos + 32]
        self._pos += 32
        return h

    def guid(self) -> str:
        h = self._hex32()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def hexstr(self, n: int) -> str:
        out = ""
        while len(out) < n:
            out += self._hex32()
        return out[:n]
