"""Mailbox access from every log that records it, as rows in one shape, in SQL.

Sources (docs/research/mailbox-access.md says which field carries the mailbox in each):
- EWS back-end rows: the operation (`SoapAction`), the mailbox acted on (`ActAsUser`,
  `ImpersonatedUser`, `ProxyAsUser`, a `MailboxTarget=` key in `GenericInfo`, else the caller), the
  bytes returned (`ResponseSize`); joined to the HttpProxy row of the same request (`RequestId`,
  within 15 minutes) for the real client address and user agent, so an SSRF row and the EWS row it
  caused are one access.
- HttpProxy rows of the mail protocols (MAPI, OWA, ActiveSync, RPC over HTTP, EWS when the EWS log
  is missing): the caller, the mailbox from `AnchorMailbox` (`Smtp~`/`UPN~` directly; `MailboxGuid~`
  and `Sid~` through the account that owns the anchor in the rest of the log), `ResponseBytes`.
- Mailbox export, search, permission and forwarding cmdlets (MSExchange Management events, the
  Rps cmdlet log).
- Message Tracking: REDIRECT events (mailbox forwarding) and copies made by inbox rules.
- IIS: downloads of exported files from web folders (`sc-bytes` when logged).
"""

from __future__ import annotations

from exhunt.analytics.sqlutil import EVENTS, EWS, HTTPPROXY, IIS, TRACKING, Table
from exhunt.case import CaseReader
from exhunt.families import CMDLET_SOURCE, columns_read, source_families

EWS_CONTENT = (
    "GetItem", "FindItem", "GetFolder", "FindFolder", "GetAttachment", "ExportItems", "SyncFolderItems",
    "SyncFolderHierarchy", "FindConversation", "GetConversationItems", "FindPeople",
)  # fmt: skip
EWS_ITEMS = ("GetItem", "GetAttachment", "ExportItems", "GetConversationItems")
OWA_CONTENT = ("GetItem", "FindItem", "FindConversation", "GetConversationItems", "GetFileAttachment", "GetAttachment")
EAS_CONTENT = ("Sync", "ItemOperations")
MAPI_NOT_CONTENT = ("NotificationWait", "Connect", "Disconnect", "QueryRows", "ResolveNames")
EXPORT_EXT = r"\.(pst|ost|zip|7z|rar|cab|tar|gz)$"
LINE_SPAN = 1 << 40  # an evidence sample is packed as artifact * LINE_SPAN + line (one BIGINT per row)
SAMPLES = 20  # evidence samples kept per group

MACROS = r"""
CREATE OR REPLACE TEMP MACRO _mx_addr(x) AS list_last(string_split(lower(trim(x)), 'smtp:'));
CREATE OR REPLACE TEMP MACRO _mx_key(x) AS
  split_part(list_last(string_split(list_last(string_split(lower(trim(x)), '\')), ':')), '@', 1);
CREATE OR REPLACE TEMP MACRO _mx_param(p, name) AS coalesce(
  nullif(regexp_extract(p, '(?i)-' || name || '[:\s]+"([^"]*)"', 1), ''),
  nullif(regexp_extract(p, '(?i)-' || name || '[:\s]+''([^'']*)''', 1), ''),
  nullif(regexp_extract(p, '(?i)-' || name || '[:\s]+([^\s"'']+)', 1), ''));
"""


def _in(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v + "'" for v in values)


def create_views(case: CaseReader) -> list[str]:
    """Create the temp views `_mx_rows` (all access rows, one shape) and helpers; return the sources
    that were present (ews, httpproxy, iis, cmdlets, tracking)."""
    case.define(MACROS)
    ews, hp = Table(case, EWS), Table(case, HTTPPROXY)
    iis, mt = Table(case, IIS), Table(case, TRACKING)
    present: list[str] = []
    parts: list[str] = []
    hp_part: str | None = None

    if hp.exists:
        present.append("httpproxy")
        case.define(f"""
        CREATE OR REPLACE TEMP VIEW _mx_hp AS
        SELECT t._artifact AS art, t._line AS line, t._ts AS ts, {hp.nonempty("RequestId")} AS reqid,
               {hp.nonempty("Protocol")} AS protocol, _mx_addr({hp.col("AuthenticatedUser")}) AS accessor,
               lower({hp.nonempty("AnchorMailbox")}) AS anchor, {hp.nonempty("ClientIpAddress")} AS ip,
               {hp.nonempty("UserAgent")} AS ua, {hp.nonempty("ProtocolAction")} AS action,
               lower({hp.nonempty("UrlStem")}) AS stem, try_cast({hp.col("ResponseBytes")} AS BIGINT) AS bytes,
               try_cast({hp.col("HttpStatus")} AS INTEGER) AS status
        FROM {hp.name} t""")
        if ews.exists:  # HttpProxy rows of EWS content requests are the front ends of EWS rows counted there
            front = (
                f"LEFT JOIN (SELECT DISTINCT {ews.col('RequestId')} AS reqid FROM {ews.name} t "
                f"WHERE {ews.col('SoapAction')} IN ({_in(EWS_CONTENT)}) AND {ews.col('RequestId')} IS NOT NULL) m "
                "ON m.reqid = h.reqid"
            )
        else:
            front = "LEFT JOIN (SELECT NULL::VARCHAR AS reqid WHERE false) m ON false"
        content = f"""(
            (h.protocol = 'Mapi' AND h.stem LIKE '/mapi/emsmdb%' AND coalesce(h.action, '') NOT IN ({_in(MAPI_NOT_CONTENT)}))
            OR (h.protocol = 'Owa' AND h.action IN ({_in(OWA_CONTENT)}))
            OR (h.protocol = 'Eas' AND h.action IN ({_in(EAS_CONTENT)}))
            OR h.protocol IN ('Ews', 'RpcHttp')
            OR (h.anchor LIKE 'serverinfo~%' AND h.anchor LIKE '%/ews/%'))"""
        # HttpProxy is the biggest table: one pass groups its rows on their raw values (file, hour, anchor,
        # caller, client, agent, action, and whether the row reads mailbox content), which feeds both the
        # anchor owners and the access rows; anchors are resolved once per group, not once per row.
        case.define(f"""
        CREATE OR REPLACE TEMP TABLE _mx_hpg AS
        SELECT art, hour, anchor, accessor, ip, ua, protocol, action, access, count(*) AS n, sum(bytes) AS bytes,
               count(bytes) AS sized, min(ts) AS t0, max(ts) AS t1,
               min_by(CAST(art AS BIGINT) * {LINE_SPAN} + line, ts, {SAMPLES}) FILTER (WHERE access) AS ev
        FROM (
          SELECT h.*, date_trunc('hour', h.ts) AS hour,
                 coalesce(coalesce(h.status, 200) < 400 AND {content}
                          AND (h.accessor IS NOT NULL OR h.anchor LIKE 'serverinfo~%') AND m.reqid IS NULL, false) AS access
          FROM _mx_hp h {front})
        GROUP BY art, hour, anchor, accessor, ip, ua, protocol, action, access""")
        # MailboxGuid~ and Sid~ anchors name their owner only through the rest of the log. Each account
        # owns at most one anchor of each kind: the one it uses in the most distinct hours (then rows).
        # An anchor is owned by the account that claims it so; an anchor nobody claims stays unresolved.
        # (A majority vote would hand a rarely used mailbox to the attacker who read it in one burst.)
        case.define("""
        CREATE OR REPLACE TEMP TABLE _mx_anchor_owner AS
        WITH pa AS (
          SELECT anchor, accessor, split_part(anchor, '~', 1) AS kind,
                 count(DISTINCT hour) AS h, CAST(sum(n) AS BIGINT) AS n
          FROM _mx_hpg WHERE accessor IS NOT NULL AND (anchor LIKE 'mailboxguid~%' OR anchor LIKE 'sid~%')
          GROUP BY anchor, accessor),
        own AS (SELECT accessor, kind, arg_max(anchor, h * 1000000000 + n) AS anchor FROM pa GROUP BY accessor, kind)
        SELECT own.anchor, arg_max(own.accessor, pa.h * 1000000000 + pa.n) AS owner
        FROM own JOIN pa USING (anchor, accessor) GROUP BY own.anchor""")
    if ews.exists:
        present.append("ews")
        target = (
            f"coalesce({ews.nonempty('ActAsUser')}, {ews.nonempty('ImpersonatedUser')}, "
            f"{ews.nonempty('ProxyAsUser')}, nullif(regexp_extract({ews.col('GenericInfo')}, "
            f"'MailboxTarget=([^;]+)', 1), ''), {ews.nonempty('AuthenticatedUser')})"
        )
        case.define(f"""
        CREATE OR REPLACE TEMP VIEW _mx_ews AS
        SELECT t._artifact AS art, t._line AS line, t._ts AS ts, {ews.nonempty("RequestId")} AS reqid,
               _mx_addr({ews.col("AuthenticatedUser")}) AS accessor, _mx_addr({target}) AS mailbox,
               {ews.nonempty("ClientIpAddress")} AS ip, {ews.nonempty("UserAgent")} AS ua,
               {ews.col("SoapAction")} AS op, try_cast({ews.col("ResponseSize")} AS BIGINT) AS bytes
        FROM {ews.name} t
        WHERE {ews.col("SoapAction")} IN ({_in(EWS_CONTENT)})
          AND coalesce(try_cast({ews.col("HttpStatus")} AS INTEGER), 200) < 400""")
        hp_join = (
            "LEFT JOIN _mx_hp h ON h.reqid = e.reqid AND abs(epoch(h.ts) - epoch(e.ts)) < 900"
            if hp.exists
            else "LEFT JOIN (SELECT NULL::VARCHAR AS reqid, NULL::VARCHAR AS ip, NULL::VARCHAR AS ua, "
            "NULL::VARCHAR AS anchor, NULL::TIMESTAMP AS ts WHERE false) h ON false"
        )
        parts.append(f"""
        SELECT 'ews' AS src, e.art, e.line, e.ts, e.reqid, e.mailbox AS mailbox_addr, e.accessor,
               coalesce(h.ip, e.ip) AS client_ip, coalesce(h.ua, e.ua) AS ua, e.op,
               CASE WHEN e.op IN ({_in(EWS_ITEMS)}) THEN 1 ELSE 0 END AS items, e.bytes,
               CASE WHEN e.accessor LIKE '%$@%' OR e.accessor LIKE '%$' OR h.anchor LIKE 'serverinfo~%' THEN 'ssrf-ews' END AS path0,
               CAST(NULL AS VARCHAR) AS detail
        FROM _mx_ews e {hp_join}""")
    if hp.exists:
        hp_part = """
        SELECT 'httpproxy', g.art, g.hour,
               CASE WHEN g.anchor LIKE 'smtp~%' OR g.anchor LIKE 'upn~%' THEN split_part(g.anchor, '~', 2)
                    WHEN g.anchor LIKE 'serverinfo~%' THEN NULL
                    WHEN g.anchor LIKE 'mailboxguid~%' OR g.anchor LIKE 'sid~%' THEN coalesce(o.owner, g.anchor)
                    ELSE g.accessor END,
               g.accessor, g.ip, g.ua, g.protocol || ':' || coalesce(g.action, 'request'), 0, g.n, g.bytes, g.sized,
               g.t0, g.t1, g.ev,
               CASE WHEN g.anchor LIKE 'serverinfo~%' OR g.accessor LIKE '%$@%' OR g.accessor LIKE '%$' THEN 'ssrf-ews' END
        FROM _mx_hpg g LEFT JOIN _mx_anchor_owner o ON o.anchor = g.anchor
        WHERE g.access"""
    cmd_sources = []
    for fam in source_families(CMDLET_SOURCE):  # the cmdlet union's own fields: MSExchange Management, Rps_Cmdlet
        tbl = Table(case, fam)
        if not tbl.exists or not tbl.has_any(*columns_read(fam, "cmdlet", CMDLET_SOURCE)):
            continue
        f = {name: alias(tbl.col) for name, alias in fam.unions[CMDLET_SOURCE].items()}
        cmd_sources.append(f"""
        SELECT t._artifact AS art, t._line AS line, {f["ts"]} AS ts, {f["cmdlet"]} AS name, {f["parameters"]} AS params,
               {f["user"]} AS caller
        FROM {tbl.name} t WHERE {f["cmdlet"]} IS NOT NULL AND {f["result"]} IS DISTINCT FROM 'error'""")
        # a cmdlet that failed was attempted: nothing was taken
    ev = Table(case, EVENTS)
    has_cmdlet_log = ev.exists and bool(
        case.fetch(f"SELECT 1 FROM {ev.name} WHERE channel = 'MSExchange Management' LIMIT 1")
    )
    if cmd_sources:
        if has_cmdlet_log or len(cmd_sources) > 1 or not ev.exists:
            present.append("cmdlets")
        case.define("CREATE OR REPLACE TEMP VIEW _mx_cmd_raw AS " + " UNION ALL ".join(cmd_sources))
        case.define(r"""
        CREATE OR REPLACE TEMP TABLE _mx_cmd AS
        WITH c AS (SELECT *, lower(name) AS lname, coalesce(params, '') AS p FROM _mx_cmd_raw
                   WHERE lower(name) IN ('new-mailboxexportrequest', 'new-mailboxsearch', 'search-mailbox',
                     'new-compliancesearch', 'add-mailboxpermission', 'add-mailboxfolderpermission',
                     'set-mailbox', 'new-inboxrule', 'set-inboxrule'))
        SELECT art, line, ts, name, caller, mailbox, path0, target, detail FROM (
          SELECT *, unnest(string_split(regexp_replace(list, '["'' ]', '', 'g'), ',')) AS mailbox FROM (
            SELECT *,
              CASE lname
                WHEN 'new-mailboxexportrequest' THEN coalesce(_mx_param(p, 'Mailbox'), _mx_param(p, 'Identity'))
                WHEN 'new-mailboxsearch' THEN coalesce(regexp_extract(p, '(?i)-SourceMailboxes[:\s]+([^-]+)', 1), '*')
                WHEN 'search-mailbox' THEN _mx_param(p, 'Identity')
                WHEN 'new-compliancesearch' THEN coalesce(regexp_extract(p, '(?i)-ExchangeLocation[:\s]+([^-]+)', 1), '*')
                WHEN 'add-mailboxfolderpermission' THEN split_part(_mx_param(p, 'Identity'), ':', 1)
                WHEN 'new-inboxrule' THEN coalesce(_mx_param(p, 'Mailbox'), split_part(_mx_param(p, 'Identity'), '\', 1))
                WHEN 'set-inboxrule' THEN coalesce(_mx_param(p, 'Mailbox'), split_part(_mx_param(p, 'Identity'), '\', 1))
                ELSE _mx_param(p, 'Identity') END AS list,
              CASE WHEN lname IN ('new-mailboxexportrequest', 'new-mailboxsearch', 'search-mailbox', 'new-compliancesearch')
                     THEN 'export-cmdlet'
                   WHEN lname IN ('add-mailboxpermission', 'add-mailboxfolderpermission') THEN 'grant'
                   ELSE 'forwarding' END AS path0,
              CASE WHEN lname IN ('add-mailboxpermission', 'add-mailboxfolderpermission') THEN _mx_param(p, 'User')
                   WHEN lname = 'set-mailbox' THEN coalesce(_mx_param(p, 'ForwardingSmtpAddress'), _mx_param(p, 'ForwardingAddress'))
                   WHEN lname IN ('new-inboxrule', 'set-inboxrule') THEN coalesce(_mx_param(p, 'ForwardTo'),
                        _mx_param(p, 'RedirectTo'), _mx_param(p, 'ForwardAsAttachmentTo'))
                   ELSE NULL END AS target,
              CASE WHEN lname = 'new-mailboxexportrequest' THEN _mx_param(p, 'FilePath')
                   WHEN lname IN ('new-mailboxsearch', 'search-mailbox') THEN _mx_param(p, 'TargetMailbox')
                   ELSE NULL END AS detail
            FROM c))
        WHERE NOT (lname = 'set-mailbox' AND target IS NULL)
          AND NOT (lname IN ('new-inboxrule', 'set-inboxrule') AND target IS NULL)
          AND NOT (lname = 'search-mailbox' AND detail IS NULL)""")
        parts.append("""
        SELECT 'cmdlet', art, line, ts, NULL, mailbox, CASE WHEN path0 = 'export-cmdlet' THEN _mx_addr(caller)
               ELSE _mx_addr(target) END, '', '', name, 0, CAST(NULL AS BIGINT), path0, detail
        FROM _mx_cmd""")
    if mt.exists:
        present.append("tracking")
        ev_id, src = mt.col("event-id"), mt.col("source")
        parts.append(f"""
        SELECT 'tracking', t._artifact, t._line, t._ts, {mt.nonempty("message-id")},
               CASE WHEN {ev_id} = 'REDIRECT' THEN {mt.col("related-recipient-address")} ELSE {mt.col("sender-address")} END,
               _mx_addr(rcpt.r), '', '', CASE WHEN {ev_id} = 'REDIRECT' THEN 'REDIRECT' ELSE 'MAILBOXRULE' END, 1,
               try_cast({mt.col("total-bytes")} AS BIGINT), 'forwarding', NULL
        FROM {mt.name} t,
             unnest(string_split(coalesce({mt.col("recipient-address")}, ''), ';')) AS rcpt(r)
        WHERE ({ev_id} = 'REDIRECT' AND {mt.nonempty("related-recipient-address")} IS NOT NULL)
           OR ({ev_id} = 'RECEIVE' AND upper({src}) = 'MAILBOXRULE')""")
    if iis.exists:
        present.append("iis")
        stem = f"lower({iis.col('cs-uri-stem')})"
        exports = (
            "SELECT DISTINCT lower(regexp_extract(detail, '[^\\\\/]+$', 0)) AS file, mailbox FROM _mx_cmd "
            "WHERE name ILIKE 'New-MailboxExportRequest' AND detail IS NOT NULL"
            if cmd_sources
            else "SELECT NULL::VARCHAR AS file, NULL::VARCHAR AS mailbox WHERE false"
        )
        parts.append(f"""
        SELECT 'iis', t._artifact, t._line, t._ts, NULL, x.mailbox, _mx_addr({iis.col("cs-username")}),
               {iis.nonempty("c-ip")}, {iis.nonempty("cs(User-Agent)")}, 'download', 1,
               try_cast({iis.col("sc-bytes")} AS BIGINT), 'export-file-download', {iis.col("cs-uri-stem")}
        FROM {iis.name} t JOIN ({exports}) x ON x.file = regexp_extract({stem}, '[^/]+$', 0)
        WHERE upper({iis.col("cs-method")}) = 'GET' AND try_cast({iis.col("sc-status")} AS INTEGER) IN (200, 206)
          AND regexp_matches({stem}, '{EXPORT_EXT}')""")
    rows = "src, art, line, ts, reqid, mailbox_addr, accessor, client_ip, ua, op, items, bytes, path0, detail"
    grouped = "src, art, hour, mailbox_addr, accessor, client_ip, ua, op, items, n, bytes, sized, t0, t1, ev, path0"
    selects = [
        f"SELECT src, art, date_trunc('hour', ts), mailbox_addr, accessor, client_ip, ua, op, items, 1, bytes, "
        f"CAST(bytes IS NOT NULL AS INTEGER), ts, ts, [CAST(art AS BIGINT) * {LINE_SPAN} + line], path0 "
        f"FROM ({p}) AS p{i}({rows})"
        for i, p in enumerate(parts)
    ]
    if hp_part is not None:
        selects.append(hp_part)
    if not selects:
        selects.append(
            "SELECT NULL::VARCHAR, NULL::INTEGER, NULL::TIMESTAMP, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, "
            "NULL::VARCHAR, NULL::VARCHAR, NULL::INTEGER, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::TIMESTAMP, "
            "NULL::TIMESTAMP, NULL::BIGINT[], NULL::VARCHAR WHERE false"
        )
    union = " UNION ALL ".join(f"SELECT * FROM ({q}) AS q{i}({grouped})" for i, q in enumerate(selects))
    case.define("CREATE OR REPLACE TEMP VIEW _mx_rows AS " + union)
    return present
