"""The output tree and its open log files, plus the answer key being built.

Files are opened lazily, per hour (HttpProxy, EWS, RPS) or per day (IIS, ECP, OAB generator), and
flushed at the end of every generated hour. Planted lines go through `insert` and come back as
`Ref`s that the answer key turns into line numbers once the files are written.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .formats import (
    CRLF,
    ECP_FIELDS,
    EWS_FIELDS,
    HTTPPROXY_FIELDS_70,
    HTTPPROXY_FIELDS_74,
    IIS_FIELDS,
    IIS_FIELDS_EXT,
    LF,
    OAB_FIELDS,
    RPS_HTTP_FIELDS,
    EventLog,
    LogFile,
    Ref,
    Sink,
    exchange_header,
    w3c_header,
)
from .model import AD_DOMAIN, DAY_MS, HOUR_MS, INSTALL_REL, Timeline, from_ms, iso

HTTPPROXY_PROTOCOLS = ("Autodiscover", "Eas", "Ecp", "Ews", "Mapi", "Oab", "Owa", "PowerShell", "RpcHttp")
NO_BARE_HEADER = ("Oab", "RpcHttp")  # these folders' files start straight with `#Software`
BOM_PROTOCOLS = ("Owa",)
TRUNCATED_PROTOCOL = "Mapi"  # the very last Mapi file ends in a cut line
LF_PROTOCOL = "Autodiscover"  # its first file was saved with LF line ends
CHANNELS = {
    "application": "Application",
    "msexchange-management": "MSExchange Management",
    "security": "Security",
    "sysmon": "Microsoft-Windows-Sysmon/Operational",
}


def source_of(path: str) -> str:
    """Which artifact a collection path is: iis-frontend, httpproxy, sysmon, file ..."""
    checks = (
        ("/W3SVC1/", "iis-frontend"), ("/W3SVC2/", "iis-backend"), ("/Logging/HttpProxy/", "httpproxy"),
        ("/Logging/EWS/", "ews"), ("/Logging/CmdletInfra/", "rps-http"), ("/Logging/ECP/Server/", "ecp-server"),
        ("/Logging/ECP/Activity/", "ecp-activity"), ("/Logging/OABGeneratorLog/", "oab-generator"),
        ("/Logs/MessageTracking/", "message-tracking"),
    )  # fmt: skip
    for needle, name in checks:
        if needle in path:
            return name
    if path.endswith(".ndjson"):
        return path.rsplit("winlogbeat-", 1)[-1].removesuffix(".ndjson")
    return "file"


@dataclass
class Entry:
    """One answer-key record whose line number comes from a Ref."""

    data: dict[str, Any]
    ref: Ref | None
    also: tuple[Ref, ...] = ()  # the same request's rows in the other web logs the rule also matches

    def render(self) -> dict[str, Any]:
        out = dict(self.data)
        if self.ref is not None:
            out["path"] = self.ref.path
            out["line"] = self.ref.line
        out["source"] = source_of(out["path"])
        if self.also:
            out["seen_in"] = [{"path": r.path, "line": r.line, "source": source_of(r.path)} for r in self.also]
        return out


@dataclass
class AnswerKey:
    traces: list[Entry] = field(default_factory=list)
    benign: list[Entry] = field(default_factory=list)
    quirks: list[Entry] = field(default_factory=list)
    _seen_quirks: set[str] = field(default_factory=set)

    def trace(self, ref: Ref | None, also: tuple[Ref | None, ...] = (), **data: Any) -> None:
        """One planted trace at `ref`; `also` are the other logs' rows of the same request it shows in."""
        data.setdefault("required", True)
        self.traces.append(Entry(data, ref, tuple(r for r in also if r is not None)))

    def benign_at(self, ref: Ref | None, kind: str, **data: Any) -> None:
        self.benign.append(Entry({"kind": kind, **data}, ref))

    def quirk(self, ref: Ref, kind: str, once: bool = True, **data: Any) -> None:
        if once and kind in self._seen_quirks:
            return
        self._seen_quirks.add(kind)
        self.quirks.append(Entry({"kind": kind, **data}, ref))

    def has_quirk(self, kind: str) -> bool:
        return kind in self._seen_quirks


class World:
    """Open files, the timeline and the answer key for one generated server."""

    def __init__(self, root: Path, host: str, tl: Timeline, sink: Sink) -> None:
        self.root = root
        self.host = host
        self.fqdn = f"{host.lower()}.{AD_DOMAIN}"
        self.computer = f"{host}.{AD_DOMAIN}"
        self.tl = tl
        self.sink = sink
        self.key = AnswerKey()
        self.hourly: dict[tuple[str, int], LogFile] = {}
        self.daily: dict[tuple[str, int], LogFile] = {}
        self.ecp_pid = 7344
        self.events = {
            name: EventLog(root, f"{host}/EventLogs/winlogbeat-{name}.ndjson", sink, ch, self.computer)
            for name, ch in CHANNELS.items()
        }
        self._lf_done = False
        self.last_hour = tl.t_end - HOUR_MS
        self.exec_upn = ""  # the executive whose mailbox the EWS theft targets

    # ---- paths -------------------------------------------------------------------------------
    def _x(self, sub: str) -> str:
        return f"{self.host}/{INSTALL_REL}/Logging/{sub}"

    @staticmethod
    def _stamp(t: int, hours: bool) -> str:
        return from_ms(t).strftime("%Y%m%d%H" if hours else "%Y%m%d")

    # ---- Exchange CSV logs -------------------------------------------------------------------
    def _exchange(
        self, rel: str, log_type: str, fields: list[str], *, bare: bool, newline: str = CRLF, bom: bool = False
    ) -> LogFile:
        tl = self.tl

        def header(t: int) -> list[str]:
            return exchange_header(log_type, tl.build_at(t).long, t, fields, bare)

        return LogFile(self.root, rel, self.sink, header, newline=newline, bom=bom)

    def hp_fields(self, t: int) -> list[str]:
        return HTTPPROXY_FIELDS_74 if self.tl.hp_columns_at(t) == 74 else HTTPPROXY_FIELDS_70

    def hp(self, proto: str, t: int) -> LogFile:
        h = t - t % HOUR_MS
        f = self.hourly.get((proto, h))
        if f is None:
            rel = self._x(f"HttpProxy/{proto}/HttpProxy_{self._stamp(h, True)}-1.LOG")
            newline = CRLF
            if proto == LF_PROTOCOL and not self._lf_done:
                newline = LF
                self._lf_done = True
            f = self._exchange(
                rel,
                "HttpProxy Logs",
                self.hp_fields(h),
                bare=proto not in NO_BARE_HEADER,
                newline=newline,
                bom=proto in BOM_PROTOCOLS,
            )
            self.hourly[(proto, h)] = f
            self._note_file_quirks(f, proto, h)
        return f

    def _note_file_quirks(self, f: LogFile, proto: str, h: int) -> None:
        key = self.key
        bare = proto not in NO_BARE_HEADER
        n_head = 6 if bare else 5
        if f.newline == LF:
            key.quirk(Ref(f.rel, 1), "lf-line-endings")
        elif not key.has_quirk("crlf-line-endings"):
            key.quirk(Ref(f.rel, 1), "crlf-line-endings")
        if f.bom:
            key.quirk(Ref(f.rel, 1), "utf8-bom")
        key.quirk(Ref(f.rel, 1), "bare-header-row" if bare else "no-bare-header-row")
        cols = self.tl.hp_columns_at(h)
        key.quirk(Ref(f.rel, n_head), f"httpproxy-fields-{cols}", columns=cols)

    def ews(self, t: int) -> LogFile:
        h = t - t % HOUR_MS
        f = self.hourly.get(("EWS", h))
        if f is None:
            rel = self._x(f"EWS/Ews_{self._stamp(h, True)}-1.LOG")
            f = self.hourly[("EWS", h)] = self._exchange(rel, "EWS Logs", EWS_FIELDS, bare=True)
        return f

    def rps(self, t: int) -> LogFile:
        h = t - t % HOUR_MS
        f = self.hourly.get(("RPS", h))
        if f is None:
            rel = self._x(f"CmdletInfra/Powershell-Proxy/Http/Rps_Http_{self._stamp(h, True)}-1.LOG")
            f = self.hourly[("RPS", h)] = self._exchange(rel, "Rps Http Logs", RPS_HTTP_FIELDS, bare=True)
        return f

    def ecp_server(self, t: int) -> LogFile:
        d = t - t % DAY_MS
        f = self.daily.get(("ECP", d))
        if f is None:
            rel = self._x(f"ECP/Server/ECPServer{self._stamp(d, False)}-1.LOG")
            f = self.daily[("ECP", d)] = self._exchange(rel, "ECP Server Log", ECP_FIELDS, bare=False)
        return f

    def ecp_pid_at(self, t: int) -> int:
        sw = self.tl.build_switch
        return 9816 if sw is not None and t >= sw else self.ecp_pid

    def ecp_activity(self, t: int) -> LogFile:
        d = t - t % DAY_MS
        pid = self.ecp_pid_at(t)
        f = self.daily.get((f"ECPA{pid}", d))
        if f is None:
            rel = self._x(f"ECP/Activity/ECPActivity_{pid}_{self._stamp(d, False)}-1.LOG")
            f = self._exchange(rel, "ECP Activity Context Log", ECP_FIELDS, bare=False)
            self.daily[(f"ECPA{pid}", d)] = f
        return f

    def oab(self, t: int) -> LogFile:
        d = t - t % DAY_MS
        f = self.daily.get(("OAB", d))
        if f is None:
            rel = self._x(f"OABGeneratorLog/OABGeneratorLog_{self._stamp(d, False)}-1.LOG")
            f = self._exchange(rel, "OAB Generator Log", OAB_FIELDS, bare=False, bom=True)
            self.daily[("OAB", d)] = f
            self.key.quirk(Ref(rel, 1), "utf8-bom-oab")
        return f

    # ---- IIS ---------------------------------------------------------------------------------
    def iis_fields(self, t: int) -> list[str]:
        return IIS_FIELDS_EXT if self.tl.iis_extended_at(t) else IIS_FIELDS

    def iis(self, site: int, t: int) -> LogFile:
        d = t - t % DAY_MS
        f = self.daily.get((f"W3SVC{site}", d))
        if f is None:
            rel = f"{self.host}/C/inetpub/logs/LogFiles/W3SVC{site}/u_ex{from_ms(d).strftime('%y%m%d')}.log"

            def header(t0: int) -> list[str]:
                return w3c_header(t0, self.iis_fields(t0))

            f = self.daily[(f"W3SVC{site}", d)] = LogFile(self.root, rel, self.sink, header)
        return f

    def iis_header_again(self, t: int, reason: str) -> None:
        """IIS writes a fresh header block mid-file (restart or changed field list)."""
        for site in (1, 2):
            f = self.iis(site, t)
            # keyed 1 ms early so it precedes any row logged in the same millisecond
            refs = [f.insert(t - 1, line) for line in w3c_header(t, self.iis_fields(t))]
            if site == 1:
                kind = "iis-fields-repeated" if reason == "restart" else "iis-fields-changed"
                self.key.quirk(refs[-1], kind, once=False, reason=reason, time=iso(t))

    # ---- events ------------------------------------------------------------------------------
    def event(self, channel: str, t: int, ev: dict[str, Any], *, ref: bool = False) -> Ref | None:
        return self.events[channel].event(t, ev, ref=ref)

    # ---- hour bookkeeping --------------------------------------------------------------------
    def end_hour(self, h: int) -> None:
        """Write everything of hour `h`; close hourly files and, at midnight, daily ones."""
        is_last = h == self.last_hour
        for (kind, hh), f in list(self.hourly.items()):
            if hh <= h:
                trunc = is_last and kind == TRUNCATED_PROTOCOL
                f.close(truncate_last=trunc)
                if trunc:
                    self.key.quirk(Ref(f.rel, f.written), "truncated-last-line")
                del self.hourly[(kind, hh)]
        end_of_day = (h + HOUR_MS) % DAY_MS == 0
        for k, f in list(self.daily.items()):
            if end_of_day and k[1] <= h:
                f.close()
                del self.daily[k]
            else:
                f.flush(until=h + HOUR_MS)
        for ev in self.events.values():
            ev.flush(until=h + HOUR_MS)

    def close(self) -> None:
        for f in list(self.hourly.values()) + list(self.daily.values()):
            f.close()
        for ev in self.events.values():
            ev.close()

    def answer(self) -> dict[str, Any]:
        return {
            "traces": [e.render() for e in self.key.traces],
            "benign": [e.render() for e in self.key.benign],
            "quirks": [e.render() for e in self.key.quirks],
        }


class Schedule:
    """Scripted actions (benign samples and planted traces), run in the hour they belong to.

    An action must only write at times inside its own hour, since earlier hours are already on
    disk when it runs.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, t: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn))

    def run_until(self, t_end: int) -> None:
        while self._heap and self._heap[0][0] < t_end:
            heapq.heappop(self._heap)[2]()
