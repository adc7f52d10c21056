"""Benign traffic: users, administrators, a service account and Exchange health probes.

The bulk (user and probe requests) goes through a fast path: each (actor, request kind) pair is
rendered once per configuration (build, HttpProxy schema, IIS field list) into `str.format`
templates, and each request only fills in times, ids and a latency block drawn from a pool.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .formats import (
    EWS_FIELDS,
    HTTPPROXY_FIELDS_70,
    HTTPPROXY_FIELDS_74,
    IIS_FIELDS,
    IIS_FIELDS_EXT,
    RPS_HTTP_FIELDS,
    LogFile,
    csv_row_from,
    w3c_row,
)
from .model import (
    DOMAIN_SID,
    EXTERNAL_HOST,
    HOUR_MS,
    SMTP_DOMAIN,
    Build,
    Ids,
    from_ms,
    iso,
)
from .rows import (
    Actor,
    Req,
    ews_values,
    hp_line,
    hp_values,
    iis_be_values,
    iis_fe_values,
    lat_block,
    make_lat,
    rps_values,
)
from .world import World

# Marker strings for template slots; see `Combo.template`.
MK = [f"\x00{i}\x00" for i in range(12)]
(S_DATE, S_TIME, S_REQID, S_FETT, S_BETT, S_DT, S_LAT, S_BEGIN, S_CRID, S_SCB, S_EXP, S_CORR) = range(12)
MMSS = [f"{s // 60:02d}:{s % 60:02d}" for s in range(3600)]
MS3 = [f"{i:03d}" for i in range(1000)]
POOL = 512
KEY = 1 << 20  # request key = time * KEY + combo index

# Weekday profile (UTC) for user traffic; the organisation works 07:00-17:00 UTC.
PROFILE = (
    0.05, 0.04, 0.03, 0.03, 0.04, 0.08, 0.25, 0.65, 0.95, 1.0, 1.0, 0.9,
    0.8, 0.95, 1.0, 0.95, 0.8, 0.5, 0.3, 0.22, 0.18, 0.14, 0.1, 0.07,
)  # fmt: skip
WEEKEND = 0.12

OUTLOOK_UAS = (
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.5134; Pro)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13801; Pro)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13628; Pro)",
    "Microsoft Office/15.0 (Windows NT 6.1; Microsoft Outlook 15.0.5319; Pro)",
)
MAC_UA = "MacOutlook/16.46.21021202 (Intelx64 Mac OS X 11.2.1 (Build 20D74))"
LEGACY_UA = "Microsoft Office/14.0 (Windows NT 6.1; Microsoft Outlook 14.0.7268; Pro)"
BROWSER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/88.0.4324.190 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/88.0.4324.190 Safari/537.36 Edg/88.0.705.81",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:86.0) Gecko/20100101 Firefox/86.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 11_2_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/14.0.3 Safari/605.1.15",
)
PHONES = (
    ("Apple-iPhone12C1/1804.52", "iPhone"),
    ("Apple-iPhone13C2/1804.52", "iPhone"),
    ("Apple-iPhone11C8/1803.227", "iPhone"),
    ("Apple-iPad8C1/1804.52", "iPad"),
    ("Android-SAMSUNG-SM-G973F/101.10000", "SAMSUNGSMG973F"),
    ("Android-Mail/2021.01.31.358599817.Release", "Android"),
)
EWS_APP_UA = "ExchangeServicesClient/15.00.0913.015"
AMPROBE_UA = "AMProbe/Local/ClientAccess"
DB_GUID = "5c7f3e1a-2b9d-4d8e-9f60-1a2b3c4d5e6f"
OAB_GUID = "9a3e6b2c-4d1f-4e7a-8b5c-0d2e4f6a8b1c"
FE_POOLS = {  # HttpProxy protocol folder -> front-end application pool
    "Autodiscover": "MSExchangeAutodiscoverAppPool",
    "Eas": "MSExchangeSyncAppPool",
    "Ecp": "MSExchangeECPAppPool",
    "Ews": "MSExchangeServicesAppPool",
    "Mapi": "MSExchangeMapiFrontEndAppPool",
    "Oab": "MSExchangeOABAppPool",
    "Owa": "MSExchangeOWAAppPool",
    "PowerShell": "MSExchangePowerShellFrontEndAppPool",
    "RpcHttp": "MSExchangeRpcProxyFrontEndAppPool",
}


def pool_pid(pool: str, after_restart: bool) -> int:
    """A stable worker-process id for an application pool (changes after the SU restart)."""
    base = 4100 + (sum(map(ord, pool)) * 7) % 9000
    return (base + 2716 if after_restart else base) // 4 * 4


# ---- actors -----------------------------------------------------------------------------------


@dataclass
class Population:
    users: list[Actor]
    admin: Actor
    svc: Actor
    health: Actor
    exec_user: Actor


def make_population(rng: random.Random, ids: Ids, n_users: int) -> Population:
    users = []
    for i in range(1, max(1, n_users) + 1):
        sam = f"user{i:04d}"
        ua, dtype = rng.choice(PHONES)
        dev = (
            ("Appl" + ids.hexstr(12).upper())
            if dtype in ("iPhone", "iPad")
            else ("androidc" + str(rng.randint(10**9, 10**10 - 1)))
        )
        mac = rng.random() < 0.08
        legacy = not mac and rng.random() < 0.05
        users.append(
            Actor(
                sam=sam,
                upn=f"{sam}@{SMTP_DOMAIN}",
                sid=f"{DOMAIN_SID}-{1104 + i}",
                mbx=ids.guid(),
                objguid=ids.guid(),
                ip=f"10.10.{20 + (i - 1) // 200}.{(i - 1) % 200 + 21}",
                outlook_ua=MAC_UA if mac else (LEGACY_UA if legacy else rng.choice(OUTLOOK_UAS)),
                browser_ua=rng.choice(BROWSER_UAS),
                phone_ua=ua if rng.random() < 0.7 else "",
                device_id=dev,
                device_type=dtype,
                weight=rng.lognormvariate(0, 0.5),
                legacy_rpc=legacy,
                mac=mac,
            )
        )
    admin = Actor("exadmin", f"exadmin@{SMTP_DOMAIN}", f"{DOMAIN_SID}-1103", ids.guid(), ids.guid(), "10.10.5.11")
    svc = Actor("svc-crm", f"svc-crm@{SMTP_DOMAIN}", f"{DOMAIN_SID}-1290", ids.guid(), ids.guid(), "10.10.6.30")
    hm = ids.hexstr(32)
    health = Actor(
        f"HealthMailbox{hm[:7]}",
        f"HealthMailbox{hm}@corp.example",
        f"{DOMAIN_SID}-1141",
        ids.guid(),
        ids.guid(),
        "127.0.0.1",
    )
    exec_user = users[1] if len(users) > 1 else users[0]
    return Population(users, admin, svc, health, exec_user)


def mobile_ip(a: Actor) -> str:
    n = int(a.sid.rsplit("-", 1)[1])
    return f"100.{64 + n % 50}.{(n * 7) % 250 + 1}.{(n * 13) % 250 + 2}"


def home_ip(a: Actor) -> str:
    n = int(a.sid.rsplit("-", 1)[1])
    return f"192.0.2.{n % 200 + 20}"


# ---- request kinds ----------------------------------------------------------------------------

KindFn = Callable[[Actor, Build, str], Req]


def _mapi(a: Actor, b: Build, fq: str, rt: str, stem: str = "/mapi/emsmdb/", lat: str = "normal") -> Req:
    q = f"MailboxId={a.mbx}@{SMTP_DOMAIN}"
    return Req(
        "POST",
        stem,
        q,
        a.ip,
        a.outlook_ua,
        a.nt,
        proto="Mapi",
        hp_user=a.upn,
        auth="Negotiate",
        anchor=f"MailboxGuid~{a.mbx}@{SMTP_DOMAIN}",
        hint="MailboxGuidWithDomain",
        action=rt,
        cookie=f"Database~{DB_GUID}~~{MK[S_EXP]}",
        db=DB_GUID,
        user_guid=a.objguid,
        be_stem=stem,
        be_query=q,
        be_user=a.nt,
        lat=lat,
    )


def k_mapi_exec(a: Actor, b: Build, fq: str) -> Req:
    return _mapi(a, b, fq, "Execute")


def k_mapi_wait(a: Actor, b: Build, fq: str) -> Req:
    return _mapi(a, b, fq, "NotificationWait", lat="wait")


def k_mapi_nspi(a: Actor, b: Build, fq: str) -> Req:
    return _mapi(a, b, fq, "QueryRows", stem="/mapi/nspi/", lat="fast")


def k_mapi_401(a: Actor, b: Build, fq: str) -> Req:
    return Req(
        "POST",
        "/mapi/emsmdb/",
        f"MailboxId={a.mbx}@{SMTP_DOMAIN}",
        a.ip,
        a.outlook_ua,
        "",
        status=401,
        substatus=1,
        win32=2148074254,
        proto="Mapi",
        auth="Negotiate",
        lat="auth",
    )


def _ews(a: Actor, ua: str, soap: str, stem: str = "/EWS/Exchange.asmx", query: str = "", method: str = "POST") -> Req:
    return Req(
        method,
        stem,
        query,
        a.ip,
        ua,
        a.nt,
        proto="Ews",
        hp_user=a.upn,
        auth="Negotiate",
        anchor=f"Sid~{a.sid}",
        hint="WindowsIdentity",
        user_guid=a.objguid,
        be_stem=stem,
        be_query=query,
        be_user=a.nt,
        soap=soap,
        ews_user=a.upn,
        lat="normal",
    )


def k_ews_avail(a: Actor, b: Build, fq: str) -> Req:
    return _ews(a, a.outlook_ua, "GetUserAvailability")


def k_ews_oof(a: Actor, b: Build, fq: str) -> Req:
    return _ews(a, a.outlook_ua, "GetUserOofSettings")


def k_ews_photo(a: Actor, b: Build, fq: str) -> Req:
    q = f"email=user{(len(a.sam) * 37 + int(a.sid[-3:])) % 40 + 1:04d}%40{SMTP_DOMAIN}&size=HR64x64"
    return _ews(a, a.outlook_ua, "GetUserPhoto", "/EWS/Exchange.asmx/s/GetUserPhoto", q, "GET")


def k_ews_mac_sync(a: Actor, b: Build, fq: str) -> Req:
    return _ews(a, a.outlook_ua, "SyncFolderItems")


def k_ews_mac_getitem(a: Actor, b: Build, fq: str) -> Req:
    return _ews(a, a.outlook_ua, "GetItem")


def k_ews_mac_finditem(a: Actor, b: Build, fq: str) -> Req:
    return _ews(a, a.outlook_ua, "FindItem")


def k_ews_app_find(a: Actor, b: Build, fq: str) -> Req:
    r = _ews(a, EWS_APP_UA, "FindItem")
    r.auth = "NTLM"
    return r


def k_ews_app_get(a: Actor, b: Build, fq: str) -> Req:
    r = _ews(a, EWS_APP_UA, "GetItem")
    r.auth = "NTLM"
    return r


def _eas(a: Actor, cmd: str, lat: str) -> Req:
    q = f"Cmd={cmd}&User={a.sam}&DeviceId={a.device_id}&DeviceType={a.device_type}"
    log = (
        f"&Log=PrxFrom:fe80%3a%3a5d1c%3a7a2e%3a3b9f%3ac14%2512_V160_HH:{a.device_type}_"
        f"SmtpAdrs:{a.sam}%40{SMTP_DOMAIN}_Fc1_Sst{len(cmd)}_LdapC0_LdapL0_RpcC21_RpcL16_Erq1_S1_"
    )
    return Req(
        "POST",
        "/Microsoft-Server-ActiveSync/default.eas",
        q,
        mobile_ip(a),
        a.phone_ua,
        a.upn,
        proto="Eas",
        hp_user=a.upn,
        auth="Basic",
        anchor=f"Sid~{a.sid}",
        hint="WindowsIdentity",
        action=cmd,
        user_guid=a.objguid,
        be_stem="/Microsoft-Server-ActiveSync/Proxy/default.eas",
        be_query=q + log,
        be_user=a.upn,
        lat=lat,
    )


def k_eas_sync(a: Actor, b: Build, fq: str) -> Req:
    return _eas(a, "Sync", "normal")


def k_eas_ping(a: Actor, b: Build, fq: str) -> Req:
    return _eas(a, "Ping", "ping")


def _owa(a: Actor, action: str) -> Req:
    q = f"action={action}&EP=1&ID=-{len(action) * 3 + 11}&AC=1"
    return Req(
        "POST",
        "/owa/service.svc",
        q,
        home_ip(a),
        a.browser_ua,
        a.upn,
        referer=f"https://{EXTERNAL_HOST}/owa/",
        proto="Owa",
        hp_user=a.upn,
        auth="Forms",
        anchor=f"Sid~{a.sid}",
        hint="CommonAccessToken-Windows",
        action=action,
        crid=MK[S_CRID],
        user_guid=a.objguid,
        be_stem="/owa/service.svc",
        be_query=q,
        be_user=a.upn,
        lat="normal",
    )


def k_owa_getitem(a: Actor, b: Build, fq: str) -> Req:
    return _owa(a, "GetItem")


def k_owa_findconv(a: Actor, b: Build, fq: str) -> Req:
    return _owa(a, "FindConversation")


def k_owa_notify(a: Actor, b: Build, fq: str) -> Req:
    return _owa(a, "GetOwaNotifications")


def k_owa_logon(a: Actor, b: Build, fq: str) -> Req:
    return Req(
        "GET",
        "/owa/auth/logon.aspx",
        "url=https%3a%2f%2fmail.example.org%2fowa%2f&reason=0",
        home_ip(a),
        a.browser_ua,
        "",
        referer="",
        proto="Owa",
        lat="fast",
    )


def k_autod_xml(a: Actor, b: Build, fq: str) -> Req:
    return Req(
        "POST",
        "/Autodiscover/Autodiscover.xml",
        "",
        a.ip,
        a.outlook_ua,
        a.nt,
        proto="Autodiscover",
        hp_user=a.upn,
        auth="Negotiate",
        anchor=f"SMTP:{a.upn}",
        hint="Url",
        user_guid=a.objguid,
        be_stem="/Autodiscover/Autodiscover.xml",
        be_user=a.nt,
        lat="normal",
    )


def k_autod_json(a: Actor, b: Build, fq: str) -> Req:
    stem = f"/autodiscover/autodiscover.json/v1.0/{a.upn}"
    q = "Protocol=AutodiscoverV1&RedirectCount=1"
    return Req(
        "GET",
        stem,
        q,
        a.ip,
        a.outlook_ua,
        "",
        proto="Autodiscover",
        anchor=f"SMTP:{a.upn}",
        hint="Url",
        be_stem=stem,
        be_query=q,
        be_user="",
        lat="fast",
    )


def k_oab(a: Actor, b: Build, fq: str) -> Req:
    stem = f"/OAB/{OAB_GUID}/oab.xml"
    return Req(
        "GET",
        stem,
        "",
        a.ip,
        a.outlook_ua,
        a.nt,
        proto="Oab",
        hp_user=a.upn,
        auth="Negotiate",
        anchor=f"Sid~{a.sid}",
        hint="WindowsIdentity",
        be_stem=stem,
        be_user=a.nt,
        lat="fast",
    )


def k_rpc(a: Actor, b: Build, fq: str) -> Req:
    q = f"{a.mbx}@{SMTP_DOMAIN}:6001"
    return Req(
        "RPC_IN_DATA",
        "/rpc/rpcproxy.dll",
        q,
        a.ip,
        "MSRPC",
        a.nt,
        proto="RpcHttp",
        hp_user=a.upn,
        auth="Ntlm",
        anchor=f"MailboxGuid~{a.mbx}@{SMTP_DOMAIN}",
        hint="RpcHttpOutlookSessionCookie",
        be_stem="/rpc/rpcproxy.dll",
        be_query=q,
        be_user=a.nt,
        lat="slow",
    )


# Probes (health mailbox, localhost).
def _health_page(stem: str, proto: str) -> Callable[[Actor, Build, str], Req]:
    """A managed-availability probe fetching a front-end healthcheck page from localhost."""

    def kind(a: Actor, b: Build, fq: str) -> Req:
        return Req("GET", stem, "", "127.0.0.1", AMPROBE_UA, "", proto=proto, url_host="localhost", lat="fast")

    return kind


k_p_owa = _health_page("/owa/healthcheck.htm", "Owa")
k_p_ecp = _health_page("/ecp/healthcheck.htm", "Ecp")
k_p_oab = _health_page("/OAB/healthcheck.htm", "Oab")
k_p_rpc = _health_page("/rpc/healthcheck.htm", "RpcHttp")


def k_p_ews(a: Actor, b: Build, fq: str) -> Req:
    ua = f"Ews_AM_Probe/Local (ExchangeServicesClient/{b.long})"
    r = _ews(a, ua, "GetFolder")
    r.client_ip = "127.0.0.1"
    r.url_host = "localhost"
    r.lat = "fast"
    return r


def k_p_mapi(a: Actor, b: Build, fq: str) -> Req:
    r = _mapi(a, b, fq, "Connect", lat="fast")
    r.ua = "MapiHttpClient"
    r.url_host = "localhost"
    return r


def k_p_eas(a: Actor, b: Build, fq: str) -> Req:
    q = f"Cmd=FolderSync&User={a.upn}&DeviceId=EASProbeDeviceId1&DeviceType=EASProbeDeviceType"
    return Req(
        "POST",
        "/Microsoft-Server-ActiveSync/default.eas",
        q,
        "127.0.0.1",
        AMPROBE_UA,
        a.upn,
        proto="Eas",
        url_host="localhost",
        hp_user=a.upn,
        auth="Basic",
        anchor=f"Sid~{a.sid}",
        hint="WindowsIdentity",
        action="FolderSync",
        be_stem="/Microsoft-Server-ActiveSync/Proxy/default.eas",
        be_query=q,
        be_user=a.upn,
        lat="fast",
    )


def k_p_autod(a: Actor, b: Build, fq: str) -> Req:
    r = k_autod_xml(a, b, fq)
    r.client_ip, r.ua, r.url_host, r.lat = "127.0.0.1", AMPROBE_UA, "localhost", "fast"
    return r


def _ps_query(b: Build, app: str) -> str:
    return (
        f"serializationLevel=Full;ExchClientVer={b.short};clientApplication={app};TargetServer=;"
        "PSVersion=5.1.14393.4104"
    )


def k_p_ps(a: Actor, b: Build, fq: str) -> Req:
    q = _ps_query(b, "ActiveMonitor")
    return Req(
        "POST",
        "/powershell",
        q,
        "127.0.0.1",
        "Microsoft WinRM Client",
        a.nt,
        proto="PowerShell",
        url_host="localhost",
        hp_user=a.upn,
        auth="Kerberos",
        anchor=f"Sid~{a.sid}",
        hint="CommonAccessToken-Windows",
        action="New-PSSession:Receive",
        be_stem="/powershell",
        be_query=q,
        be_user=a.nt,
        rps={"ClientInfo": "Microsoft WinRM Client", "Action": "Receive"},
        lat="fast",
    )


def k_p_ps_be(a: Actor, b: Build, fq: str) -> Req:
    q = _ps_query(b, "ActiveMonitor")
    return Req(
        "POST",
        "/powershell",
        "",
        "127.0.0.1",
        "Exchange BackEnd Probes",
        a.nt,
        fe=False,
        cafe=False,
        hp_user=a.upn,
        be_stem="/powershell",
        be_query=q,
        be_user=a.nt,
        rps={"ClientInfo": "Exchange BackEnd Probes", "Action": "Receive", "UrlHost": fq},
        lat="fast",
    )


# (name, base requests per user per peak hour, kind, who has it)
UserKind = tuple[str, float, KindFn, Callable[[Actor], bool]]
_ALL: Callable[[Actor], bool] = lambda a: True  # noqa: E731
USER_KINDS: list[UserKind] = [
    ("mapi_exec", 5.0, k_mapi_exec, lambda a: not a.mac and not a.legacy_rpc),
    ("mapi_wait", 1.0, k_mapi_wait, lambda a: not a.mac and not a.legacy_rpc),
    ("mapi_nspi", 0.3, k_mapi_nspi, lambda a: not a.mac and not a.legacy_rpc),
    ("mapi_401", 0.35, k_mapi_401, lambda a: not a.mac and not a.legacy_rpc),
    ("ews_avail", 0.5, k_ews_avail, lambda a: not a.mac),
    ("ews_oof", 0.1, k_ews_oof, lambda a: not a.mac),
    ("ews_photo", 0.3, k_ews_photo, lambda a: not a.mac),
    ("ews_mac_sync", 3.0, k_ews_mac_sync, lambda a: a.mac),
    ("ews_mac_get", 2.0, k_ews_mac_getitem, lambda a: a.mac),
    ("ews_mac_find", 1.0, k_ews_mac_finditem, lambda a: a.mac),
    ("eas_sync", 1.0, k_eas_sync, lambda a: bool(a.phone_ua)),
    ("eas_ping", 0.5, k_eas_ping, lambda a: bool(a.phone_ua)),
    ("owa_getitem", 0.4, k_owa_getitem, lambda a: a.weight > 1.2),
    ("owa_findconv", 0.3, k_owa_findconv, lambda a: a.weight > 1.2),
    ("owa_notify", 0.3, k_owa_notify, lambda a: a.weight > 1.2),
    ("owa_logon", 0.05, k_owa_logon, lambda a: a.weight > 1.2),
    ("autod_xml", 0.35, k_autod_xml, _ALL),
    ("autod_json", 0.08, k_autod_json, lambda a: not a.mac and not a.legacy_rpc),
    ("oab", 0.03, k_oab, lambda a: not a.mac),
    ("rpc", 4.0, k_rpc, lambda a: a.legacy_rpc),
]
# (kind, per hour) for the health mailbox; ps_be goes straight to the back end.
PROBE_KINDS: list[tuple[KindFn, int]] = [
    (k_p_owa, 12), (k_p_ecp, 4), (k_p_oab, 4), (k_p_rpc, 4), (k_p_ews, 12), (k_p_mapi, 12),
    (k_p_eas, 4), (k_p_autod, 4), (k_p_ps, 4), (k_p_ps_be, 4),
]  # fmt: skip


def _to_template(s: str) -> str:
    s = s.replace("{", "{{").replace("}", "}}")
    for i, m in enumerate(MK):
        s = s.replace(m, "{" + str(i) + "}")
    return s


@dataclass
class Templates:
    fe: str | None
    be: str | None
    hp: str | None
    ews: str | None
    rps: str | None


@dataclass
class Combo:
    """One actor doing one kind of request, with templates cached per configuration."""

    actor: Actor
    kind: KindFn
    lat: str = "normal"
    proto: str | None = None
    crid_mode: int = 0  # 0 none, 1 MAPI R:...;RT:..., 2 GUID
    rt: str = ""
    sess: str = ""
    counter: int = 0
    per_hour: int = 0  # probes: fixed count per hour
    offset: int = 0
    tpls: dict[tuple[Build, int, bool], Templates] = field(default_factory=dict)

    def template(self, cfg: tuple[Build, int, bool], world: World) -> Templates:
        build, cols, ext = cfg
        req = self.kind(self.actor, build, world.fqdn)
        fe = be = hp = ews = rps = None
        iis_fields = IIS_FIELDS_EXT if ext else IIS_FIELDS
        if req.fe:
            fe = _to_template(w3c_row(iis_fields, iis_fe_values(req, *MK[S_DATE : S_REQID + 1], MK[S_FETT], MK[S_SCB])))
        if req.be_stem is not None:
            v = iis_be_values(req, *MK[S_DATE : S_REQID + 1], MK[S_BETT], MK[S_SCB], world.fqdn)
            be = _to_template(w3c_row(iis_fields, v))
        if req.proto is not None:
            fields = HTTPPROXY_FIELDS_74 if cols == 74 else HTTPPROXY_FIELDS_70
            crid = MK[S_CRID] if self.crid_mode else ""
            v = hp_values(req, build, world.host, world.fqdn, MK[S_DT], MK[S_REQID], MK[S_BEGIN], crid, MK[S_LAT])
            hp = _to_template(hp_line(fields, v))
        if req.soap is not None:
            v = ews_values(
                req,
                build,
                world.host,
                world.fqdn,
                MK[S_DT],
                MK[S_REQID],
                MK[S_BEGIN],
                MK[S_BETT],
                MK[S_CORR],
                MK[S_SCB],
            )
            ews = _to_template(csv_row_from(EWS_FIELDS, v))
        if req.rps is not None:
            v = rps_values(req, build, world.host, world.fqdn, MK[S_DT], MK[S_REQID], MK[S_BEGIN], MK[S_FETT])
            v["CommandId"] = v["SessionId"] = v["ShellId"] = MK[S_CORR]
            rps = _to_template(csv_row_from(RPS_HTTP_FIELDS, v))
        t = self.tpls[cfg] = Templates(fe, be, hp, ews, rps)
        return t


class BenignTraffic:
    """Generates the high-volume benign requests hour by hour."""

    def __init__(self, world: World, rng: random.Random, pop: Population) -> None:
        self.world = world
        self.rng = rng
        self.ids = Ids(rng)
        self.pop = pop
        self.user_combos: list[Combo] = []
        weights: list[float] = []
        for a in pop.users:
            for _name, rate, fn, has in USER_KINDS:
                if has(a):
                    self.user_combos.append(self._combo(a, fn))
                    weights.append(rate * a.weight)
        for fn, rate in ((k_ews_app_find, 2.0), (k_ews_app_get, 5.0)):
            self.user_combos.append(self._combo(pop.svc, fn))
            weights.append(rate)
        self.cum = list(_accumulate(weights))
        self.rate_total = self.cum[-1] if self.cum else 0.0
        self.probes = []
        for fn, per_hour in PROBE_KINDS:
            c = self._combo(pop.health, fn)
            c.per_hour = per_hour
            c.offset = rng.randrange(HOUR_MS // per_hour)
            self.probes.append(c)
        self.combos = self.user_combos + self.probes
        self.new_files: dict[str, int] = {}  # HttpProxy folders whose file for the last hour was created
        prng = random.Random(rng.random())
        self.pools = {
            key: [self._pool_entry(prng, key[:-1], key[-1] == "P") for _ in range(POOL)]
            for key in sorted({c.lat for c in self.combos})
        }

    def _combo(self, a: Actor, fn: KindFn) -> Combo:
        from .model import CU18

        req = fn(a, CU18, self.world.fqdn)
        c = Combo(a, fn, lat=req.lat + ("P" if req.be_stem is not None else "L"), proto=req.proto)
        if req.proto == "Mapi" and req.action:
            c.crid_mode, c.rt, c.sess = 1, req.action, self.ids.guid()
        elif req.crid:
            c.crid_mode = 2
        return c

    @staticmethod
    def _pool_entry(rng: random.Random, cls: str, proxied: bool) -> tuple[str, int, str, str, str]:
        v, total, be = make_lat(rng, cls, proxied)
        scb = str(int(v["ResponseBytes"] or 0) + 380)
        return lat_block(v), total, str(be), str(total + 1), scb

    def _sample_bytes(self, c: Combo, i: int) -> int:
        """Bytes one request of combo `c` writes (all its lines), rendered with typical values."""
        from .model import CU18

        cfg = (CU18, 74, False)
        tp = c.tpls.get(cfg) or c.template(cfg, self.world)
        block, _total, be_tt, fe_tt, scb = self.pools[c.lat][i % POOL]
        g = "00000000-0000-4000-8000-000000000000"
        crid = ("R:" + g + ":100;RT:Execute;CI:" + g + ":100") if c.crid_mode == 1 else (g if c.crid_mode == 2 else "")
        dt = "2021-02-24T08:00:00.000Z"
        args = ("2021-02-24", "08:00:00", g, fe_tt, be_tt, dt, block, dt, crid, scb, dt[:19], g)
        return sum(len(x.format(*args)) + 2 for x in (tp.fe, tp.be, tp.hp, tp.ews, tp.rps) if x is not None)

    def bytes_per_request(self) -> float:
        """Mean bytes written per user request (weighted by how often each combo is picked)."""
        if not self.user_combos:
            return 1.0
        picks = random.Random(0).choices(range(len(self.user_combos)), cum_weights=self.cum, k=3000)
        return sum(self._sample_bytes(self.user_combos[i], j) for j, i in enumerate(picks)) / len(picks)

    def probe_bytes_per_hour(self) -> float:
        return float(sum(c.per_hour * self._sample_bytes(c, j) for j, c in enumerate(self.probes)))

    def expected(self, h: int) -> float:
        """Mean user requests in hour `h` at scale 1."""
        return self.rate_total * hour_weight(h)

    def hour(self, h: int, scale: float) -> int:
        """Write the fast-path requests of hour `h`; return how many user requests were made."""
        w = self.world
        tl = w.tl
        rng = self.rng
        rnd = rng.random
        mean = scale * self.expected(h)
        n = max(0, int(mean + rng.gauss(0.0, 1.0) * math.sqrt(mean) + 0.5)) if mean > 0 else 0
        keys: list[int] = []
        if n and self.user_combos:
            picks = rng.choices(range(len(self.user_combos)), cum_weights=self.cum, k=n)
            keys = [int(rnd() * HOUR_MS) * KEY + i for i in picks]
        base = len(self.user_combos)
        for j, c in enumerate(self.probes):
            step = HOUR_MS // c.per_hour
            for k in range(c.per_hour):
                t = (c.offset + k * step + int(rnd() * 20_000)) % HOUR_MS
                keys.append(t * KEY + base + j)
        keys.sort()
        if tl.downtime is not None and tl.downtime[0] < h + HOUR_MS and h < tl.downtime[1]:
            lo, hi = tl.downtime[0] - h, tl.downtime[1] - h
            keys = [k for k in keys if not lo <= k // KEY < hi]
        self._render(h, keys)
        return n

    def _render(self, h: int, keys: list[int]) -> None:
        w = self.world
        tl = w.tl
        cfg = (tl.build_at(h), tl.hp_columns_at(h), tl.iis_extended_at(h))
        d = from_ms(h)
        date_s = d.strftime("%Y-%m-%d")
        hh = d.strftime("%H:")
        dpre = date_s + "T" + hh
        exp = iso(h + HOUR_MS + 13 * 60_000 + 51_000)[:19]
        fe_f, be_f = w.iis(1, h), w.iis(2, h)
        fe_k, fe_l, be_k, be_l = fe_f.keys, fe_f.lines, be_f.keys, be_f.lines
        ews_f = rps_f = None
        hp_files: dict[str, LogFile] = {}
        pools = self.pools
        combos = self.combos
        guid = self.ids.guid
        rnd = self.rng.random
        for key in keys:
            t, i = divmod(key, KEY)
            c = combos[i]
            tp = c.tpls.get(cfg) or c.template(cfg, w)
            ms = t
            t += h
            tm = hh + MMSS[ms // 1000]
            dt = dpre + MMSS[ms // 1000] + "." + MS3[ms % 1000] + "Z"
            block, total, be_tt, fe_tt, scb = pools[c.lat][int(rnd() * POOL)]
            b = ms - total
            begin = (dpre + MMSS[b // 1000] + "." + MS3[b % 1000] + "Z") if b >= 0 else iso(t - total)
            reqid = guid()
            if c.crid_mode == 1:
                c.counter += 1
                crid = f"R:{c.sess}:{c.counter};RT:{c.rt};CI:{c.sess[:8]}{c.actor.mbx[8:]}:{c.counter}"
            elif c.crid_mode == 2:
                crid = guid()
            else:
                crid = ""
            args = (date_s, tm, reqid, fe_tt, be_tt, dt, block, begin, crid, scb, exp, reqid)
            if tp.fe is not None:
                fe_k.append(t)
                fe_l.append(tp.fe.format(*args))
            if tp.be is not None:
                be_k.append(t)
                be_l.append(tp.be.format(*args))
            if tp.hp is not None:
                f = hp_files.get(c.proto)
                if f is None:
                    f = hp_files[c.proto] = w.hp(c.proto, t)
                f.keys.append(t)
                f.lines.append(tp.hp.format(*args))
            if tp.ews is not None:
                if ews_f is None:
                    ews_f = w.ews(t)
                ews_f.keys.append(t)
                ews_f.lines.append(tp.ews.format(*args))
            if tp.rps is not None:
                if rps_f is None:
                    rps_f = w.rps(t)
                rps_f.keys.append(t)
                rps_f.lines.append(tp.rps.format(*args))
        self.new_files = {p: f.keys[0] for p, f in hp_files.items() if f.keys}


def hour_weight(h: int) -> float:
    d = from_ms(h)
    p = PROFILE[d.hour]
    return p * WEEKEND if d.weekday() >= 5 else p


def _accumulate(xs: list[float]) -> list[float]:
    out, s = [], 0.0
    for x in xs:
        s += x
        out.append(s)
    return out
