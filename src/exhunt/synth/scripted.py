"""Scripted benign activity: low-volume things written one at a time and often recorded.

Scanner probes, legitimate `ServerInfo~` anchors, health-probe samples, administrator ECP and
PowerShell sessions (with their cmdlet events), OAB generation runs, the March 2021 SU install,
app-pool compiles (w3wp -> csc.exe), and the hourly background of Windows events. Look-alikes
that a rule could mistake for compromise are recorded in the answer key's `benign` list.
"""

from __future__ import annotations

import random

from . import winevents as we
from .benign import FE_POOLS, OAB_GUID, OUTLOOK_UAS, Population, home_ip, pool_pid
from .formats import OAB_FIELDS, Ref, csv_row_from
from .model import (
    DAY_MS,
    EXTERNAL_HOST,
    HOUR_MS,
    INSTALL_DIR,
    SMTP_DOMAIN,
    Ids,
    from_ms,
    iso,
)
from .rows import Refs, Req, ecp_lines, emit
from .world import Schedule, World

SCANNER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.169 "
    "Safari/537.36",
    "Mozilla/5.0 zgrab/0.x",
)
SCANNER_PROBES = (  # (stem, query, status, HttpProxy folder, ua index)
    (
        "/autodiscover/autodiscover.json",
        "@test.com/owa/?&Email=autodiscover/autodiscover.json%3F@test.com",
        400,
        "Autodiscover",
        0,
    ),
    (
        "/autodiscover/autodiscover.json",
        "@evil.com/owa/&Email=autodiscover/autodiscover.json%3f@evil.com&Protocol=XYZ&FooProtocol=Powershell",
        400,
        "Autodiscover",
        0,
    ),
    ("/owa/auth/x.js", "", 404, "Owa", 1),
    ("/ecp/", "", 401, "Ecp", 1),
)
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/88.0.4324.190 Safari/537.36"
)
EDGE_UA = CHROME_UA + " Edg/88.0.705.81"
ADMIN_PS_CMDLETS = (
    ("Get-Mailbox", '-ResultSize "Unlimited"'),
    ("Get-MailboxStatistics", '-Identity "{u}"'),
    ("Get-MessageTrackingLog", '-Sender "{u}@example.org" -Start "{d} 08:00:00"'),
    ("Get-Queue", ""),
    ("Set-CASMailbox", '-Identity "{u}" -ActiveSyncEnabled "True"'),
    ("Get-ExchangeCertificate", ""),
    ("Get-TransportAgent", ""),
    ("Get-MailboxDatabase", '-Status "True"'),
)
ADMIN_ECP = (  # (url suffix, cmd)
    ("/ecp/DDI/DDIService.svc/GetList?schema=MailboxService", "Get-Recipient.ResultSize='500'.RecipientTypeDetails='UserMailbox'"),
    ("/ecp/DDI/DDIService.svc/GetObject?schema=MailboxPropertiesService", "Get-Mailbox.Identity='{u}'"),
    ("/ecp/DDI/DDIService.svc/GetList?schema=QueueViewerService", "Get-Queue.Server='{h}'"),
    (
        "/ecp/DDI/DDIService.svc/SetObject?schema=MailboxPropertiesService",
        "Set-Mailbox.Identity='{u}'.ProhibitSendQuota='9.5 GB (10,200,547,328 bytes)'",
    ),
)  # fmt: skip


class Scripted:
    """Plans the scripted benign activity into a Schedule and writes the hourly event background."""

    def __init__(self, world: World, rng: random.Random, pop: Population, sched: Schedule) -> None:
        self.w = world
        self.rng = rng
        self.ids = Ids(rng)
        self.pop = pop
        self.sched = sched
        self.canary = self.ids.hexstr(64) + "."
        self.ecp_session = self.ids.guid()

    # ---- planning ----------------------------------------------------------------------------
    def plan(self) -> None:
        tl = self.w.tl
        for day in range(tl.days):
            d0 = tl.t0 + day * DAY_MS
            self._scanners(d0)
            for hh in (1, 9, 17):
                self._oab_run(d0 + hh * HOUR_MS + 37 * 60_000 + self.rng.randrange(60_000))
            if from_ms(d0).weekday() < 5:
                self._admin_ecp(d0 + 10 * HOUR_MS + self.rng.randrange(40 * 60_000))
                self._admin_ps(d0 + 14 * HOUR_MS + self.rng.randrange(30 * 60_000))
            if day % 5 == 0:
                self._um_benign_error(d0 + 6 * HOUR_MS + self.rng.randrange(HOUR_MS))
            self._legit_anchor(d0 + 7 * HOUR_MS + self.rng.randrange(HOUR_MS))
        t = tl.t0
        self._samples(t)
        second = tl.t0 + min(1, tl.days - 1) * DAY_MS
        t_cc = second + 3 * HOUR_MS + 12 * 60_000 + 7_431
        self.sched.at(t_cc, lambda: self._compile(t_cc, "MSExchangeOWAAppPool", False))
        self._legit_vdir(second + 14 * HOUR_MS + 21 * 60_000)
        third = tl.t0 + min(2, tl.days - 1) * DAY_MS
        self._legit_cert(third + 15 * HOUR_MS + 2 * 60_000)
        if tl.build_switch is not None:
            self._su_install(tl.build_switch)
        self._iis_changes()

    def _iis_changes(self) -> None:
        tl = self.w.tl
        self.sched.at(tl.iis_restart, lambda: self.w.iis_header_again(tl.iis_restart, "restart"))
        self.sched.at(tl.iis_fields_on, lambda: self.w.iis_header_again(tl.iis_fields_on, "changed"))
        self.sched.at(tl.iis_fields_off, lambda: self.w.iis_header_again(tl.iis_fields_off, "reverted"))

    # ---- requests ----------------------------------------------------------------------------
    def _emit(self, t: int, req: Req) -> Refs:
        return emit(self.w, self.rng, t, req, self.ids.guid())

    def _scanners(self, d0: int) -> None:
        for _ in range(self.rng.randint(2, 5)):
            t = d0 + self.rng.randrange(DAY_MS - 1000)
            stem, query, status, proto, ua_i = self.rng.choice(SCANNER_PROBES)
            ip = f"198.51.100.{self.rng.randint(10, 250)}"
            if self.w.tl.down(t):
                continue

            def run(
                t: int = t,
                stem: str = stem,
                query: str = query,
                status: int = status,
                proto: str = proto,
                ua: str = SCANNER_UAS[ua_i],
                ip: str = ip,
            ) -> None:
                req = Req("GET", stem, query, ip, ua, "", status=status, proto=proto, lat="auth")
                refs = self._emit(t, req)
                self.w.key.benign_at(refs.fe, "scanner-probe")
                self.w.key.benign_at(refs.hp, "scanner-probe")

            self.sched.at(t, run)

    def _legit_anchor(self, t: int) -> None:
        hm = self.pop.health

        def run() -> None:
            a = Req(
                "POST",
                "/Autodiscover/Autodiscover.xml",
                "",
                "127.0.0.1",
                "AMProbe/Local/ClientAccess",
                hm.nt,
                proto="Autodiscover",
                url_host="localhost",
                hp_user=hm.upn,
                auth="Negotiate",
                anchor=f"ServerInfo~{self.w.fqdn}/autodiscover/autodiscover.xml",
                hint="ServerInfo",
                be_stem="/Autodiscover/Autodiscover.xml",
                be_user=hm.nt,
                lat="fast",
            )
            refs = self._emit(t, a)
            self.w.key.benign_at(refs.hp, "legit-anchor", anchor=a.anchor)
            b = Req(
                "GET",
                "/owa/healthcheck.htm",
                "",
                "127.0.0.1",
                "AMProbe/Local/ClientAccess",
                "",
                proto="Owa",
                url_host="localhost",
                anchor="ServerInfo~localhost/owa/healthcheck.htm",
                hint="ServerInfo",
                lat="fast",
            )
            refs = self._emit(t + 411, b)
            self.w.key.benign_at(refs.hp, "legit-anchor", anchor=b.anchor)

        self.sched.at(t, run)

    def _samples(self, d0: int) -> None:
        """Recorded look-alikes and format quirks on the first day."""
        u = self.pop.users[0]
        hm = self.pop.health
        key = self.w.key
        t1 = d0 + 9 * HOUR_MS + 14 * 60_000 + 7_123

        def ua_sample() -> None:
            req = Req(
                "POST",
                "/owa/service.svc",
                "action=GetItem&EP=1&ID=-44&AC=1",
                home_ip(u),
                CHROME_UA,
                u.upn,
                referer=f"https://{EXTERNAL_HOST}/owa/",
                proto="Owa",
                hp_user=u.upn,
                auth="Forms",
                anchor=f"Sid~{u.sid}",
                hint="CommonAccessToken-Windows",
                action="GetItem",
                crid=self.ids.guid(),
                be_stem="/owa/service.svc",
                be_query="action=GetItem&EP=1&ID=-44&AC=1",
                be_user=u.upn,
            )
            refs = self._emit(t1, req)
            assert refs.hp is not None and refs.fe is not None
            key.quirk(refs.hp, "ua-comma-stripped", marker="(KHTML  like Gecko)")
            key.quirk(refs.fe, "ua-plus", marker="(KHTML,+like+Gecko)")

        def probe_sample() -> None:
            b = self.w.tl.build_at(t1)
            req = Req(
                "POST",
                "/EWS/Exchange.asmx",
                "",
                "127.0.0.1",
                f"Ews_AM_Probe/Local (ExchangeServicesClient/{b.long})",
                hm.nt,
                proto="Ews",
                url_host="localhost",
                hp_user=hm.upn,
                auth="Negotiate",
                anchor=f"Sid~{hm.sid}",
                hint="WindowsIdentity",
                be_stem="/EWS/Exchange.asmx",
                be_user=hm.nt,
                soap="GetFolder",
                ews_user=hm.upn,
                lat="fast",
            )
            refs = self._emit(t1 + 60_000, req)
            for r in (refs.fe, refs.hp, refs.ews):
                key.benign_at(r, "health-probe")
            assert refs.fe is not None
            key.quirk(refs.fe, "iis-dash-empty")
            owa = Req(
                "GET",
                "/owa/healthcheck.htm",
                "",
                "127.0.0.1",
                "AMProbe/Local/ClientAccess",
                "",
                proto="Owa",
                url_host="localhost",
                lat="fast",
            )
            refs = self._emit(t1 + 61_000, owa)
            for r in (refs.fe, refs.hp):  # the web rules read both logs: neither row may look severe
                if r is not None:
                    key.benign_at(r, "health-probe")

        def json_sample() -> None:
            stem = f"/autodiscover/autodiscover.json/v1.0/{u.upn}"
            req = Req(
                "GET",
                stem,
                "Protocol=AutodiscoverV1&RedirectCount=1",
                u.ip,
                OUTLOOK_UAS[0],
                "",
                proto="Autodiscover",
                anchor=f"SMTP:{u.upn}",
                hint="Url",
                be_stem=stem,
                be_query="Protocol=AutodiscoverV1&RedirectCount=1",
                lat="fast",
            )
            refs = self._emit(t1 + 90_000, req)
            for r in (refs.fe, refs.be, refs.hp):
                if r is not None:
                    key.benign_at(r, "autodiscover-json-legit")

        def quoted_sample() -> None:
            err = (
                'ClientError=[PAL Error Code: 0], Message: "The specified object was not found in the store., '
                'The process failed to get the correct properties."'
            )
            req = Req(
                "POST",
                "/owa/service.svc",
                "action=GetItem&EP=1&ID=-44&AC=1",
                home_ip(u),
                u.browser_ua,
                u.upn,
                proto="Owa",
                hp_user=u.upn,
                auth="Forms",
                anchor=f"Sid~{u.sid}",
                hint="CommonAccessToken-Windows",
                action="GetItem",
                crid=self.ids.guid(),
                generic_errors=err,
                be_stem="/owa/service.svc",
                be_query="action=GetItem&EP=1&ID=-44&AC=1",
                be_user=u.upn,
            )
            refs = self._emit(t1 + 2 * HOUR_MS, req)
            assert refs.hp is not None
            key.quirk(refs.hp, "quoted-comma-doubled-quote", marker='""The specified object')

        def ragged() -> None:
            t = t1 + 33 * 60_000
            f = self.w.hp("Ews", t)
            b = self.w.tl.build_at(t)
            cells = [
                iso(t),
                self.ids.guid(),
                str(b.major),
                str(b.minor),
                str(b.build),
                str(b.rev),
                "",
                "Ews",
                "localhost",
                "/EWS/Exchange.asmx",
                "",
                "Negotiate",
                "true",
                hm.upn,
                "",
                f"Sid~{hm.sid}",
                f"Ews_AM_Probe/Local (ExchangeServicesClient/{b.long})",
                "127.0.0.1",
                self.w.host,
                "200",
            ]
            key.quirk(f.insert(t, ",".join(cells)), "ragged-row", columns=len(cells))

        self.sched.at(t1, ua_sample)
        self.sched.at(t1 + 60_000, probe_sample)
        self.sched.at(t1 + 90_000, json_sample)
        self.sched.at(t1 + 2 * HOUR_MS, quoted_sample)
        self.sched.at(t1 + 33 * 60_000, ragged)
        self.w.key.quirk(Ref(self.w.iis(1, d0).rel, 3), "utc-timestamps", marker="#Date: ")

    def _admin_ecp(self, t: int) -> None:
        adm = self.pop.admin
        u = self.rng.choice(self.pop.users).sam
        steps = [("/ecp/", "", "GET")] + [(url, cmd, "POST") for url, cmd in self.rng.sample(ADMIN_ECP, 3)]
        for i, (url, cmd, method) in enumerate(steps):
            tt = t + i * self.rng.randint(4_000, 40_000)

            def run(tt: int = tt, url: str = url, cmd: str = cmd, method: str = method) -> None:
                stem, _, q = url.partition("?")
                if q:
                    q += f"&msExchEcpCanary={self.canary}"
                req = Req(
                    method,
                    stem,
                    q,
                    adm.ip,
                    EDGE_UA,
                    adm.nt,
                    referer=f"https://{EXTERNAL_HOST}/ecp/",
                    proto="Ecp",
                    hp_user=adm.upn,
                    auth="Forms",
                    anchor=f"Sid~{adm.sid}",
                    hint="CommonAccessToken-Windows",
                    be_stem=stem,
                    be_query=q,
                    be_user=adm.nt,
                )
                reqid = self.ids.guid()
                emit(self.w, self.rng, tt, req, reqid)
                if cmd:
                    c = cmd.format(u=u, h=self.w.host)
                    ecp_lines(
                        self.w,
                        tt,
                        cmd=c,
                        url=url,
                        reqid=reqid,
                        actid=self.ids.guid(),
                        sid=self.ecp_session,
                        usid=self.ids.guid(),
                        took=self.rng.randint(40, 900),
                    )
                    if c.startswith("Set-"):
                        name, params = _ecp_to_params(c)
                        self.w.event(
                            "msexchange-management",
                            tt + 120,
                            we.cmdlet(
                                tt,
                                name=name,
                                params=params,
                                caller=adm.nt,
                                caller_sid=adm.sid,
                                app="ECP",
                                pid=pool_pid(
                                    "MSExchangeECPAppPool",
                                    self.w.tl.build_switch is not None and tt >= self.w.tl.build_switch,
                                ),
                            ),
                        )

            self.sched.at(tt, run)

    def _admin_ps(self, t: int) -> None:
        adm = self.pop.admin
        session = self.ids.guid()
        picks = self.rng.sample(ADMIN_PS_CMDLETS, self.rng.randint(3, 6))
        for i, (name, params) in enumerate(picks):
            tt = t + i * self.rng.randint(5_000, 90_000)

            def run(tt: int = tt, name: str = name, params: str = params) -> None:
                b = self.w.tl.build_at(tt)
                p = params.format(u=self.rng.choice(self.pop.users).sam, d=from_ms(tt).strftime("%m/%d/%Y"))
                q = f"serializationLevel=Full;ExchClientVer={b.short};clientApplication=ManagementShell;TargetServer=;PSVersion=5.1.14393.4104"
                req = Req(
                    "POST",
                    "/powershell",
                    q,
                    adm.ip,
                    "Microsoft WinRM Client",
                    adm.nt,
                    proto="PowerShell",
                    hp_user=adm.upn,
                    auth="Kerberos",
                    anchor=f"Sid~{adm.sid}",
                    hint="CommonAccessToken-Windows",
                    action=f"{name}:Command",
                    be_stem="/powershell",
                    be_query=q,
                    be_user=adm.nt,
                    rps={
                        "ClientInfo": "Microsoft WinRM Client",
                        "Action": "Command",
                        "CommandName": name,
                        "CommandId": self.ids.guid(),
                        "SessionId": session,
                        "ShellId": session,
                    },
                )
                emit(self.w, self.rng, tt, req, self.ids.guid())
                self.w.event(
                    "msexchange-management",
                    tt + 300,
                    we.cmdlet(
                        tt,
                        name=name,
                        params=p,
                        caller=adm.nt,
                        caller_sid=adm.sid,
                        app="ServerRemoteHost-PowerShell",
                        pid=5120,
                    ),
                )

            self.sched.at(tt, run)

    def _legit_vdir(self, t: int) -> None:
        adm = self.pop.admin
        ident = f"{self.w.host}\\OAB (Default Web Site)"

        def run() -> None:
            url = "/ecp/DDI/DDIService.svc/SetObject?schema=OABVirtualDirectory"
            stem, _, q = url.partition("?")
            req = Req(
                "POST",
                stem,
                q + f"&msExchEcpCanary={self.canary}",
                adm.ip,
                EDGE_UA,
                adm.nt,
                referer=f"https://{EXTERNAL_HOST}/ecp/",
                proto="Ecp",
                hp_user=adm.upn,
                auth="Forms",
                anchor=f"Sid~{adm.sid}",
                hint="CommonAccessToken-Windows",
                be_stem=stem,
                be_query=q + f"&msExchEcpCanary={self.canary}",
                be_user=adm.nt,
            )
            reqid = self.ids.guid()
            refs = emit(self.w, self.rng, t, req, reqid)
            cmd = f"Set-OabVirtualDirectory.ExternalUrl='https://{EXTERNAL_HOST}/OAB'.Identity='{ident}'"
            server, _ = ecp_lines(
                self.w,
                t,
                cmd=cmd,
                url=url,
                reqid=reqid,
                actid=self.ids.guid(),
                sid=self.ecp_session,
                usid=self.ids.guid(),
                took=311,
            )
            ev = self.w.event(
                "msexchange-management",
                t + 150,
                we.cmdlet(
                    t,
                    name="Set-OabVirtualDirectory",
                    params=f'-Identity "{ident}" -ExternalUrl "https://{EXTERNAL_HOST}/OAB"',
                    caller=adm.nt,
                    caller_sid=adm.sid,
                    app="ECP",
                    pid=pool_pid("MSExchangeECPAppPool", False),
                ),
                ref=True,
            )
            key = self.w.key
            key.benign_at(server, "legit-vdir-change")
            key.benign_at(ev, "legit-vdir-change")
            key.benign_at(refs.hp, "legit-vdir-change")

        self.sched.at(t, run)

    def _legit_cert(self, t: int) -> None:
        adm = self.pop.admin

        def run() -> None:
            params = (
                f'-GenerateRequest "True" -SubjectName "CN={EXTERNAL_HOST}" -DomainName "{EXTERNAL_HOST}",'
                f'"autodiscover.{SMTP_DOMAIN}" -RequestFile "C:\\Certs\\mail_{SMTP_DOMAIN.replace(".", "_")}_2021.req"'
                ' -PrivateKeyExportable "True"'
            )
            ev = self.w.event(
                "msexchange-management",
                t,
                we.cmdlet(
                    t,
                    name="New-ExchangeCertificate",
                    params=params,
                    caller=adm.nt,
                    caller_sid=adm.sid,
                    app="ServerRemoteHost-PowerShell",
                    pid=5120,
                ),
                ref=True,
            )
            self.w.key.benign_at(ev, "legit-cert-request")

        self.sched.at(t, run)

    def _um_benign_error(self, t: int) -> None:
        def run() -> None:
            msg = (
                "The Unified Messaging server failed to exchange the required certificates with an IP gateway "
                "to enable Transport Layer Security (TLS) for an incoming call. Please check that this is a "
                "configured TLS peer and that the right certificates are being used. More information: "
                "The remote certificate is invalid according to the validation procedure."
            )
            ev = self.w.event(
                "application",
                t,
                we.app_event(
                    "MSExchange Unified Messaging",
                    1088,
                    "error",
                    msg,
                    "10.10.8.2",
                    "The remote certificate is invalid",
                    task="UMCallRouter",
                ),
                ref=True,
            )
            self.w.key.benign_at(ev, "um-error-benign")

        self.sched.at(t, run)

    def _oab_run(self, t: int) -> None:
        if self.w.tl.down(t):
            return

        def run() -> None:
            f = self.w.oab(t)
            tmp = f"{INSTALL_DIR}\\ClientAccess\\OAB\\Temp\\{self.ids.guid()}"
            oab = "\\Default Offline Address Book"
            msgs = [
                ("Information", f"OABGeneratorAssistant: Beginning OAB generation for '{oab}'."),
                ("Information", f"Downloading OAB files from the arbitration mailbox to '{tmp}'."),
            ]
            names = ["oab.xml", f"{OAB_GUID}-data-1.lzx", f"{OAB_GUID}-lng0409-1.lzx", f"{OAB_GUID}-binpatch-1.lzx"]
            for n in names:
                msgs.append(
                    ("Information", f"Download completed for file '{tmp}\\{n}'; {self.rng.randint(900, 480000)} bytes.")
                )
            msgs += [
                ("Information", f"Generated full OAB for '{oab}': {len(self.pop.users) + 7} records."),
                ("Information", f"Uploading {len(names)} files to the arbitration mailbox."),
                (
                    "Information",
                    f"OAB generation for '{oab}' completed successfully in 00:00:0{self.rng.randint(2, 9)}.",
                ),
            ]
            pid = 4452
            first_dl = None
            for i, (sev, msg) in enumerate(msgs):
                tt = t + i * 37 + self.rng.randrange(30)
                r = f.insert(
                    tt,
                    csv_row_from(
                        OAB_FIELDS,
                        {
                            "date-time": iso(tt),
                            "server-name": self.w.host,
                            "process-id": str(pid),
                            "thread-id": "38",
                            "severity": sev,
                            "oab-name": oab,
                            "message": msg,
                        },
                    ),
                )
                if first_dl is None and msg.startswith("Download completed"):
                    first_dl = r
            self.w.key.benign_at(first_dl, "oab-download-completed")
            self.w.event(
                "sysmon",
                t + 80,
                we.sysmon_file(
                    t + 80,
                    self.ids,
                    image=f"{INSTALL_DIR}\\Bin\\MSExchangeMailboxAssistants.exe",
                    pid=pid,
                    target=f"{tmp}\\{names[1]}",
                ),
            )

        self.sched.at(t, run)

    # ---- processes ---------------------------------------------------------------------------
    def _compile(self, t: int, pool: str, after: bool) -> None:
        """IIS compiles an application after a (re)start: w3wp -> csc.exe -> cvtres.exe."""
        w3pid = pool_pid(pool, after)
        d = self.ids.hexstr(16)
        tmp = f"C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\Temporary ASP.NET Files\\owa\\{d[:8]}\\{d[8:]}"
        name = self.ids.hexstr(8)
        cmd = f'"{we.CSC}" /noconfig /fullpaths @"{tmp}\\{name}.cmdline"'
        ev = self.w.event(
            "sysmon",
            t,
            we.sysmon_process(
                t,
                self.ids,
                image=we.CSC,
                cmd=cmd,
                parent_image=we.W3WP,
                parent_cmd=we.w3wp_cmdline(pool),
                pid=w3pid + 812,
                ppid=w3pid,
                cwd="C:\\Windows\\SysWOW64\\inetsrv\\",
                description="Visual C# Command Line Compiler",
                product="Microsoft® .NET Framework",
                file_version="4.8.3761.0 built by: NET48REL1",
            ),
            ref=True,
        )
        self.w.key.benign_at(ev, "w3wp-csc")
        acc = self.w.event(
            "sysmon",
            t + 2,
            we.sysmon_access(
                t + 2, self.ids, source=we.W3WP, source_pid=w3pid, target=we.CSC, target_pid=w3pid + 812,
                access="0x1fffff",
            ),
            ref=True,
        )  # fmt: skip
        self.w.key.benign_at(acc, "w3wp-opens-its-compiler")
        conhost = "C:\\Windows\\System32\\conhost.exe"
        ev = self.w.event(
            "sysmon",
            t + 9,
            we.sysmon_process(
                t + 9,
                self.ids,
                image=conhost,
                cmd=f"{conhost} 0xffffffff -ForceV1",
                parent_image=we.W3WP,
                parent_cmd=we.w3wp_cmdline(pool),
                pid=w3pid + 816,
                ppid=w3pid,
                description="Console Window Host",
            ),
            ref=True,
        )
        self.w.key.benign_at(ev, "w3wp-conhost")
        cvt = "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\cvtres.exe"
        self.w.event(
            "sysmon",
            t + 311,
            we.sysmon_process(
                t + 311,
                self.ids,
                image=cvt,
                cmd=f'{cvt} /NOLOGO /READONLY /MACHINE:IX86 "/OUT:C:\\Windows\\TEMP\\RES{name[:4].upper()}.tmp" '
                f'"{tmp}\\CSC{name[4:].upper()}.TMP"',
                parent_image=we.CSC,
                parent_cmd=cmd,
                pid=w3pid + 1020,
                ppid=w3pid + 812,
                description="Microsoft® Resource File To COFF Object Conversion Utility",
                product="Microsoft® .NET Framework",
            ),
        )
        self.w.event(
            "sysmon",
            t + 604,
            we.sysmon_file(t + 604, self.ids, image=we.CSC, pid=w3pid + 812, target=f"{tmp}\\App_Web_{name}.dll"),
        )

    def _su_install(self, t_up: int) -> None:
        tl = self.w.tl
        assert tl.downtime is not None
        down_start = tl.downtime[0]
        t = down_start - 4 * 60_000
        adm = self.pop.admin
        kb = "KB5000871"

        def start() -> None:
            msi = "C:\\Windows\\System32\\msiexec.exe"
            cmd = f'"{msi}" /update "C:\\Users\\{adm.sam}\\Downloads\\Exchange2016-{kb}-x64-en.msp"'
            self.w.event(
                "sysmon",
                t,
                we.sysmon_process(
                    t,
                    self.ids,
                    image=msi,
                    cmd=cmd,
                    parent_image="C:\\Windows\\explorer.exe",
                    parent_cmd="C:\\Windows\\Explorer.EXE",
                    pid=8812,
                    ppid=4920,
                    user=adm.nt,
                    cwd=f"C:\\Users\\{adm.sam}\\Downloads\\",
                    integrity="High",
                    description="Windows® installer",
                ),
            )
            self.w.event(
                "security",
                t + 1,
                we.security_4688(
                    t + 1,
                    image=msi,
                    cmd=cmd,
                    parent_image="C:\\Windows\\explorer.exe",
                    pid=8812,
                    ppid=4920,
                    host=self.w.host,
                    user=adm.sam,
                ),
            )

        def files() -> None:
            tt = down_start + 25 * 60_000
            base = f"{INSTALL_DIR}\\FrontEnd\\HttpProxy\\owa\\auth"
            for i, target in enumerate((f"{base}\\15.1.2106.13\\themes\\resources\\logon.css", f"{base}\\logon.aspx")):
                ev = self.w.event(
                    "sysmon",
                    tt + i * 40,
                    we.sysmon_file(
                        tt + i * 40, self.ids, image="C:\\Windows\\System32\\msiexec.exe", pid=9320, target=target
                    ),
                    ref=True,
                )
                self.w.key.benign_at(ev, "installer-file-write")
            self.w.event(
                "application",
                tt + 5 * 60_000,
                we.app_event(
                    "MsiInstaller",
                    1022,
                    "information",
                    f"Product: Microsoft Exchange Server - Update 'Security Update for Exchange Server 2016 "
                    f"Cumulative Update 18 ({kb})' installed successfully.",
                    "Microsoft Exchange Server",
                    kb,
                ),
            )

        self.sched.at(t, start)
        self.sched.at(down_start + 25 * 60_000, files)
        for pool, dt in (("MSExchangeOWAAppPool", 95_000), ("MSExchangeECPAppPool", 131_000)):
            self.sched.at(t_up + dt, lambda pool=pool, dt=dt: self._compile(t_up + dt, pool, True))

    # ---- hourly background of Windows events ------------------------------------------------
    def hour_events(self, h: int, new_files: dict[str, int]) -> None:
        w, rng, ids = self.w, self.rng, self.ids
        host = w.host
        hm = self.pop.health
        after = w.tl.build_switch is not None and h >= w.tl.build_switch
        for q in range(4):
            t = h + q * 15 * 60_000 + 7 * 60_000 + rng.randrange(5000)
            if w.tl.down(t):
                continue
            w.event(
                "application",
                t,
                we.app_event(
                    "MSExchange ADAccess",
                    2080,
                    "information",
                    f"Process MSExchangeHMWorker.exe (ExHMWorker) (PID={pool_pid('HMWorker', after)}). Exchange Active "
                    "Directory Provider has discovered the following servers with the following characteristics:\n "
                    "(Server name | Roles | Enabled | Reachability | Synchronized | GC capable | PDC | SACL right | "
                    "Critical Data | Netlogon | OS Version) \nIn-site:\ndc01.corp.example  CDG 1 7 7 1 0 1 1 7 1\n "
                    "Out-of-site:\n",
                    "MSExchangeHMWorker.exe",
                    str(pool_pid("HMWorker", after)),
                    task="Topology",
                ),
            )
        for _ in range(6):
            t = h + rng.randrange(HOUR_MS)
            w.event(
                "security",
                t,
                we.security_4624(t, user=hm.sam, domain="CORP", sid=hm.sid, ip="127.0.0.1", logon_type=3, host=host),
            )
        busy = PROFILE_BUSY[from_ms(h).hour] and from_ms(h).weekday() < 5
        for _ in range(min(12, len(self.pop.users) // 8 + 1) if busy else 0):
            u = rng.choice(self.pop.users)
            t = h + rng.randrange(HOUR_MS)
            w.event(
                "security",
                t,
                we.security_4624(t, user=u.sam, domain="CORP", sid=u.sid, ip=u.ip, logon_type=3, host=host),
            )
        t = h + 5 * 60_000 + rng.randrange(60_000)
        wmi = "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
        svchost = "C:\\Windows\\System32\\svchost.exe"
        pid = 3000 + rng.randrange(6000) // 4 * 4
        w.event(
            "sysmon",
            t,
            we.sysmon_process(
                t,
                ids,
                image=wmi,
                cmd="C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
                parent_image=svchost,
                parent_cmd="C:\\Windows\\system32\\svchost.exe -k DcomLaunch",
                pid=pid,
                ppid=812,
                user="NT AUTHORITY\\NETWORK SERVICE",
                description="WMI Provider Host",
            ),
        )
        w.event(
            "security",
            t + 2,
            we.security_4688(
                t + 2,
                image=wmi,
                cmd="C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
                parent_image=svchost,
                pid=pid,
                ppid=812,
                host=host,
            ),
        )
        if from_ms(h).hour == 2:
            t = h + 30 * 60_000 + rng.randrange(60_000)
            task = "C:\\Windows\\System32\\taskhostw.exe"
            w.event(
                "sysmon",
                t,
                we.sysmon_process(
                    t,
                    ids,
                    image=task,
                    cmd="taskhostw.exe Reboot",
                    parent_image=svchost,
                    parent_cmd="C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
                    pid=pid + 8,
                    ppid=1240,
                    description="Host Process for Windows Tasks",
                ),
            )
        for proto, t in sorted(new_files.items()):
            pool = FE_POOLS[proto]
            w.event(
                "sysmon",
                max(h, t - 3),
                we.sysmon_file(
                    max(h, t - 3),
                    ids,
                    image=we.W3WP,
                    pid=pool_pid(pool, after),
                    target=f"{INSTALL_DIR}\\Logging\\HttpProxy\\{proto}\\HttpProxy_{from_ms(h).strftime('%Y%m%d%H')}-1.LOG",
                ),
            )


PROFILE_BUSY = tuple(7 <= hour <= 16 for hour in range(24))


def _ecp_to_params(cmd: str) -> tuple[str, str]:
    """`Set-Mailbox.Identity='x'.Quota='y'` -> ('Set-Mailbox', '-Identity "x" -Quota "y"')."""
    name, _, rest = cmd.partition(".")
    parts = []
    for item in rest.split("'."):
        k, _, v = item.partition("=")
        parts.append(f'-{k} "{v.strip(chr(39))}"')
    return name, " ".join(parts)
