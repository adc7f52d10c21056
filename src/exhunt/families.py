"""Log families as data: everything exhunt knows about one kind of record, declared once.

A `Family` names its case table, its title, how a record's time and default group are read, the
normalised field names rules may use (`client_ip`, `url`, `user_agent`, `status`, ...), which columns
the default scan keeps, what coverage expects, and how a raw line is split back into a record. Sources
declare the family they yield; the rules, the case database, coverage, evidence and exposure ask the
family. Nothing outside this module compares table names.

Adding a family is one declaration here plus, at most, one source module (see docs/extending.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from exhunt.sources.delimited import split_csv_line, split_w3c_line

Col = Callable[[str], str]  # column name -> SQL for it over alias `t` (NULL when the table lacks it)
Alias = Callable[[Col], str]

# Columns the default scan keeps in the wide Exchange tables (besides those the rules read): what
# coverage, exposure, analytics and display need. `--case` keeps every column.
EXCHANGE_BASE_COLUMNS = frozenset({
    "DateTime", "TimeStamp", "StartTime", "RequestId", "MajorVersion", "MinorVersion", "BuildVersion",
    "RevisionVersion", "Protocol", "UrlHost", "UrlStem", "UrlQuery", "Method", "HttpStatus", "AuthenticatedUser",
    "AnchorMailbox", "UserAgent", "ClientIpAddress", "ServerHostName", "TargetServer", "TargetServerVersion",
    "RoutingHint", "BackEndCookie", "SoapAction", "ActAsUser", "ImpersonatedUser", "ClientInfo", "CommandName",
    "Cmdlet", "Parameters",
})  # fmt: skip

# Timestamp columns of Exchange CSV logs, tried in order (the first one a file has wins).
EXCHANGE_TIME_COLUMNS = ("DateTime", "TimeStamp", "Timestamp", "date-time", "Date-Time", "StartTime")


@dataclass(frozen=True)
class Family:
    """One family of records and the facts every stage needs about it."""

    name: str  # rule `source:` value
    table: str  # case database table
    title: str
    kind: str  # "log" (delimited, line-based), "events", "files", "config"
    time_sql: str = "t._ts"  # the record's time over alias `t`
    default_group: tuple[str, ...] = ()
    aliases: dict[str, Alias] = field(default_factory=dict)
    time_columns: tuple[str, ...] = EXCHANGE_TIME_COLUMNS  # the log's own time columns (logs only)
    log_types: tuple[str, ...] = ()  # `#Log-type` values (lower case) that name this family
    folders: tuple[str, ...] = ()  # path parts that name it when a file has no `#Log-type`
    projected: bool = False  # wide table: the default scan keeps only the columns rules read
    expected: str | None = None  # coverage: what is missing when the collection has none
    version_directive: bool = False  # files carry the Exchange build in `#Version`
    build_columns: tuple[str, ...] = ()  # per-row build columns (major, minor, build, revision)
    split_line: Callable[[str], list[str]] | None = None  # raw line -> values, bound to `#Fields`
    empty_values: tuple[str, ...] = ("",)  # values that mean "no value" in a raw line
    artifact_column: str = "_artifact"  # the column naming the artifact a record came from
    host_column: str | None = None  # records that name their host themselves (not every one has an artifact)
    unions: dict[str, dict[str, Alias]] = field(default_factory=dict)  # union source -> its normalised fields

    @property
    def line_based(self) -> bool:
        return self.kind == "log"

    @property
    def web(self) -> bool:
        """Records web requests: the exploitation checks can run on it."""
        return WEB_SOURCE in self.unions

    @property
    def web_fields(self) -> dict[str, Alias]:
        return self.unions.get(WEB_SOURCE, {})


def _iis_site(c: Col) -> str:
    return (
        f"CASE WHEN {c('s-port')} IN ('444', '81') THEN 'backend' "
        f"WHEN {c('s-port')} IS NULL THEN NULL ELSE 'frontend' END"
    )


# Union sources: a rule with `source: web` (or `cmdlet`) is written once on that union's normalised
# fields and runs on every family that declares them in `unions` (UNION ALL), so the same request, or
# the same cmdlet, seen in several logs is one finding with evidence from each.
WEB_SOURCE = "web"
WEB_FIELDS = (
    "ts", "client_ip", "method", "url_stem", "url_query", "url", "status", "user_agent", "user", "host", "bytes",
    "site", "protocol", "request_id", "referer",
)  # fmt: skip
# An Exchange cmdlet run: in the MSExchange Management event log and in the Rps_Cmdlet log of remote
# PowerShell (ProxyShell's cmdlets are often only in the latter). `result` is success or error.
CMDLET_SOURCE = "cmdlet"
CMDLET_FIELDS = ("ts", "cmdlet", "parameters", "user", "result")
UNIONS: dict[str, tuple[str, ...]] = {WEB_SOURCE: WEB_FIELDS, CMDLET_SOURCE: CMDLET_FIELDS}
UNION_GROUP: dict[str, tuple[str, ...]] = {WEB_SOURCE: ("client_ip",), CMDLET_SOURCE: ("cmdlet",)}  # default group_by


def _iis_request_id(c: Col) -> str:
    """The front end's request id, which Exchange appends to the IIS query as `cafeReqId=<guid>;`."""
    return f"nullif(regexp_extract({c('cs-uri-query')}, 'cafeReqId=([0-9A-Fa-f-]+)', 1), '')"


def _httpproxy_query(c: Col) -> str:
    """HttpProxy's UrlQuery without its leading `?` (IIS logs the query without it)."""
    q = c("UrlQuery")
    return f"nullif(CASE WHEN starts_with({q}, '?') THEN substr({q}, 2) ELSE {q} END, '')"


IIS_WEB_FIELDS: dict[str, Alias] = {
    "ts": lambda c: "t._ts",
    "client_ip": lambda c: c("c-ip"),
    "method": lambda c: c("cs-method"),
    "url_stem": lambda c: c("cs-uri-stem"),
    "url_query": lambda c: c("cs-uri-query"),
    "url": lambda c: f"{c('cs-uri-stem')} || coalesce('?' || {c('cs-uri-query')}, '')",
    "status": lambda c: c("sc-status"),
    "user_agent": lambda c: f"replace({c('cs(User-Agent)')}, '+', ' ')",
    "user": lambda c: c("cs-username"),
    "host": lambda c: c("cs-host"),
    "bytes": lambda c: c("sc-bytes"),
    "site": _iis_site,
    "protocol": lambda c: "NULL::VARCHAR",
    "request_id": _iis_request_id,
    "referer": lambda c: c("cs(Referer)"),
}

# HttpProxy logs the front end's view of the request, one folder per protocol (Ecp, Owa, Autodiscover...).
HTTPPROXY_WEB_FIELDS: dict[str, Alias] = {
    "ts": lambda c: "t._ts",
    "client_ip": lambda c: c("ClientIpAddress"),
    "method": lambda c: c("Method"),
    "url_stem": lambda c: c("UrlStem"),
    "url_query": _httpproxy_query,
    "url": lambda c: f"{c('UrlStem')} || coalesce('?' || {_httpproxy_query(c)}, '')",
    "status": lambda c: c("HttpStatus"),
    "user_agent": lambda c: c("UserAgent"),
    "user": lambda c: c("AuthenticatedUser"),
    "host": lambda c: c("UrlHost"),
    "bytes": lambda c: c("ResponseBytes"),
    "site": lambda c: "'frontend'",
    "protocol": lambda c: c("Protocol"),
    "request_id": lambda c: c("RequestId"),
    "referer": lambda c: "NULL::VARCHAR",  # HttpProxy does not log the referrer
}


def _management(sql: Alias) -> Alias:
    """A cmdlet field of the events table: set on MSExchange Management events only. Their EventData
    is positional: param1 the cmdlet, param2 its parameters, param3 the caller; 1 = success, 6 = failure
    (8: unhandled exception in the task)."""
    return lambda c: f"CASE WHEN {c('channel')} = 'MSExchange Management' THEN {sql(c)} END"


EVENTS_CMDLET_FIELDS: dict[str, Alias] = {
    "ts": lambda c: "t.ts",
    "cmdlet": _management(lambda c: f"json_extract_string({c('data')}, '$.param1')"),
    # an export that kept only the rendered text (and whose message could not be parsed) has them there
    "parameters": _management(lambda c: f"coalesce(json_extract_string({c('data')}, '$.param2'), {c('message')})"),
    "user": _management(lambda c: f"json_extract_string({c('data')}, '$.param3')"),
    "result": _management(
        lambda c: f"CASE {c('event_id')} WHEN 1 THEN 'success' WHEN 6 THEN 'error' WHEN 8 THEN 'error' END"
    ),
}
RPS_CMDLET_FIELDS: dict[str, Alias] = {
    "ts": lambda c: "t._ts",
    "cmdlet": lambda c: f"coalesce(nullif({c('Cmdlet')}, ''), nullif({c('CommandName')}, ''))",
    "parameters": lambda c: c("Parameters"),
    "user": lambda c: c("AuthenticatedUser"),
    "result": lambda c: (
        f"CASE lower({c('ExecutionResult')}) WHEN 'success' THEN 'success' WHEN 'error' THEN 'error' END"
    ),
}


def _leaves_domain(c: Col) -> str:
    """Message Tracking: does a recipient sit outside the domain of the related recipient (or the sender)?"""
    rcpt = f"lower(coalesce({c('recipient-address')}, '')) || ';'"
    home = (
        f"'@' || split_part(lower(coalesce(nullif({c('related-recipient-address')}, ''), {c('sender-address')})), "
        "'@', 2) || ';'"
    )
    n_at = f"(length({rcpt}) - length(replace({rcpt}, '@', '')))"
    n_home = f"((length({rcpt}) - length(replace({rcpt}, {home}, ''))) // length({home}))"
    return f"(length({home}) > 2 AND {n_at} > {n_home})"


def _exchange(name: str, table: str, title: str, *, log_types: tuple[str, ...], **kw: object) -> Family:
    """An Exchange LogSchema CSV family (comma-separated, `#Fields`, `#Version` with the build)."""
    return Family(
        name, table, title, "log", log_types=log_types, version_directive=True, split_line=split_csv_line, **kw
    )  # type: ignore[arg-type]


FAMILIES: tuple[Family, ...] = (
    Family(
        "iis", "log_iis", "IIS W3C", "log", default_group=("c-ip",), time_columns=("date", "time"),
        aliases={
            "user_agent": lambda c: f"replace({c('cs(User-Agent)')}, '+', ' ')",
            "url": lambda c: f"{c('cs-uri-stem')} || coalesce('?' || {c('cs-uri-query')}, '')",
            "site": _iis_site,
        },
        expected="IIS logs (inetpub/logs/LogFiles/W3SVC1 and W3SVC2)",
        split_line=split_w3c_line, empty_values=("-", ""), unions={WEB_SOURCE: IIS_WEB_FIELDS},
    ),
    _exchange(
        "httpproxy", "log_httpproxy", "HttpProxy", log_types=("httpproxy logs",), folders=("/httpproxy/",),
        default_group=("ClientIpAddress",), projected=True,
        expected="HttpProxy logs (V15/Logging/HttpProxy/<protocol>/HttpProxy_*.LOG)",
        build_columns=("MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion"),
        unions={WEB_SOURCE: HTTPPROXY_WEB_FIELDS},
    ),
    _exchange(
        "ecp_server", "log_ecp_server", "ECP Server", log_types=("ecp server log",), folders=("/ecp/server/",),
        default_group=("ServerName",), expected="ECP Server logs (V15/Logging/ECP/Server/ECPServer*.LOG)",
    ),
    _exchange("ecp_activity", "log_ecp_activity", "ECP Activity", log_types=("ecp activity context log",)),
    _exchange(
        "oab_generator", "log_oab_generator", "OAB Generator", log_types=(), folders=("oabgenerator",),
        expected="OAB generator logs (V15/Logging/OABGeneratorLog)",
    ),
    _exchange(
        "ews", "log_ews", "EWS", log_types=("ews logs",), folders=("/ews/",), default_group=("ClientIpAddress",),
        projected=True,
    ),
    _exchange(
        "rps_http", "log_rps_http", "Rps_Http", log_types=("rps http logs",), default_group=("ClientIpAddress",),
        projected=True,
    ),
    _exchange(
        "rps_cmdlet", "log_rps_cmdlet", "Rps_Cmdlet", log_types=("rps cmdlet logs",),
        default_group=("AuthenticatedUser",), projected=True, unions={CMDLET_SOURCE: RPS_CMDLET_FIELDS},
    ),
    _exchange("rps_authz", "log_rps_authz", "Rps_Authz", log_types=("rps authz logs",)),
    _exchange(
        "message_tracking", "log_message_tracking", "Message Tracking", log_types=("message tracking log",),
        folders=("/messagetracking/",), default_group=("sender-address",),
        aliases={"leaves_domain": _leaves_domain},
    ),
    Family(
        "events", "events", "Windows events", "events", time_sql="t.ts", default_group=("computer",),
        aliases={"text": lambda c: "coalesce(CAST(data AS VARCHAR), '') || ' ' || coalesce(message, '')"},
        expected="Windows event logs (Application, MSExchange Management, Security; EVTX or JSON lines)",
        unions={CMDLET_SOURCE: EVENTS_CMDLET_FIELDS},
    ),
    Family("files", "artifacts", "Files", "files", time_sql="t.mtime", default_group=("win_path",),
           artifact_column="id"),
    Family("fs_records", "fs_records", "NTFS file records", "files", time_sql="t.fn_created",
           default_group=("path",), host_column="host"),
    Family("config_vdirs", "cfg_suspicious_vdirs", "IIS virtual directories", "config",
           time_sql="NULL::TIMESTAMP", default_group=("physical_path",)),
    Family("config_site_vdirs", "cfg_site_vdirs", "IIS site virtual directories", "config",
           time_sql="NULL::TIMESTAMP", default_group=("physical_path",)),
    Family("config_modules", "cfg_unknown_modules", "IIS modules and handlers", "config",
           time_sql="NULL::TIMESTAMP", default_group=("name",)),
    Family("config_mitigations", "cfg_mitigations", "IIS mitigation rules", "config", time_sql="NULL::TIMESTAMP"),
    Family("config_extended_protection", "cfg_extended_protection", "IIS Extended Protection", "config",
           time_sql="NULL::TIMESTAMP"),
)  # fmt: skip

_BY_NAME = {f.name: f for f in FAMILIES}
_BY_TABLE = {f.table: f for f in FAMILIES}
_BY_LOG_TYPE = {lt: f for f in FAMILIES for lt in f.log_types}
RULE_SOURCES = (
    *(f.name for f in FAMILIES if f.name not in ("config_mitigations", "config_extended_protection")),
    *UNIONS,
)
assert all(set(f.unions[u]) == set(UNIONS[u]) for f in FAMILIES for u in f.unions), "a union member lacks a field"


def family(name: str) -> Family:
    """The family a rule's `source:` names (`source_families` also knows the unions)."""
    return _BY_NAME[name]


def source_families(source: str) -> tuple[Family, ...]:
    """The families a rule's `source:` runs on: every member of a union (`web`, `cmdlet`), else the one it names."""
    if source in UNIONS:
        return tuple(f for f in FAMILIES if source in f.unions)
    return (_BY_NAME[source],)


def is_union(source: str) -> bool:
    """Does `source` name several families (a rule on it runs on their UNION ALL)?"""
    return source in UNIONS


def field_alias(fam: Family, name: str, union: str | None = None) -> Alias | None:
    """The SQL of a rule field in `fam`: the union's normalised field for a union rule, else the
    family's alias (or its web field: a rule on IIS alone may use `user_agent`); None for a column."""
    if union is not None and name in fam.unions.get(union, {}):
        return fam.unions[union][name]
    return fam.aliases.get(name) or fam.web_fields.get(name)


def columns_read(fam: Family, name: str, union: str | None = None) -> set[str]:
    """The source columns a rule field reads in `fam` (through its aliases or union fields)."""
    alias = field_alias(fam, name, union)
    if alias is None:
        return {name}
    seen: set[str] = set()

    def record(column: str) -> str:
        seen.add(column)
        return "NULL"

    alias(record)
    return seen


def family_of_table(table: str) -> Family:
    """The family stored in `table`; a log type exhunt has no declaration for gets a generic one."""
    known = _BY_TABLE.get(table)
    if known is not None:
        return known
    return _exchange(table.removeprefix("log_"), table, table.removeprefix("log_"), log_types=())


def for_log_type(log_type: str | None, path: str) -> Family:
    """An Exchange CSV log's family, by its `#Log-type` first and its folder second."""
    lt = (log_type or "").strip().lower()
    if lt in _BY_LOG_TYPE:
        return _BY_LOG_TYPE[lt]
    low = path.lower()
    if "oab" in lt or "oabgenerator" in low.replace(" ", ""):
        return _BY_NAME["oab_generator"]
    if lt:
        return family_of_table("log_" + re.sub(r"[^a-z0-9]+", "_", lt).strip("_"))
    for fam in FAMILIES:
        if fam.kind == "log" and fam.name != "oab_generator" and any(part in low for part in fam.folders):
            return fam
    return family_of_table("log_exchange_other")


_COUNTED = frozenset({_BY_NAME["events"].table, _BY_NAME["fs_records"].table})  # besides the logs


def record_families(tables: set[str]) -> list[Family]:
    """The families of records coverage counts (logs, events, NTFS file records) among `tables`, in table order."""
    return [family_of_table(t) for t in sorted(tables) if t.startswith("log_") or t in _COUNTED]
