"""Log writers that keep line numbers, and the field lists and renderers of each format.

A `LogFile` takes benign lines in time order (`add`) and planted lines at any time (`insert`,
returning a `Ref` whose 1-based physical line is filled in when the chunk is written). Chunks are
written with `flush`, so a day-long file can be fed hour by hour.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import from_ms, iso

CRLF = "\r\n"
LF = "\n"
BOM = b"\xef\xbb\xbf"

# --- field lists -------------------------------------------------------------------------------

HTTPPROXY_FIELDS_74 = [
    "DateTime",
    "RequestId",
    "MajorVersion",
    "MinorVersion",
    "BuildVersion",
    "RevisionVersion",
    "ClientRequestId",
    "Protocol",
    "UrlHost",
    "UrlStem",
    "ProtocolAction",
    "AuthenticationType",
    "IsAuthenticated",
    "AuthenticatedUser",
    "Organization",
    "AnchorMailbox",
    "UserAgent",
    "ClientIpAddress",
    "ServerHostName",
    "HttpStatus",
    "BackEndStatus",
    "ErrorCode",
    "Method",
    "ProxyAction",
    "TargetServer",
    "TargetServerVersion",
    "RoutingType",
    "RoutingHint",
    "BackEndCookie",
    "ServerLocatorHost",
    "ServerLocatorLatency",
    "RequestBytes",
    "ResponseBytes",
    "TargetOutstandingRequests",
    "AuthModulePerfContext",
    "HttpPipelineLatency",
    "CalculateTargetBackEndLatency",
    "GlsLatencyBreakup",
    "TotalGlsLatency",
    "AccountForestLatencyBreakup",
    "TotalAccountForestLatency",
    "ResourceForestLatencyBreakup",
    "TotalResourceForestLatency",
    "ADLatency",
    "SharedCacheLatencyBreakup",
    "TotalSharedCacheLatency",
    "ActivityContextLifeTime",
    "ModuleToHandlerSwitchingLatency",
    "ClientReqStreamLatency",
    "BackendReqInitLatency",
    "BackendReqStreamLatency",
    "BackendProcessingLatency",
    "BackendRespInitLatency",
    "BackendRespStreamLatency",
    "ClientRespStreamLatency",
    "KerberosAuthHeaderLatency",
    "HandlerCompletionLatency",
    "RequestHandlerLatency",
    "HandlerToModuleSwitchingLatency",
    "ProxyTime",
    "CoreLatency",
    "RoutingLatency",
    "HttpProxyOverhead",
    "TotalRequestTime",
    "RouteRefresherLatency",
    "UrlQuery",
    "BackEndGenericInfo",
    "GenericInfo",
    "GenericErrors",
    "EdgeTraceId",
    "DatabaseGuid",
    "UserADObjectGuid",
    "PartitionEndpointLookupLatency",
    "RoutingStatus",
]
HTTPPROXY_FIELDS_70 = HTTPPROXY_FIELDS_74[:70]  # an earlier CU: ends at EdgeTraceId
assert len(HTTPPROXY_FIELDS_74) == 74 and HTTPPROXY_FIELDS_70[-1] == "EdgeTraceId"
# The latency block (ServerLocatorLatency .. RouteRefresherLatency) is rendered as one piece.
HP_LAT_FIRST = HTTPPROXY_FIELDS_74.index("ServerLocatorLatency")
HP_LAT_LAST = HTTPPROXY_FIELDS_74.index("RouteRefresherLatency")

_BUDGETS = ("Connections", "HangingConnections", "AD", "CAS", "RPC", "FindCount", "Subscriptions")
EWS_FIELDS = (
    "DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,Ring,ClientRequestId,"
    "AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,UserAgent,VersionInfo,"
    "ClientIpAddress,ServerHostName,FrontEndServer,SoapAction,HttpStatus,RequestSize,ResponseSize,"
    "ErrorCode,ImpersonatedUser,ProxyAsUser,ActAsUser,Cookie,CorrelationGuid,PrimaryOrProxyServer,"
    "TaskType,RemoteBackendCount,LocalMailboxCount,RemoteMailboxCount,LocalIdCount,RemoteIdCount,"
    + ",".join(f"BeginBudget{b},EndBudget{b}" for b in _BUDGETS)
    + ",MDBResource,MDBHealth,MDBHistoricalLoad,ThrottlingPolicy,ThrottlingDelay,"
    "ThrottlingRequestType,TotalDCRequestCount,TotalDCRequestLatency,TotalMBXRequestCount,"
    "TotalMBXRequestLatency,RecipientLookupLatency,ExchangePrincipalLatency,HttpPipelineLatency,"
    "CheckAccessCoreLatency,AuthModuleLatency,CallContextInitLatency,PreExecutionLatency,"
    "CoreExecutionLatency,TotalRequestTime,DetailedExchangePrincipalLatency,ClientStatistics,"
    "GenericInfo,AuthenticationErrors,GenericErrors,Puid,StartTime,ProcessId,TimeInGC,"
    "StartTotalMemory,EndTotalMemory,StartGCCounts,EndGCCounts,TokenBasedThrottlingPolicy,BudgetKey,"
    "CoinsCharged,CoinsChargedMethod,SidBudgetInfo,AppBudgetInfo,TenantBudgetInfo,ResourceAccessed,"
    "ResourceHealthBasedThreshold,ThrottledBy,BackoffHint,WorkClassification"
).split(",")

RPS_HTTP_FIELDS = [
    "DateTime",
    "StartTime",
    "RequestId",
    "MajorVersion",
    "MinorVersion",
    "BuildVersion",
    "RevisionVersion",
    "ClientRequestId",
    "UrlHost",
    "UrlStem",
    "AuthenticationType",
    "IsAuthenticated",
    "AuthenticatedUser",
    "Organization",
    "ManagedOrganization",
    "ClientIpAddress",
    "ServerHostName",
    "FrontEndServer",
    "HttpStatus",
    "SubStatus",
    "ErrorCode",
    "Action",
    "CommandId",
    "CommandName",
    "SessionId",
    "ShellId",
    "FailFast",
    "ContributeToFailFast",
    "RequestBytes",
    "ClientInfo",
    "CPU",
    "Memory",
    "ActivityContextLifeTime",
    "TotalTime",
    "UrlQuery",
    "GenericLatency",
    "GenericInfo",
    "GenericErrors",
]

ECP_FIELDS = ["TimeStamp", "ServerName", "EventId", "EventData"]
# The OAB generator header is not documented in the sources; this list is our own choice.
OAB_FIELDS = ["date-time", "server-name", "process-id", "thread-id", "severity", "oab-name", "message"]

IIS_FIELDS = [
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
]
# The list an administrator switched on for a while: adds cs-host and sc-bytes.
IIS_FIELDS_EXT = [*IIS_FIELDS[:11], "cs-host", *IIS_FIELDS[11:14], "sc-bytes", *IIS_FIELDS[14:]]

# --- renderers ---------------------------------------------------------------------------------


def csv_field(v: str) -> str:
    """Exchange CSV quoting: quote when needed, double inner quotes."""
    if "," in v or '"' in v or "\n" in v or "\r" in v:
        return '"' + v.replace('"', '""') + '"'
    return v


def csv_row(values: Iterable[str]) -> str:
    return ",".join(csv_field(v) for v in values)


def csv_row_from(fields: list[str], values: dict[str, str]) -> str:
    return csv_row(values.get(f, "") for f in fields)


def strip_ua_commas(ua: str) -> str:
    """HttpProxy and RPS logs replace commas in user agents: `(KHTML  like Gecko)`."""
    return ua.replace(",", " ")


def w3c_value(v: str | int | None) -> str:
    if v is None or v == "":
        return "-"
    return str(v).replace(" ", "+")


def w3c_row(fields: list[str], values: dict[str, Any]) -> str:
    return " ".join(w3c_value(values.get(f)) for f in fields)


def exchange_header(log_type: str, version_long: str, t: int, fields: list[str], bare: bool) -> list[str]:
    """Optional bare CSV header row, then the five `#` lines of an Exchange log."""
    lines = [",".join(fields)] if bare else []
    lines += [
        "#Software: Microsoft Exchange Server",
        f"#Version: {version_long}",
        f"#Log-type: {log_type}",
        f"#Date: {iso(t)}",
        "#Fields: " + ",".join(fields),
    ]
    return lines


def w3c_header(t: int, fields: list[str]) -> list[str]:
    return [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        "#Date: " + from_ms(t).strftime("%Y-%m-%d %H:%M:%S"),
        "#Fields: " + " ".join(fields),
    ]


# --- writers -----------------------------------------------------------------------------------


@dataclass
class Ref:
    """Where a planted line landed: path relative to the output root, 1-based line."""

    path: str
    line: int | None = None


class Sink:
    """Counts bytes written across all files and reports progress now and then."""

    def __init__(self, progress: Callable[[int], None] | None = None) -> None:
        self.bytes = 0
        self.lines = 0
        self.files = 0
        self.progress = progress
        self._next_report = 0
        self._dirs: set[Path] = set()

    def ensure_dir(self, d: Path) -> None:
        """mkdir -p, once per folder (the syscall is slow on some disks)."""
        if d not in self._dirs:
            d.mkdir(parents=True, exist_ok=True)
            self._dirs.add(d)

    def wrote(self, n_bytes: int, n_lines: int) -> None:
        self.bytes += n_bytes
        self.lines += n_lines
        if self.progress is not None and self.bytes >= self._next_report:
            self._next_report = self.bytes + 8_000_000
            self.progress(self.bytes)


class LogFile:
    """A text log written in chunks; tracks physical line numbers of inserted lines."""

    def __init__(
        self,
        root: Path,
        rel: str,
        sink: Sink,
        header: Callable[[int], list[str]] | None = None,
        *,
        newline: str = CRLF,
        bom: bool = False,
    ) -> None:
        self.root = root
        self.rel = rel
        self.sink = sink
        self.header = header
        self.newline = newline
        self.bom = bom
        self.keys: list[int] = []
        self.lines: list[str] = []
        self.inserts: list[tuple[int, int, str, Ref]] = []
        self.written = 0  # physical lines already on disk
        self.last_t = 0
        self._fh: Any = None
        self._seq = 0

    def add(self, t: int, line: str) -> None:
        """A line in time order with the other `add`ed lines of this chunk."""
        self.keys.append(t)
        self.lines.append(line)

    def insert(self, t: int, line: str) -> Ref:
        """A line placed by time among the chunk's lines; ties go after `add`ed lines."""
        ref = Ref(self.rel)
        self._seq += 1
        self.inserts.append((t, self._seq, line, ref))
        return ref

    def pending(self) -> bool:
        return bool(self.keys or self.inserts)

    def _merge(self, base: int) -> list[str]:
        if not self.inserts:
            return self.lines
        self.inserts.sort(key=lambda x: (x[0], x[1]))
        out: list[str] = []
        pos = 0
        for t, _seq, line, ref in self.inserts:
            i = bisect_right(self.keys, t, lo=pos)
            out.extend(self.lines[pos:i])
            pos = i
            out.append(line)
            ref.line = base + len(out)
        out.extend(self.lines[pos:])
        return out

    def flush(self, *, truncate_last: bool = False, until: int | None = None) -> None:
        """Write pending lines; planted lines at or after `until` stay pending for the next chunk."""
        later: list[tuple[int, int, str, Ref]] = []
        if until is not None and self.inserts:
            later = [x for x in self.inserts if x[0] >= until]
            self.inserts = [x for x in self.inserts if x[0] < until]
        if not (self.keys or self.inserts):
            self.inserts = later
            return
        first = min(self.keys[0] if self.keys else 1 << 62, self.inserts[0][0] if self.inserts else 1 << 62)
        self.last_t = max(self.last_t, self.keys[-1] if self.keys else 0, *(x[0] for x in self.inserts))
        head: list[str] = []
        prefix = b""
        if self._fh is None:
            path = self.root / self.rel
            self.sink.ensure_dir(path.parent)
            self._fh = open(path, "wb")  # noqa: SIM115 - kept open across chunks, closed in close()
            self.sink.files += 1
            if self.bom:
                prefix = BOM
            if self.header is not None:
                head = self.header(first)
        body = self._merge(self.written + len(head))
        lines = head + body if head else body
        nl = self.newline
        text = nl.join(lines)
        if truncate_last:
            last = lines[-1]
            text = text[: len(text) - len(last) + max(8, len(last) * 3 // 5)]
        else:
            text += nl
        data = prefix + text.encode("utf-8")
        self._fh.write(data)
        self.sink.wrote(len(data), len(lines))
        self.written += len(lines)
        self.keys = []
        self.lines = []
        self.inserts = later

    def close(self, *, truncate_last: bool = False) -> None:
        self.flush(truncate_last=truncate_last)
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            mtime = self.last_t / 1000
            os.utime(self.root / self.rel, (mtime, mtime))


class EventLog(LogFile):
    """Winlogbeat-style NDJSON: events are dicts, rendered with record ids when flushed."""

    def __init__(self, root: Path, rel: str, sink: Sink, channel: str, computer: str) -> None:
        super().__init__(root, rel, sink, None, newline=LF)
        self.channel = channel
        self.computer = computer
        self.record_id = 1000 + (sum(map(ord, channel)) * 37) % 9000
        self.events: list[tuple[int, int, dict[str, Any], Ref | None]] = []

    def event(self, t: int, ev: dict[str, Any], *, ref: bool = False) -> Ref | None:
        r = Ref(self.rel) if ref else None
        self._seq += 1
        self.events.append((t, self._seq, ev, r))
        return r

    def pending(self) -> bool:
        return bool(self.events)

    def flush(self, *, truncate_last: bool = False, until: int | None = None) -> None:
        if not self.events:
            return
        self.events.sort(key=lambda x: (x[0], x[1]))
        now = self.events if until is None else [e for e in self.events if e[0] < until]
        later = [] if until is None else [e for e in self.events if e[0] >= until]
        for t, _seq, ev, ref in now:
            self.record_id += 1
            line = json.dumps(self._shape(t, ev), separators=(",", ":"))
            if ref is None:
                self.keys.append(t)
                self.lines.append(line)
            else:
                ref.line = self.written + len(self.lines) + 1
                self.keys.append(t)
                self.lines.append(line)
        self.events = later
        super().flush()

    def _shape(self, t: int, ev: dict[str, Any]) -> dict[str, Any]:
        level = ev.get("level", "information")
        winlog: dict[str, Any] = {
            "channel": self.channel,
            "provider_name": ev["provider"],
            "event_id": ev["id"],
            "record_id": self.record_id,
            "computer_name": self.computer,
            "level": level,
            "task": ev.get("task", ""),
            "process": {"pid": ev.get("pid", 4), "thread": {"id": ev.get("tid", 6120)}},
        }
        if "event_data" in ev:
            winlog["event_data"] = ev["event_data"]
        if "user_data" in ev:
            winlog["user_data"] = ev["user_data"]
        if "user" in ev:
            winlog["user"] = ev["user"]
        return {
            "@timestamp": iso(t),
            "agent": {"type": "winlogbeat", "version": "7.10.2", "hostname": self.computer.split(".")[0]},
            "ecs": {"version": "1.5.0"},
            "host": {"name": self.computer, "os": {"family": "windows", "version": "10.0"}},
            "event": {
                "code": str(ev["id"]),
                "kind": "event",
                "provider": ev["provider"],
                "created": iso(t + 2000 + (t % 900)),
                "action": ev.get("action", ev.get("task", "")),
            },
            "log": {"level": level},
            "message": ev.get("message", ""),
            "winlog": winlog,
        }
