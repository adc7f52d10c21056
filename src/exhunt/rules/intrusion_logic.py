"""Rule logic for what an intruder does after the Exchange server: domain ACL changes that grant
replication (DCSync) or WriteDACL, replication requests by accounts that are not domain controllers,
and logons from the Exchange server to other collected hosts. Each function is one SQL query that
returns `events` row ids; `rules/logic.py` exposes them to the rules' `python:` key.

These need more than field conditions: the difference between the old and the new security
descriptor of one change (5136 writes both, tied by OpCorrelationID), and which computers are
domain controllers or Exchange servers (see `exhunt.domain_hosts`).
"""

from __future__ import annotations

from exhunt.case import CaseReader
from exhunt.domain_hosts import (
    account_host,
    dc_names_sql,
    exchange_ips_sql,
    exchange_names_sql,
    short_name,
    topology_dc_names_sql,
)
from exhunt.families import family

EVENTS = family("events").table

# Extended rights that together let an account replicate password hashes (DCSync); Microsoft's
# AD schema pages: DS-Replication-Get-Changes, -Get-Changes-All, -Get-Changes-In-Filtered-Set.
REPLICATION_GUIDS = (
    "1131f6aa-9c07-11d1-f79f-00c04fc2dcd2",
    "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2",
    "89e95b76-444d-4c62-991a-0facbeda640c",
)
# Trustees that hold these rights on every domain by default (SDDL aliases and well-known RIDs):
# a "new" ACE for them adds no power, and Exchange setup or an ACL tool rewriting the DACL re-adds them.
DEFAULT_TRUSTEES = (
    "ED", "DD", "BA", "DA", "EA", "SY", "RO", "AO", "PS", "CO", "S-1-5-9", "S-1-5-10", "S-1-5-18", "S-1-5-32-544",
    "S-1-5-32-548",
)  # fmt: skip
DEFAULT_RIDS = ("-498", "-512", "-516", "-519", "-521")
FORCE_CHANGE_PASSWORD = "00299570-246d-11d0-a768-00aa006e0529"  # User-Force-Change-Password (reset password)
CR, WP, WD, WO, GA = 0x100, 0x20, 0x40000, 0x80000, 0x10000000


def _j(key: str, alias: str = "") -> str:
    col = f"{alias}.data" if alias else "data"
    return f"json_extract_string({col}, '$.\"{key}\"')"


def _candidates(*event_ids: int, mentions: int = 0) -> str:
    """SQL FROM clause: the events of these ids only, with their row id as `rid` (the cheap integer
    filter runs first, before any JSON is read). With `mentions` = n, the raw event data must also
    contain one of n bound strings (a substring test, far cheaper than parsing the JSON)."""
    ids = ", ".join(str(i) for i in event_ids)
    text = " OR ".join(["CAST(data AS VARCHAR) ILIKE '%' || ? || '%'"] * mentions)
    return f"(SELECT rowid AS rid, * FROM {EVENTS} WHERE event_id IN ({ids}){f' AND ({text})' if text else ''}) AS e"


def _exchange_identity(store: CaseReader) -> tuple[list[str], list[str]]:
    """The Exchange servers' short names and IIS-logged addresses in this collection."""
    tables = store.tables()
    iis = family("iis").table
    cols = {iis: store.columns(iis)} if iis in tables else {}
    names = [r[0] for r in store.fetch(exchange_names_sql(tables)) if r[0]]
    ips = [r[0] for r in store.fetch(exchange_ips_sql(tables, cols)) if r[0]]
    return names, ips


def _has_events(store: CaseReader) -> bool:
    return EVENTS in store.tables()


DOMAIN_ROOT = (
    f"({_j('ObjectClass')} ILIKE 'domainDNS' "
    f"OR regexp_full_match(coalesce({_j('ObjectDN')}, ''), '(?i)DC=[^,]+(,\\s*DC=[^,]+)*'))"
)
ACCOUNT_OBJECT = (
    f"lower({_j('ObjectClass')}) IN ('user', 'computer', 'inetorgperson', 'group', 'msds-managedserviceaccount')"
)


def _new_aces(objects: str) -> str:
    """SQL: per 5136 'value added' to the nTSecurityDescriptor of the objects `objects` selects, the
    DACL entries it added (its ACEs minus those of the 'value deleted' of the same operation; all of
    them when that half is missing), split into type, flags, rights, object GUID and trustee.
    Inherit-only and inherited entries and the default trustees are left out."""
    defaults = ", ".join(f"'{t}'" for t in DEFAULT_TRUSTEES)
    rids = " OR ".join(f"ends_with(trustee, '{r}')" for r in DEFAULT_RIDS)
    return f"""
        WITH sd AS (
            SELECT rowid AS rid, computer, {_j("OpCorrelationID")} AS corr,
                   coalesce({_j("OperationType")}, '') AS op,
                   regexp_extract_all(split(coalesce({_j("AttributeValue")}, ''), 'S:')[1], '\\(([^)]*)\\)', 1) AS aces
            FROM {EVENTS}
            WHERE event_id = 5136 AND {_j("AttributeLDAPDisplayName")} ILIKE 'nTSecurityDescriptor' AND {objects}
        ),
        added AS (SELECT * FROM sd WHERE op = '%%14674' OR op ILIKE '%added%'),
        removed AS (
            SELECT DISTINCT corr, computer, unnest(aces) AS ace FROM sd
            WHERE (op = '%%14675' OR op ILIKE '%deleted%') AND corr IS NOT NULL
        ),
        added_aces AS (SELECT rid, corr, computer, unnest(aces) AS ace FROM added),
        fresh AS (
            SELECT a.rid, a.ace FROM added_aces a
            WHERE NOT EXISTS (
                SELECT 1 FROM removed r
                WHERE r.corr = a.corr AND r.computer IS NOT DISTINCT FROM a.computer AND r.ace = a.ace
            )
        ),
        parts AS (
            SELECT rid, upper(split(ace, ';')[1]) AS type, upper(split(ace, ';')[2]) AS flags,
                   upper(split(ace, ';')[3]) AS rights, lower(split(ace, ';')[4]) AS object,
                   upper(split(ace, ';')[6]) AS trustee
            FROM fresh
        )
        SELECT rid, type, flags, rights, object, trustee,
               TRY_CAST(CASE WHEN starts_with(lower(rights), '0x') THEN rights END AS BIGINT) AS mask
        FROM parts
        WHERE type IN ('A', 'OA')
          AND NOT list_has_any(regexp_extract_all(flags, '[A-Z]{{2}}'), ['IO', 'ID'])
          AND trustee NOT IN ({defaults}) AND NOT ({rids})
    """


def domain_acl_replication_grant(store: CaseReader, params: dict[str, str]) -> list[int]:
    """5136: a new DACL entry on the domain object grants the replication rights (or all of them)."""
    if not _has_events(store):
        return []
    guids = ", ".join(f"'{g}'" for g in REPLICATION_GUIDS)
    sql = f"""
        SELECT DISTINCT rid FROM ({_new_aces(DOMAIN_ROOT)})
        WHERE ((contains(rights, 'CR') OR (mask & {CR}) <> 0) AND (object IN ({guids}) OR object = ''))
           OR contains(rights, 'GA') OR (mask & {GA}) <> 0
    """
    return [r[0] for r in store.fetch(sql)]


def domain_acl_writedacl_grant(store: CaseReader, params: dict[str, str]) -> list[int]:
    """5136: a new DACL entry on the domain object grants WriteDACL, WriteOwner or full control (the step before
    granting oneself replication rights, as PrivExchange and ACL-abuse tools do)."""
    if not _has_events(store):
        return []
    sql = f"""
        SELECT DISTINCT rid FROM ({_new_aces(DOMAIN_ROOT)})
        WHERE contains(rights, 'WD') OR contains(rights, 'WO') OR contains(rights, 'GA') OR (mask & {WD | WO | GA}) <> 0
    """
    return [r[0] for r in store.fetch(sql)]


def object_acl_takeover(store: CaseReader, params: dict[str, str]) -> list[int]:
    """5136: a new DACL entry on a user, computer or group gives a non-default trustee control of it:
    full control, WriteDACL/WriteOwner, the reset-password right (or all extended rights), or write
    access to all its properties."""
    if not _has_events(store):
        return []
    sql = f"""
        SELECT DISTINCT rid FROM ({_new_aces(ACCOUNT_OBJECT)})
        WHERE contains(rights, 'GA') OR contains(rights, 'WD') OR contains(rights, 'WO')
           OR (mask & {GA | WD | WO}) <> 0
           OR ((contains(rights, 'CR') OR (mask & {CR}) <> 0) AND object IN ('{FORCE_CHANGE_PASSWORD}', ''))
           OR ((contains(rights, 'WP') OR (mask & {WP}) <> 0) AND object = '')
    """
    return [r[0] for r in store.fetch(sql)]


def _replication_requests(extra: str, store: CaseReader) -> list[int]:
    props = f"coalesce({_j('Properties')}, '') || ' ' || coalesce(message, '')"
    guids = " OR ".join(f"{props} ILIKE '%{g}%'" for g in REPLICATION_GUIDS)
    user = _j("SubjectUserName")
    sql = f"""
        WITH dcs AS ({dc_names_sql()}), exch AS ({exchange_names_sql(store.tables())})
        SELECT rid FROM {_candidates(4662)}
        WHERE ({guids})
          AND (coalesce({_j("AccessMask")}, '0x100') ILIKE '0x100' OR {props} ILIKE '%Control Access%')
          AND {account_host(user)} NOT IN (SELECT name FROM dcs WHERE name IS NOT NULL)
          AND {extra.replace("{user}", user).replace("{host}", account_host(user))}
    """
    return [r[0] for r in store.fetch(sql)]


def dcsync_by_account(store: CaseReader, params: dict[str, str]) -> list[int]:
    """4662: replication rights used by a user account or by an Exchange server's computer account."""
    if not _has_events(store):
        return []
    return _replication_requests(
        "(NOT ends_with(trim({user}), '$') OR {host} IN (SELECT name FROM exch WHERE name IS NOT NULL))", store
    )


def dcsync_by_unknown_computer(store: CaseReader, params: dict[str, str]) -> list[int]:
    """4662: replication rights used by a computer account that no collected log shows to be a DC
    (a DC outside the collection, or a computer account an intruder controls). DCs that Exchange's
    own topology records name are left out too: they are DCs whose logs were not collected."""
    if not _has_events(store):
        return []
    return _replication_requests(
        "(ends_with(trim({user}), '$') AND {host} NOT IN (SELECT name FROM exch WHERE name IS NOT NULL)"
        f" AND {{host}} NOT IN (SELECT name FROM ({topology_dc_names_sql()}) WHERE name IS NOT NULL))",
        store,
    )


def _from_exchange(store: CaseReader, event_ids: tuple[int, ...], where: str) -> list[int]:
    names, ips = _exchange_identity(store)
    if not names and not ips:
        return []
    ip = f"regexp_replace(coalesce({_j('IpAddress')}, {_j('Param3')}, ''), '^::ffff:', '')"
    ws = f"upper(coalesce({_j('WorkstationName')}, ''))"
    sql = f"""
        SELECT rid FROM {_candidates(*event_ids, mentions=len(names) + len(ips))}
        WHERE {short_name("computer")} NOT IN (SELECT unnest(?::VARCHAR[]))
          AND ({ip} IN (SELECT unnest(?::VARCHAR[])) OR {short_name(ws)} IN (SELECT unnest(?::VARCHAR[])))
          AND {where}
    """
    return [r[0] for r in store.fetch(sql, [*names, *ips, names, ips, names])]


_USER_LOGON = (
    "event_id = 4624 AND provider = 'Microsoft-Windows-Security-Auditing' "
    f"AND NOT ends_with(trim(coalesce({_j('TargetUserName')}, '')), '$') "
    f"AND upper(coalesce({_j('TargetUserName')}, '')) NOT IN ('ANONYMOUS LOGON', '-', '')"
)


def remote_interactive_logon_from_exchange(store: CaseReader, params: dict[str, str]) -> list[int]:
    """4624 type 10 (RDP) on another collected host, coming from the Exchange server, or the
    Remote Desktop 1149 'user authentication succeeded' naming the Exchange server as source."""
    if not _has_events(store):
        return []
    return _from_exchange(
        store,
        (4624, 1149),
        f"(({_USER_LOGON} AND {_j('LogonType')} = '10') OR (event_id = 1149 AND channel ILIKE "
        "'%TerminalServices-RemoteConnectionManager%'))",
    )


def network_logon_from_exchange(store: CaseReader, params: dict[str, str]) -> list[int]:
    """4624 type 3 on another collected host by a user account, coming from the Exchange server."""
    if not _has_events(store):
        return []
    return _from_exchange(store, (4624,), f"{_USER_LOGON} AND {_j('LogonType')} = '3'")


def exchange_machine_ntlm_logon(store: CaseReader, params: dict[str, str]) -> list[int]:
    """4624 type 3 with NTLM as an Exchange server's computer account, on another host and not from
    the Exchange server's own address: the account's authentication relayed (PrivExchange)."""
    if not _has_events(store):
        return []
    names, ips = _exchange_identity(store)
    if not names:
        return []
    ip = f"regexp_replace(coalesce({_j('IpAddress')}, ''), '^::ffff:', '')"
    user = _j("TargetUserName")
    sql = f"""
        SELECT rid FROM {_candidates(4624, mentions=len(names))}
        WHERE {_j("LogonType")} = '3'
          AND (coalesce({_j("AuthenticationPackageName")}, '') ILIKE '%NTLM%'
               OR coalesce({_j("LmPackageName")}, '') ILIKE 'NTLM%')
          AND ends_with(trim(coalesce({user}, '')), '$')
          AND {account_host(user)} IN (SELECT unnest(?::VARCHAR[]))
          AND {short_name("computer")} <> {account_host(user)}
          AND {ip} NOT IN (SELECT unnest(?::VARCHAR[]))
          AND {ip} NOT IN ('', '-', '127.0.0.1', '::1')
    """
    return [r[0] for r in store.fetch(sql, [*names, names, ips])]


def local_account_created(store: CaseReader, params: dict[str, str]) -> list[int]:
    """4720 on a computer that is not a domain controller: a local account made on a server."""
    if not _has_events(store):
        return []
    sql = f"""
        WITH dcs AS ({dc_names_sql()})
        SELECT rid FROM {_candidates(4720)}
        WHERE provider = 'Microsoft-Windows-Security-Auditing'
          AND {short_name("computer")} NOT IN (SELECT name FROM dcs WHERE name IS NOT NULL)
    """
    return [r[0] for r in store.fetch(sql)]
