"""One HTTP request through the server, and the rows it leaves in each log.

A `Req` describes a request once; the row builders turn it into the IIS front-end row (W3SVC1,
port 443), the IIS back-end row (W3SVC2, port 444), the HttpProxy row, and optionally an EWS or
RPS row, all sharing one request id (`cafeReqId=` in IIS, `RequestId` in the Exchange logs).

The same builders serve the fast benign path (called once per user and request kind with marker
values, giving a template) and the scripted path (`emit`, concrete values, one request).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .formats import (
    ECP_FIELDS,
    EWS_FIELDS,
    HP_LAT_FIRST,
    HP_LAT_LAST,
    HTTPPROXY_FIELDS_74,
    RPS_HTTP_FIELDS,
    Ref,
    csv_field,
    csv_row_from,
    strip_ua_commas,
    w3c_row,
)
from .model import EXTERNAL_HOST, HOUR_MS, SERVER_IP, SERVER_IP6, Build, iis_date_time, iso
from .world import World

LAT_FIELDS = HTTPPROXY_FIELDS_74[HP_LAT_FIRST : HP_LAT_LAST + 1]


@dataclass
class Actor:
    """A mailbox user, an administrator, a service or a probe account."""

    sam: str
    upn: str
    sid: str
    mbx: str  # mailbox GUID
    objguid: str  # AD object GUID
    ip: str
    outlook_ua: str = ""
    browser_ua: str = ""
    phone_ua: str = ""
    device_id: str = ""
    device_type: str = ""
    weight: float = 1.0
    legacy_rpc: bool = False
    mac: bool = False

    @property
    def nt(self) -> str:
        return f"CORP\\{self.sam}"


@dataclass
class Req:
    """A request as the front end saw it, and how it was proxied."""

    method: str
    stem: str
    query: str = ""
    client_ip: str = ""
    ua: str = ""
    iis_user: str = ""
    referer: str = ""
    status: int = 200
    substatus: int = 0
    win32: int = 0
    proto: str | None = None  # HttpProxy folder; None: no HttpProxy row
    hp_stem: str | None = None  # UrlStem in HttpProxy if it differs
    url_host: str = EXTERNAL_HOST
    hp_user: str = ""
    auth: str = ""
    anchor: str = ""
    hint: str = ""
    action: str = ""
    crid: str = ""
    cookie: str = ""
    error_code: str = ""
    generic_errors: str = ""
    db: str = ""
    user_guid: str = ""
    cafe: bool = True  # Exchange appends &CorrelationID=<empty>;&cafeReqId=...; to the query
    fe: bool = True  # has a front-end IIS row
    be_stem: str | None = None  # None: not proxied to the back end
    be_query: str = ""
    be_user: str = ""
    be_status: int = 200
    be_ua: str | None = None
    soap: str | None = None  # EWS back-end row with this SoapAction
    ews_user: str = ""
    ews_extra: dict[str, str] = field(default_factory=dict)
    rps: dict[str, str] | None = None  # RPS row overrides
    lat: str = "normal"


# ---- latency ----------------------------------------------------------------------------------

_LAT_RANGES = {  # (median total ms, spread factor, request bytes range, response bytes range)
    "fast": (12, 2.0, (0, 400), (200, 3000)),
    "normal": (45, 2.5, (300, 6000), (800, 60000)),
    "slow": (600, 2.5, (600, 12000), (5000, 900000)),
    "wait": (95000, 1.6, (300, 800), (200, 2000)),
    "ping": (720000, 1.2, (150, 400), (100, 300)),
    "auth": (2, 1.5, (0, 0), (0, 0)),
}


def make_lat(rng: random.Random, cls: str, proxied: bool) -> tuple[dict[str, str], int, int]:
    """HttpProxy latency columns for one request, plus the total and back-end times (ms)."""
    med, spread, rq, rs = _LAT_RANGES[cls]
    total = max(1, int(med * spread ** rng.uniform(-1.0, 1.2)))
    if cls == "ping":
        total = min(900_000, total)
    overhead = min(total, rng.randint(1, 6))
    be = max(0, total - overhead - rng.randint(0, 2)) if proxied else 0
    v = dict.fromkeys(LAT_FIELDS, "")
    v.update(
        ServerLocatorLatency=str(rng.randint(0, 1)) if proxied else "",
        RequestBytes=str(rng.randint(*rq)),
        ResponseBytes=str(rng.randint(*rs)) if cls != "auth" else str(rng.choice((0, 58, 135))),
        TargetOutstandingRequests=str(rng.randint(0, 2)) if proxied else "",
        HttpPipelineLatency=str(rng.randint(0, 3)),
        CalculateTargetBackEndLatency=str(rng.randint(0, 1)) if proxied else "",
        ADLatency=str(rng.choice(("", "", "0", "1", "2"))),
        ModuleToHandlerSwitchingLatency="0",
        ClientReqStreamLatency=str(rng.randint(0, 1)),
        KerberosAuthHeaderLatency="0" if proxied else "",
        HandlerCompletionLatency="0",
        RequestHandlerLatency=str(rng.randint(0, 4)),
        HandlerToModuleSwitchingLatency="0",
        CoreLatency=str(min(total, rng.randint(1, 8))),
        RoutingLatency=str(rng.randint(0, 2)) if proxied else "",
        HttpProxyOverhead=str(overhead),
        TotalRequestTime=str(total),
    )
    if proxied:
        v.update(
            BackendReqInitLatency=str(rng.randint(0, 2)),
            BackendReqStreamLatency=str(rng.randint(0, 1)),
            BackendProcessingLatency=str(be),
            BackendRespInitLatency=str(be + rng.randint(0, 1)),
            BackendRespStreamLatency=str(rng.randint(0, 2)),
            ClientRespStreamLatency=str(rng.randint(0, 2)),
            ProxyTime=str(max(0, total - overhead)),
        )
    return v, total, be


def lat_block(v: dict[str, str]) -> str:
    return ",".join(csv_field(v[f]) for f in LAT_FIELDS)


# ---- row builders -----------------------------------------------------------------------------


def cafe_query(req: Req, reqid: str, *, backend: bool = False) -> str:
    q = req.be_query if backend else req.query
    if not req.cafe:
        return q
    tail = f"&CorrelationID=<empty>;&cafeReqId={reqid};"
    if req.proto == "Owa" and not backend:
        tail += "&encoding=;"
    return q + tail


def iis_fe_values(req: Req, d: str, tm: str, reqid: str, tt: str, scbytes: str) -> dict[str, Any]:
    return {
        "date": d,
        "time": tm,
        "s-ip": SERVER_IP,
        "cs-method": req.method,
        "cs-uri-stem": req.stem,
        "cs-uri-query": cafe_query(req, reqid),
        "s-port": "443",
        "cs-username": req.iis_user,
        "c-ip": req.client_ip,
        "cs(User-Agent)": req.ua,
        "cs(Referer)": req.referer,
        "cs-host": EXTERNAL_HOST if req.url_host == EXTERNAL_HOST else req.url_host,
        "sc-status": str(req.status),
        "sc-substatus": str(req.substatus),
        "sc-win32-status": str(req.win32),
        "sc-bytes": scbytes,
        "time-taken": tt,
    }


def iis_be_values(req: Req, d: str, tm: str, reqid: str, tt: str, scbytes: str, fqdn: str) -> dict[str, Any]:
    return {
        "date": d,
        "time": tm,
        "s-ip": SERVER_IP6,
        "cs-method": req.method,
        "cs-uri-stem": req.be_stem,
        "cs-uri-query": cafe_query(req, reqid, backend=True),
        "s-port": "444",
        "cs-username": req.be_user,
        "c-ip": SERVER_IP6 if req.fe else "127.0.0.1",
        "cs(User-Agent)": req.be_ua if req.be_ua is not None else req.ua,
        "cs(Referer)": "",
        "cs-host": f"{fqdn}:444",
        "sc-status": str(req.be_status),
        "sc-substatus": "0",
        "sc-win32-status": "0",
        "sc-bytes": scbytes,
        "time-taken": tt,
    }


def hp_values(
    req: Req, build: Build, host: str, fqdn: str, dt: str, reqid: str, begin: str, crid: str, lat: Any
) -> dict[str, str]:
    proxied = req.be_stem is not None
    v = {
        "DateTime": dt,
        "RequestId": reqid,
        "MajorVersion": str(build.major),
        "MinorVersion": str(build.minor),
        "BuildVersion": str(build.build),
        "RevisionVersion": str(build.rev),
        "ClientRequestId": crid,
        "Protocol": req.proto or "",
        "UrlHost": req.url_host,
        "UrlStem": req.hp_stem or req.stem,
        "ProtocolAction": req.action,
        "AuthenticationType": req.auth,
        "IsAuthenticated": "true" if req.hp_user else "false",
        "AuthenticatedUser": req.hp_user,
        "AnchorMailbox": req.anchor,
        "UserAgent": strip_ua_commas(req.ua),
        "ClientIpAddress": req.client_ip,
        "ServerHostName": host,
        "HttpStatus": str(req.status),
        "BackEndStatus": str(req.be_status) if proxied else "",
        "ErrorCode": req.error_code,
        "Method": req.method,
        "ProxyAction": "Proxy" if proxied else "",
        "TargetServer": fqdn if proxied else "",
        "TargetServerVersion": build.long if proxied else "",
        "RoutingType": "Normal" if proxied else "",
        "RoutingHint": req.hint,
        "BackEndCookie": req.cookie,
        "ServerLocatorHost": fqdn if proxied else "",
        "UrlQuery": ("?" + req.query) if req.query and not req.query.startswith("&") else "",
        "GenericInfo": (
            f"BeginRequest={begin};CorrelationID=<empty>;ProxyState-Run=None;"
            + ("FEAuth=BEVersion-1941997020;" if proxied else "")
            + f"S:ServiceCommonMetadata.HttpMethod={req.method};EndRequest={dt};"
        ),
        "GenericErrors": req.generic_errors,
        "DatabaseGuid": req.db,
        "UserADObjectGuid": req.user_guid,
    }
    if isinstance(lat, dict):
        v.update(lat)
    else:
        v["ServerLocatorLatency"] = lat  # a template marker standing for the whole block
    return v


def hp_line(fields: list[str], v: dict[str, str]) -> str:
    vals = [csv_field(v.get(f, "")) for f in fields]
    lat = v.get("ServerLocatorLatency", "")
    if lat.startswith("\x00"):
        vals[HP_LAT_FIRST : HP_LAT_LAST + 1] = [lat]
    return ",".join(vals)


def ews_values(
    req: Req,
    build: Build,
    host: str,
    fqdn: str,
    dt: str,
    reqid: str,
    begin: str,
    be_tt: str,
    corr: str,
    resp: str = "4212",
) -> dict[str, str]:
    v = {
        "DateTime": dt,
        "RequestId": reqid,
        "MajorVersion": str(build.major),
        "MinorVersion": str(build.minor),
        "BuildVersion": str(build.build),
        "RevisionVersion": str(build.rev),
        "AuthenticationType": req.auth or "Negotiate",
        "IsAuthenticated": "True",
        "AuthenticatedUser": req.ews_user,
        "UserAgent": strip_ua_commas(req.ua),
        "VersionInfo": "Exchange2013_SP1",
        "ClientIpAddress": SERVER_IP,
        "ServerHostName": host,
        "FrontEndServer": fqdn,
        "SoapAction": req.soap or "",
        "HttpStatus": str(req.be_status),
        "RequestSize": "1184",
        "ResponseSize": resp,
        "CorrelationGuid": corr,
        "PrimaryOrProxyServer": host,
        "TaskType": "Unknown",
        "RemoteBackendCount": "0",
        "LocalMailboxCount": "1",
        "RemoteMailboxCount": "0",
        "LocalIdCount": "0",
        "RemoteIdCount": "0",
        "BeginBudgetConnections": "1",
        "EndBudgetConnections": "1",
        "BeginBudgetHangingConnections": "0",
        "EndBudgetHangingConnections": "0",
        "BeginBudgetAD": "0",
        "EndBudgetAD": "0",
        "BeginBudgetCAS": "0",
        "EndBudgetCAS": "0",
        "BeginBudgetRPC": "0",
        "EndBudgetRPC": "0",
        "BeginBudgetFindCount": "0",
        "EndBudgetFindCount": "0",
        "BeginBudgetSubscriptions": "0",
        "EndBudgetSubscriptions": "0",
        "ThrottlingPolicy": "GlobalThrottlingPolicy_9e6a8b6f-4e4f-4c3c-9a86-5a1b4c2e9d01",
        "ThrottlingDelay": "0",
        "ThrottlingRequestType": "None",
        "TotalDCRequestCount": "1",
        "TotalDCRequestLatency": "1",
        "TotalMBXRequestCount": "3",
        "TotalMBXRequestLatency": "4",
        "HttpPipelineLatency": "0",
        "CheckAccessCoreLatency": "1",
        "AuthModuleLatency": "0",
        "CallContextInitLatency": "1",
        "PreExecutionLatency": "2",
        "CoreExecutionLatency": be_tt,
        "TotalRequestTime": be_tt,
        "GenericInfo": f"SoapAction_0={req.soap};ActivityID={reqid};",
        "StartTime": begin,
        "ProcessId": "11248",
        "TimeInGC": "0",
        "BudgetKey": req.ews_user,
        "WorkClassification": "Interactive",
    }
    v.update(req.ews_extra)
    return v


def rps_values(
    req: Req, build: Build, host: str, fqdn: str, dt: str, reqid: str, begin: str, total: str
) -> dict[str, str]:
    v = {
        "DateTime": dt,
        "StartTime": begin,
        "RequestId": reqid,
        "MajorVersion": str(build.major),
        "MinorVersion": str(build.minor),
        "BuildVersion": str(build.build),
        "RevisionVersion": str(build.rev),
        "UrlHost": fqdn,
        "UrlStem": "/PowerShell",
        "AuthenticationType": "Kerberos",
        "IsAuthenticated": "true",
        "AuthenticatedUser": req.hp_user,
        "ClientIpAddress": req.client_ip,
        "ServerHostName": host,
        "FrontEndServer": host if req.fe else "",
        "HttpStatus": str(req.be_status),
        "Action": "Receive",
        "FailFast": "False",
        "ContributeToFailFast": "False",
        "RequestBytes": "2306",
        "ClientInfo": "Microsoft WinRM Client",
        "CPU": "0",
        "Memory": "2",
        "ActivityContextLifeTime": total,
        "TotalTime": total,
        "UrlQuery": "?" + req.be_query if req.be_query else "",
        "GenericInfo": "OnEndRequest.End.ContentType=application/soap+xml charset UTF-8;"
        f"S:ServiceCommonMetadata.HttpMethod={req.method};",
    }
    v.update(req.rps or {})
    v["ClientInfo"] = strip_ua_commas(v["ClientInfo"])
    return v


# ---- scripted path ----------------------------------------------------------------------------


@dataclass
class Refs:
    fe: Ref | None = None
    be: Ref | None = None
    hp: Ref | None = None
    ews: Ref | None = None
    rps: Ref | None = None


def emit(world: World, rng: random.Random, t: int, req: Req, reqid: str) -> Refs:
    """Write every row of one request at time `t` (ms) as planted lines; return where they went."""
    build = world.tl.build_at(t)
    proxied = req.be_stem is not None
    lat, total, be = make_lat(rng, req.lat, proxied)
    d, tm = iis_date_time(t)
    dt = iso(t)
    begin = iso(t - total)
    out = Refs()
    scb = str(int(lat["ResponseBytes"] or 0) + 412)
    if req.fe:
        f = world.iis(1, t)
        vals = iis_fe_values(req, d, tm, reqid, str(total + 1), scb)
        out.fe = f.insert(t, w3c_row(world.iis_fields(t), vals))
    if proxied:
        f = world.iis(2, t)
        vals = iis_be_values(req, d, tm, reqid, str(be), scb, world.fqdn)
        out.be = f.insert(t, w3c_row(world.iis_fields(t), vals))
    if req.proto is not None:
        f = world.hp(req.proto, t)
        v = hp_values(req, build, world.host, world.fqdn, dt, reqid, begin, req.crid, lat)
        out.hp = f.insert(t, csv_row_from(world.hp_fields(t), v))
    if req.soap is not None:
        v = ews_values(req, build, world.host, world.fqdn, dt, reqid, begin, str(be), reqid, scb)
        out.ews = world.ews(t).insert(t, csv_row_from(EWS_FIELDS, v))
    if req.rps is not None:
        v = rps_values(req, build, world.host, world.fqdn, dt, reqid, begin, str(total))
        out.rps = world.rps(t).insert(t, csv_row_from(RPS_HTTP_FIELDS, v))
    return out


def hour_of(t: int) -> int:
    return t - t % HOUR_MS


def ecp_lines(
    world: World, t: int, *, cmd: str, url: str, reqid: str, actid: str, sid: str, usid: str, took: int
) -> tuple[Ref, Ref]:
    """One ECP request in the ECP Server log and the ECP Activity log."""
    build = world.tl.build_at(t).short
    items = [
        ("TIME", str(took)), ("SID", sid), ("CMD", cmd), ("REQID", reqid), ("URL", url), ("REFERRER", ""),
        ("EX", ""), ("ACTID", actid), ("RS", "0"), ("BLD", build), ("TNAME", ""), ("TID", ""),
        ("USID", usid), ("EDOID", ""), ("ACID", actid),
    ]  # fmt: skip
    data = ";".join(f"S:{k}={v}" for k, v in items)
    server = world.ecp_server(t).insert(
        t,
        csv_row_from(
            ECP_FIELDS, {"TimeStamp": iso(t), "ServerName": world.host, "EventId": "ECP.Request", "EventData": data}
        ),
    )
    act = f"S:URL=https://localhost:444{url};S:Bld={build};S:ActID={actid};S:RS=0;S:TIME={took};S:USID={usid}"
    activity = world.ecp_activity(t).insert(
        t,
        csv_row_from(
            ECP_FIELDS, {"TimeStamp": iso(t), "ServerName": world.host, "EventId": "ECP.Activity", "EventData": act}
        ),
    )
    return server, activity
