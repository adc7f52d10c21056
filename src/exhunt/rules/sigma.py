"""Community Sigma rules, converted to exhunt rules that run as DuckDB SQL on the case database.

`convert_file(path)` reads one Sigma file with pySigma and converts each rule with `DuckDBBackend`
(a pySigma `TextQueryBackend`: its tokens and templates describe the SQL) and a per-log-source
`ProcessingPipeline` (field names, value normalisation) into exhunt `Rule`s, with every rule it
could not use and why. `exhunt.rules.sigma_load` finds the files, keeps each conversion in the
user's cache and imports this module only for a file it has not converted before.

Log sources (Sigma `logsource` -> exhunt table, channel, event ids; see `targets_for`)
  windows/process_creation   events: Sysmon 1, or Security 4688 with Image -> NewProcessName and
                             ParentImage -> ParentProcessName (CommandLine keeps its name; fields
                             4688 lacks, such as OriginalFileName, read as missing)
  windows/<Sysmon category>  events, channel Microsoft-Windows-Sysmon/Operational: file_event 11,
                             process_access 10, image_load 7, create_remote_thread 8, registry_add
                             and registry_delete 12, registry_set 13, registry_rename 14,
                             registry_event 12-14, file_delete 23/26, network_connection 3,
                             dns_query 22, pipe_created 17/18, driver_load 6, wmi_event 19-21, ...
  windows/ps_script, ps_module       Microsoft-Windows-PowerShell/Operational 4104, 4103
  windows/ps_classic_*               Windows PowerShell 400, 600, 800
  antivirus                          Microsoft Defender 1006-1008, 1015, 1116-1119
                                     (Signature -> Threat Name, Filename -> Path)
  windows service: security, system, application, msexchange-management (MSExchange Management),
      windefend (Defender operational; ProcessName -> ProcessName or Process Name),
      iis-configuration, powershell, powershell-classic, sysmon, taskscheduler, wmi, ntlm,
      codeintegrity-operational, bits-client, firewall-as, dns-server, smbclient-security,
      terminalservices-localsessionmanager, openssh, applocker: any event id of that channel
  webserver, proxy (no product, or windows)    one `web` union rule (id sigma:<id>) over IIS W3C logs
                                               (log_iis) and Exchange HttpProxy logs (log_httpproxy):
                                               a request both logs saw is one finding, evidence from each
  Anything else (linux, macos, cloud, other services) is listed as skipped with the reason.

Fields
  Events: a Sigma field X is the EventData/UserData value `json_extract_string(data, '$."X"')`
  (unnamed `<Data>` items are param1..N). EventID, Channel, Provider_Name, Computer and Level are
  the event's own columns. `Data` (the whole event payload in Sigma's MSExchange rules) and keyword
  searches (values without a field, as in the MSExchange Management rules) match the event's text:
  all EventData values joined by spaces, then the rendered message. Matching the values rather than
  `CAST(data AS VARCHAR)` keeps quotes and backslashes in keywords such as `-FilePath "\\\\` intact
  (the JSON text escapes them).
  IIS (Sigma name -> W3C column):
    cs-uri-query        cs-uri-stem || '?' || cs-uri-query: Sigma's Exchange rules put path-like
                        patterns (`/owa/auth/...`, `/autodiscover.json`) under cs-uri-query. `null`
                        and `|exists` still test the query column itself.
    c-uri, cs-uri       the same full URL (proxy category); c-uri-stem, c-uri-query -> cs-uri-*
    cs-user-agent, c-useragent, cs(User-Agent)   cs(User-Agent) with `+` read as a space; rule
                        values get the same `+` -> space, so `Mozilla/5.0+(compatible;...` and
                        `Nmap Scripting Engine` both match what IIS writes
    cs-referer -> cs(Referer), cs-cookie -> cs(Cookie), cs-content-type -> cs(Content-Type),
    cs-host, r-dns -> cs-host, c-ip, src_ip -> c-ip, dst_ip -> s-ip, dst_port -> s-port; other
    W3C-shaped names (cs-method, sc-status, cs-username, ...) are the column of that name. A column
    a collection lacks reads as NULL. A field that is not W3C-shaped makes the rule skipped.
    Keywords match the row's columns joined by spaces.

Matching follows Sigma: case-insensitive (`lower()` on both sides) unless `|cased`; `*` and `?`
become LIKE with `\\` as escape; contains/startswith/endswith use DuckDB's string functions; `|re`
is `regexp_matches` (RE2, as DuckDB; Sigma regexes are case-sensitive unless `|i`, and a regex RE2
cannot compile makes the rule skipped); `|cidr` is expanded into address prefixes, `|windash` and
`|base64offset` into alternatives; numbers compare as text, `|gt`/`|lt`... numerically; `null` is a
missing or empty field; `|fieldref` compares two fields. A comparison with a missing field is NULL,
which never counts as a match, and every `not` reads its operand as `coalesce(..., false)` first, so
a missing field never matches and `not` behaves as in Sigma. Channels compare case-insensitively.

Rule fields: id `sigma:<Sigma id>` (or `sigma:<file stem>` when the rule has none); severity from
`level` (informational -> info); confidence from `status` (stable high, test medium, experimental
low); kind `exploitation` for cve.* / attack.initial-access / attack.t1190 tags, else `webshell` for
attack.t1505.003 or "web shell" in the title or description, else `post-exploitation`; attack from
attack.tNNNN[.NNN] tags, upper-cased; cves from cve.* tags; source `events` or `web`; origin = the
file. Rules with status deprecated or unsupported, or inside a folder named `deprecated` (SigmaHQ's
layout), are skipped as deprecated.

Generated SQL. Values are never pasted into SQL: each is a `?` bound from `Rule.sql_params`; field
names must match a strict pattern before they appear in SQL text. A rule's `sql` reads

    t.rowid IN (SELECT s._rid FROM (SELECT <each field once> FROM (<table>) b) s WHERE <condition>)

(a web rule has one such condition per family in `Rule.by_family`, run as a union rule), so each
event's JSON is parsed once per rule, not once per comparison, and for IIS the table is
unioned BY NAME with an empty row holding every column the rule names, so an absent column is NULL
rather than a binder error. Each rule's SQL is run once on an empty in-memory database at load time;
a rule whose SQL DuckDB refuses is skipped with DuckDB's message.

Errors: a malformed file (unreadable, bad YAML, not Sigma) raises `RuleError(path, problem)` when
the user named that file; inside a folder it goes to `skipped` with the problem, so one bad community
rule does not block the rest. A valid rule that cannot run here (deprecated, unsupported log source,
field or modifier, regex RE2 rejects, correlation rule) is always listed in `skipped`. Files under a
folder whose name starts with `.` are not read; a YAML file that is not a Sigma rule is listed.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import re2  # type: ignore[import-untyped]  # google-re2, a pySigma dependency
from sigma.collection import SigmaCollection
from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaError, SigmaRegularExpressionError, SigmaRuleLocation
from sigma.policy import SigmaPolicy
from sigma.policy.regex_engine import RE2RegexEngine, RegexPattern
from sigma.processing.conditions import IncludeFieldCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation, ReplaceStringTransformation
from sigma.rule import SigmaLogSource, SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaCasedString,
    SigmaCompareExpression,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from exhunt.families import WEB_SOURCE, family
from exhunt.rules import sigma_cache
from exhunt.rules.field_view import events_base
from exhunt.rules.literal_gate import Need
from exhunt.rules.model import FieldView, Rule
from exhunt.rules.native import re2_literal
from exhunt.rules.sigma_load import Malformed, first_title, read_docs
from exhunt.rules.sigma_needs import needs
from exhunt.sql import literal, quote

__all__ = ["DuckDBBackend", "Target", "convert_file", "targets_for"]


class NotApplicable(Exception):
    """A valid Sigma rule that exhunt cannot run; the message is the reason."""


class QuietRE2(RE2RegexEngine):
    """pySigma's RE2 check of `|re` patterns (RE2 is DuckDB's engine too), without RE2 writing a log
    line to stderr for a pattern it rejects: the rule is listed as skipped instead."""

    def compile(self, pattern: str, flags: int = 0) -> RegexPattern:
        inline = "".join(c for flag, c in ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s")) if flags & flag)
        options = re2.Options()
        options.log_errors = False
        return re2.compile(f"(?{inline}){pattern}" if inline else pattern, options)  # type: ignore[no-any-return]

    def __deepcopy__(self, memo: dict[int, Any]) -> QuietRE2:
        return self  # stateless; rules are deep-copied per log-source target and carry the policy


POLICY = SigmaPolicy(regex_engine=QuietRE2())


# -- log sources ----------------------------------------------------------------------------------

SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"
CLASSIC_POWERSHELL = "Windows PowerShell"
DEFENDER = "Microsoft-Windows-Windows Defender/Operational"

EVENT_FIELDS = {
    "EventID": "@event_id", "Channel": "@channel", "Provider_Name": "@provider", "Computer": "@computer",
    "Level": "@level", "Data": "@text",
}  # fmt: skip
SYSMON_CATEGORIES = {
    "process_creation": (1,), "file_change": (2,), "network_connection": (3,), "sysmon_status": (4, 16),
    "process_termination": (5,), "driver_load": (6,), "image_load": (7,), "create_remote_thread": (8,),
    "raw_access_thread": (9,), "process_access": (10,), "file_event": (11,), "registry_add": (12,),
    "registry_delete": (12,), "registry_set": (13,), "registry_rename": (14,), "registry_event": (12, 13, 14),
    "create_stream_hash": (15,), "pipe_created": (17, 18), "wmi_event": (19, 20, 21), "dns_query": (22,),
    "file_delete": (23, 26), "clipboard_capture": (24,), "process_tampering": (25,), "file_delete_detected": (26,),
    "file_block_executable": (27,), "file_block_shredding": (28,), "file_executable_detected": (29,),
}  # fmt: skip
POWERSHELL_CATEGORIES = {
    "ps_script": (POWERSHELL, (4104,)), "ps_module": (POWERSHELL, (4103,)),
    "ps_classic_start": (CLASSIC_POWERSHELL, (400,)), "ps_classic_provider_start": (CLASSIC_POWERSHELL, (600,)),
    "ps_classic_script": (CLASSIC_POWERSHELL, (800,)),
}  # fmt: skip
SERVICES: dict[str, tuple[str, ...]] = {
    "security": ("Security",), "system": ("System",), "application": ("Application",),
    "msexchange-management": ("MSExchange Management",), "windefend": (DEFENDER,),
    "iis-configuration": ("Microsoft-IIS-Configuration/Operational",), "powershell": (POWERSHELL,),
    "powershell-classic": (CLASSIC_POWERSHELL,), "sysmon": (SYSMON,),
    "taskscheduler": ("Microsoft-Windows-TaskScheduler/Operational",),
    "wmi": ("Microsoft-Windows-WMI-Activity/Operational",), "ntlm": ("Microsoft-Windows-NTLM/Operational",),
    "codeintegrity-operational": ("Microsoft-Windows-CodeIntegrity/Operational",),
    "bits-client": ("Microsoft-Windows-Bits-Client/Operational",),
    "firewall-as": ("Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",),
    "dns-server": ("DNS Server",), "smbclient-security": ("Microsoft-Windows-SmbClient/Security",),
    "terminalservices-localsessionmanager": ("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",),
    "openssh": ("OpenSSH/Operational",),
    "applocker": (
        "Microsoft-Windows-AppLocker/EXE and DLL", "Microsoft-Windows-AppLocker/MSI and Script",
        "Microsoft-Windows-AppLocker/Packaged app-Deployment", "Microsoft-Windows-AppLocker/Packaged app-Execution",
    ),
}  # fmt: skip
SERVICE_FIELDS: dict[str, dict[str, str | list[str]]] = {
    "windefend": {"ProcessName": ["ProcessName", "Process Name"], "ThreatName": ["ThreatName", "Threat Name"]},
}
SECURITY_4688_FIELDS: dict[str, str | list[str]] = {"Image": "NewProcessName", "ParentImage": "ParentProcessName"}
ANTIVIRUS_IDS = (1006, 1007, 1008, 1015, 1116, 1117, 1118, 1119)
ANTIVIRUS_FIELDS: dict[str, str | list[str]] = {"Signature": "Threat Name", "Filename": "Path", "FileName": "Path"}
IIS_FIELDS = {
    "cs-uri-query": "@uri_query", "c-uri": "@url", "cs-uri": "@url", "c-uri-query": "cs-uri-query",
    "c-uri-stem": "cs-uri-stem", "cs-user-agent": "@user_agent", "c-useragent": "@user_agent",
    "cs(User-Agent)": "@user_agent", "cs-referer": "cs(Referer)", "cs-cookie": "cs(Cookie)",
    "cs-content-type": "cs(Content-Type)", "r-dns": "cs-host", "src_ip": "c-ip", "dst_ip": "s-ip", "dst_port": "s-port",
}  # fmt: skip
WEB_TARGETS = {"iis", "httpproxy"}  # a rule on these runs as one `web` union rule
W3C_NAME = re.compile(r"^(date|time|time-taken|(s|c|cs|sc|r|x)-[a-z0-9-]+|(cs|sc)\([A-Za-z0-9-]+\))$")


@dataclass(frozen=True)
class Target:
    """Where the events of one Sigma log source live in exhunt: table, channels, event ids, field names."""

    source: str  # exhunt rule source: "events" or "iis"
    label: str
    channels: tuple[str, ...] = ()
    event_ids: tuple[int, ...] = ()
    fields: tuple[tuple[str, str | tuple[str, ...]], ...] = ()  # Sigma field -> exhunt field(s)

    @classmethod
    def events(
        cls,
        label: str,
        channels: tuple[str, ...],
        ids: tuple[int, ...],
        extra: dict[str, str | list[str]] | None = None,
    ) -> Target:
        mapping: dict[str, str | list[str]] = {**EVENT_FIELDS, **(extra or {})}
        pairs = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items())
        return cls("events", label, channels, ids, pairs)


def targets_for(logsource: SigmaLogSource) -> list[Target]:
    """The exhunt targets of a Sigma log source; raise NotApplicable when exhunt has none."""
    product, category, service = logsource.product, logsource.category, logsource.service
    if category in ("webserver", "proxy"):
        if product not in (None, "windows") or service not in (None, "iis"):
            raise NotApplicable(f"{_describe(logsource)}: exhunt reads IIS and HttpProxy web logs only")
        return [
            Target("iis", "IIS W3C log", fields=tuple(IIS_FIELDS.items())),
            Target("httpproxy", "Exchange HttpProxy log", fields=tuple(IIS_FIELDS.items())),
        ]
    if category == "antivirus" and product in (None, "windows"):
        return [Target.events("Defender detections", (DEFENDER,), ANTIVIRUS_IDS, ANTIVIRUS_FIELDS)]
    if product != "windows":
        raise NotApplicable(f"{_describe(logsource)}: no exhunt source for this product")
    if category == "process_creation":
        return [
            Target.events("Sysmon 1", (SYSMON,), (1,)),
            Target.events("Security 4688", ("Security",), (4688,), SECURITY_4688_FIELDS),
        ]
    if category in SYSMON_CATEGORIES:
        return [Target.events(f"Sysmon {category}", (SYSMON,), SYSMON_CATEGORIES[category])]
    if category in POWERSHELL_CATEGORIES:
        channel, ids = POWERSHELL_CATEGORIES[category]
        return [Target.events(category, (channel,), ids)]
    if category is None and service in SERVICES:
        return [Target.events(service, SERVICES[service], (), SERVICE_FIELDS.get(service))]
    raise NotApplicable(f"{_describe(logsource)}: no exhunt source for this log source")


def _describe(ls: SigmaLogSource) -> str:
    parts = [f"{k}={v}" for k, v in (("product", ls.product), ("category", ls.category), ("service", ls.service)) if v]
    return "log source " + (" ".join(parts) or "(empty)")


def pipeline_for(target: Target) -> ProcessingPipeline:
    """Field names of the target, then value normalisation (IIS user agents: `+` is a space)."""
    mapping: dict[str | None, str | list[str]] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in target.fields}
    items = [ProcessingItem(FieldMappingTransformation(mapping), identifier="exhunt_field_names")]
    if target.source == "iis":
        items.append(
            ProcessingItem(
                ReplaceStringTransformation(regex=r"\+", replacement=" ", skip_special=True),
                field_name_conditions=[IncludeFieldCondition(fields=["@user_agent"])],
                identifier="exhunt_iis_user_agent_plus",
            )
        )
    return ProcessingPipeline(items=items, name=f"exhunt {target.label}", policy=POLICY)


# -- backend --------------------------------------------------------------------------------------

VALUE_MARK = re.compile("\ue000(\\d+)\ue001")
LOWER_FIELD = re.compile("lower\\(\ue002([^\ue003]*)\ue003\\)")
ANY_FIELD = re.compile("\ue002([^\ue003]*)\ue003")
SAFE_FIELD = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_@.() -]{0,127}$")


COMPACT_OR = 4  # values of one field in one OR from which a single pattern pays


class DuckDBBackend(TextQueryBackend):
    """Sigma condition -> SQL boolean over one row, with field tokens and value markers.

    The output is an intermediate: `\\ue002NAME\\ue003` stands for a field (resolved per table by
    `_assemble`), `\\ue000N\\ue001` for the N-th value of `self.values` (bound as `?`). `lower(FIELD)`
    is kept as written so each field is lowered once per row in the projection.
    """

    name: ClassVar[str] = "exhunt DuckDB"
    formats: ClassVar[dict[str, str]] = {"default": "SQL condition with field tokens and value markers"}
    requires_pipeline: ClassVar[bool] = True

    precedence: ClassVar = (ConditionNOT, ConditionAND, ConditionOR)
    group_expression: ClassVar[str] = "({expr})"
    parenthesize = True
    token_separator = " "
    or_token: ClassVar[str] = "OR"
    and_token: ClassVar[str] = "AND"
    not_token: ClassVar[str] = "NOT"
    eq_token: ClassVar[str] = " = "

    eq_expression: ClassVar[str] = "lower({field}) = {value}"
    startswith_expression: ClassVar[str] = "starts_with(lower({field}), {value})"
    endswith_expression: ClassVar[str] = "ends_with(lower({field}), {value})"
    contains_expression: ClassVar[str] = "contains(lower({field}), {value})"
    wildcard_match_expression: ClassVar[str] = "lower({field}) LIKE {value} ESCAPE '\\'"
    case_sensitive_match_expression: ClassVar[str] = "regexp_full_match({field}, {regex})"
    case_sensitive_startswith_expression: ClassVar[str] = "starts_with({field}, {value})"
    case_sensitive_endswith_expression: ClassVar[str] = "ends_with({field}, {value})"
    case_sensitive_contains_expression: ClassVar[str] = "contains({field}, {value})"
    re_expression: ClassVar[str] = "regexp_matches({field}, {regex})"
    re_escape: ClassVar[list[str]] = []
    re_escape_escape_char = False
    re_flag_prefix = True
    field_null_expression: ClassVar[str] = "(coalesce({field}, '') = '')"
    field_exists_expression: ClassVar[str] = "({field} IS NOT NULL)"
    field_not_exists_expression: ClassVar[str] = "({field} IS NULL)"
    field_equals_field_expression: ClassVar[str] = "lower({field1}) = lower({field2})"
    field_equals_field_startswith_expression: ClassVar[str] = "starts_with(lower({field1}), lower({field2}))"
    field_equals_field_endswith_expression: ClassVar[str] = "ends_with(lower({field1}), lower({field2}))"
    field_equals_field_contains_expression: ClassVar[str] = "contains(lower({field1}), lower({field2}))"
    compare_operators: ClassVar[dict[CompareOperators, str]] = {
        CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">", CompareOperators.GTE: ">=",
    }  # fmt: skip

    def __init__(self, target: Target) -> None:
        super().__init__(processing_pipeline=pipeline_for(target))
        self.target = target
        self.values: list[object] = []

    def condition(self, rule: SigmaRule) -> tuple[str, list[object]]:
        """Convert one rule (it is modified by the pipeline: pass a copy) into (text, values)."""
        self.values = []
        queries = self.convert_rule(rule)
        if not queries:
            raise NotApplicable("the rule has no condition")
        text = queries[0] if len(queries) == 1 else " OR ".join(f"({q})" for q in queries)
        return text, self.values

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState) -> Any:
        """`NOT coalesce((x), false)`: a test of a missing field is NULL, which is not a match, and its
        negation must be one (as in Sigma). Without a NOT above it, a NULL leaf already counts as false
        (every consumer asks only whether a condition is true, and AND/OR are monotone), so only
        negations carry a coalesce, not each of a rule's tests: DuckDB binds 1,500-test passes of
        Sigma rules in a fifth less time without them."""
        text = super().convert_condition_not(cond, state)
        if not isinstance(text, str) or not text.startswith(self.not_token + self.token_separator):
            return text
        return f"{self.not_token} coalesce({text[len(self.not_token) + len(self.token_separator) :]}, false)"

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState) -> Any:
        """A long `OR` of plain values of one field (`a`, `*a`, `a*`, `*a*`) becomes one RE2 pattern of
        escaped literals: DuckDB plans a rule with hundreds of such values 10-100x faster that way and
        matches it faster too. Anything else converts as usual."""
        compact = self._one_pattern(cond)
        return compact if compact is not None else super().convert_condition_or(cond, state)

    def _one_pattern(self, cond: ConditionOR) -> str | None:
        args = cond.args
        if len(args) < COMPACT_OR or not all(isinstance(a, ConditionFieldEqualsValueExpression) for a in args):
            return None
        fields = {a.field for a in args}  # type: ignore[union-attr]
        if len(fields) != 1 or None in fields:
            return None
        alts = []
        star = SpecialChars.WILDCARD_MULTI
        for a in args:
            value = a.value  # type: ignore[union-attr]
            if not isinstance(value, SigmaString) or isinstance(value, SigmaCasedString):
                return None
            lead, trail = value.startswith(star), value.endswith(star)
            inner = value[(1 if lead else 0) : (len(value) - 1 if trail else len(value))]
            if len(inner) == 0 or inner.contains_special():
                return None
            text = re2_literal(inner.convert(escape_char=None, wildcard_multi=None, wildcard_single=None).lower())
            alts.append(("" if lead else "^") + text + ("" if trail else "$"))
        field = self.escape_and_quote_field(fields.pop())
        return f"regexp_matches(lower({field}), {self.bind('(?:' + '|'.join(alts) + ')')})"

    # values: bound, never pasted
    def bind(self, value: object) -> str:
        self.values.append(value)
        return f"\ue000{len(self.values) - 1}\ue001"

    def escape_and_quote_field(self, field_name: str) -> str:
        if not field_name or not SAFE_FIELD.match(field_name):
            raise NotApplicable(f"field name {field_name!r} cannot be used")
        return f"\ue002{field_name}\ue003"

    def convert_value_str(self, s: SigmaString, state: ConversionState) -> str:
        if s.contains_special():
            text = s.convert(escape_char="\\", wildcard_multi="%", wildcard_single="_", add_escaped="%_\\")
        else:
            text = s.convert(escape_char=None, wildcard_multi=None, wildcard_single=None)
        return self.bind(text if isinstance(s, SigmaCasedString) else text.lower())

    def convert_value_re(self, r: SigmaRegularExpression, state: ConversionState) -> str:
        return self.bind(r.escape((), "\\", False, True))

    def convert_condition_field_eq_val_num(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return f"{self.escape_and_quote_field(cond.field)} = {self.bind(str(cond.value))}"

    def convert_condition_field_eq_val_bool(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        word = "true" if cond.value.boolean else "false"  # type: ignore[union-attr]
        return f"lower({self.escape_and_quote_field(cond.field)}) = {self.bind(word)}"

    def convert_condition_field_compare_op_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        value = cond.value
        if not isinstance(value, SigmaCompareExpression) or value.op not in self.compare_operators:
            raise NotApplicable("unsupported comparison")
        number = float(value.number.number)
        field_sql = self.escape_and_quote_field(cond.field)
        return f"TRY_CAST({field_sql} AS DOUBLE) {self.compare_operators[value.op]} {self.bind(number)}"

    def convert_condition_field_eq_val_null(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return self.field_null_expression.format(field=self.escape_and_quote_field(_raw_field(cond.field)))

    def convert_condition_field_exists(self, cond: ConditionFieldEqualsValueExpression, state: ConversionState) -> str:
        return self.field_exists_expression.format(field=self.escape_and_quote_field(_raw_field(cond.field)))

    def convert_condition_field_not_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return self.field_not_exists_expression.format(field=self.escape_and_quote_field(_raw_field(cond.field)))

    # keywords: a value without a field searches the whole event / log line
    def convert_condition_val_str(self, cond: Any, state: ConversionState) -> str:
        s: SigmaString = cond.value
        text = self.escape_and_quote_field("@text")
        if isinstance(s, SigmaCasedString):
            if s.contains_special():
                return self.re_expression.format(field=text, regex=self.convert_value_re(s.to_regex(), state))
            return self.case_sensitive_contains_expression.format(field=text, value=self.convert_value_str(s, state))
        if not s.contains_special():
            return self.contains_expression.format(field=text, value=self.convert_value_str(s, state))
        wrapped = SpecialChars.WILDCARD_MULTI + s + SpecialChars.WILDCARD_MULTI
        return self.wildcard_match_expression.format(field=text, value=self.convert_value_str(wrapped, state))

    def convert_condition_val_num(self, cond: Any, state: ConversionState) -> str:
        return self.contains_expression.format(
            field=self.escape_and_quote_field("@text"), value=self.bind(str(cond.value))
        )

    def convert_condition_val_re(self, cond: Any, state: ConversionState) -> str:
        return self.re_expression.format(
            field=self.escape_and_quote_field("@text"), regex=self.convert_value_re(cond.value, state)
        )


def _raw_field(name: str) -> str:
    """`null`/`|exists` on Sigma's cs-uri-query test the query column, not the full URL."""
    return "cs-uri-query" if name == "@uri_query" else name


@cache
def _backend(target: Target) -> DuckDBBackend:
    return DuckDBBackend(target)


# -- SQL assembly ---------------------------------------------------------------------------------


def _web_base(
    used: list[str], table: str, special: dict[str, tuple[str, list[str]]], column_of: Callable[[str], str | None]
) -> tuple[str, dict[str, str]]:
    """A web-log table's subquery (columns the rule needs but the collection lacks added as NULL) and
    each Sigma field's expression over it. `special`: name -> (expression, columns it reads)."""
    columns: list[str] = []
    exprs: dict[str, str] = {}
    for name in used:
        if name in special:
            exprs[name], needs = special[name]
            columns.extend(needs)
        elif (column := column_of(name)) is not None:
            exprs[name] = f"b.{quote(column)}"
            columns.append(column)
        else:
            raise NotApplicable(f"field {name!r} has no {table} column")
    text = ", concat_ws(' ', *COLUMNS('^[^_]')) AS _text" if "@text" in used else ""
    base = f"SELECT rowid AS _rid, *{text} FROM {table}"
    if columns:
        nulls = ", ".join(f"NULL::VARCHAR AS {quote(c)}" for c in dict.fromkeys(columns))
        base += f" UNION ALL BY NAME SELECT {nulls} WHERE false"
    return base, exprs


def _iis_base(used: list[str]) -> tuple[str, dict[str, str]]:
    url = ("(b.\"cs-uri-stem\" || coalesce('?' || b.\"cs-uri-query\", ''))", ["cs-uri-stem", "cs-uri-query"])
    special = {
        "@url": url, "@uri_query": url, "@text": ("b._text", []),
        "@user_agent": ("replace(b.\"cs(User-Agent)\", '+', ' ')", ["cs(User-Agent)"]),
    }  # fmt: skip
    return _web_base(used, family("iis").table, special, lambda n: n if W3C_NAME.match(n) else None)


# W3C field -> HttpProxy column (Exchange's front-end proxy log records the same request)
HTTPPROXY_COLUMNS = {
    "cs-method": "Method", "cs-uri-stem": "UrlStem", "sc-status": "HttpStatus", "c-ip": "ClientIpAddress",
    "cs-username": "AuthenticatedUser", "cs-host": "UrlHost", "s-computername": "ServerHostName",
}  # fmt: skip


def _httpproxy_base(used: list[str]) -> tuple[str, dict[str, str]]:
    """UrlQuery keeps its leading `?`; user agents have real spaces (Exchange strips their commas)."""
    url = ('(b."UrlStem" || coalesce(b."UrlQuery", \'\'))', ["UrlStem", "UrlQuery"])
    special = {
        "@url": url,
        "@uri_query": url,
        "@text": ("b._text", []),
        "@user_agent": ('b."UserAgent"', ["UserAgent"]),
    }
    return _web_base(used, family("httpproxy").table, special, HTTPPROXY_COLUMNS.get)


BASES = {"events": events_base, "iis": _iis_base, "httpproxy": _httpproxy_base}


def _source_filter(target: Target) -> str:
    parts = []
    if target.channels:
        parts.append(f"s._chan IN ({', '.join(literal(c.lower()) for c in target.channels)})")
    if target.event_ids:
        parts.append(f"s._eid IN ({', '.join(str(int(i)) for i in target.event_ids)})")
    return " AND ".join(parts) or "true"


def _assemble(
    parts: list[tuple[Target, str, list[object]]], needs: Need | None = None
) -> tuple[str, tuple[object, ...], FieldView | None]:
    """Join the targets' conditions into one `t.rowid IN (...)` query; markers become `?` in order.
    For events, also the rule's field view: its sources, the fields it reads and its condition over
    them, so that rules on the same sources share one extraction (`events_view_sql`)."""
    source = parts[0][0].source
    values: list[object] = []
    conds = []
    for _, cond, vals in parts:  # renumber each part's markers into one list
        offset = len(values)
        values.extend(vals)
        conds.append(VALUE_MARK.sub(lambda m, o=offset: f"\ue000{o + int(m.group(1))}\ue001", cond))
    targets = [t for t, _, _ in parts]
    if len(parts) == 1:
        where = f"{_source_filter(targets[0])} AND ({conds[0]})" if source == "events" else conds[0]
        in_view = f"({conds[0]})"
    else:
        any_source = " OR ".join(f"({_source_filter(t)})" for t in targets)
        in_view = " OR ".join(f"({_source_filter(t)} AND ({c}))" for t, c in zip(targets, conds, strict=True))
        where = f"({any_source}) AND ({in_view})"
    # the view holds only its sources' rows: there the leading source test, true of every row, is left out
    # (it was a tenth of what DuckDB binds for a pass of a hundred rules); the values come in the same order
    params = tuple(values[int(m.group(1))] for m in VALUE_MARK.finditer(where))
    # fields: one projection column per field and form (lowered or as is), computed once per row
    lowered = list(dict.fromkeys(LOWER_FIELD.findall(where)))
    plain = list(dict.fromkeys(ANY_FIELD.findall(LOWER_FIELD.sub("", where))))
    where, in_view = (_columns_of(text) for text in (where, in_view))
    used = list(dict.fromkeys([*lowered, *plain]))
    base, exprs = BASES[source](used)
    cols = ["b._rid"] + (["b.event_id AS _eid", "lower(b.channel) AS _chan"] if source == "events" else [])
    cols += [f"lower({exprs[n]}) AS {quote('l:' + n)}" for n in lowered]
    cols += [f"{exprs[n]} AS {quote('v:' + n)}" for n in plain]
    sql = f"t.rowid IN (SELECT s._rid FROM (SELECT {', '.join(cols)} FROM ({base}) b) s WHERE {where})"
    view = None
    if source == "events":
        sources = " OR ".join(f"({_source_filter(t)})" for t in targets)
        view = FieldView(sources, tuple(lowered), tuple(plain), in_view, needs)
    return sql, params, view


def _columns_of(text: str) -> str:
    """A condition with `?` for its value markers and the view's columns for its field tokens."""
    text = LOWER_FIELD.sub(lambda m: "s." + quote("l:" + m.group(1)), VALUE_MARK.sub("?", text))
    return ANY_FIELD.sub(lambda m: "s." + quote("v:" + m.group(1)), text)


_CHECK_LOCK = threading.Lock()
_CONVERT_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _check_db() -> duckdb.DuckDBPyConnection:
    """Empty tables of the three targets' families, to try converted rules on (not the case)."""
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE {family('events').table} (_artifact INTEGER, _line BIGINT, record_id BIGINT, ts TIMESTAMP, "
        "channel VARCHAR, provider VARCHAR, event_id INTEGER, level INTEGER, computer VARCHAR, data JSON, "
        f'message VARCHAR); CREATE TABLE {family("iis").table} ("date" VARCHAR, "time" VARCHAR, '
        '"cs-method" VARCHAR, _artifact INTEGER, _line BIGINT, _ts TIMESTAMP);'
        f'CREATE TABLE {family("httpproxy").table} ("DateTime" VARCHAR, _artifact INTEGER, _line BIGINT, '
        "_ts TIMESTAMP);"
    )
    return con


def _check_sql(source: str, sql: str, params: tuple[object, ...]) -> None:
    """Run the rule once on empty tables so DuckDB's own refusals (regex, types) surface at load."""
    table = family(source).table
    try:
        with _CHECK_LOCK:
            _check_db().execute(f"SELECT count(*) FROM {table} t WHERE coalesce(({sql}), false)", list(params))
    except duckdb.Error as exc:
        raise NotApplicable(f"DuckDB cannot run the converted rule: {str(exc).splitlines()[0]}") from None


# -- metadata -------------------------------------------------------------------------------------

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
CONFIDENCE = {"stable": "high", "test": "medium", "experimental": "low"}
ATTACK_ID = re.compile(r"^t\d{4}(\.\d{3})?$")


def _tags(rule: SigmaRule) -> list[tuple[str, str]]:
    return [(t.namespace.lower(), t.name.lower()) for t in rule.tags]


def _kind(rule: SigmaRule) -> str:
    tags = _tags(rule)
    if any(ns == "cve" for ns, _ in tags) or ("attack", "initial-access") in tags or ("attack", "t1190") in tags:
        return "exploitation"
    words = f"{rule.title} {rule.description or ''}".lower().replace(" ", "").replace("-", "")
    if ("attack", "t1505.003") in tags or "webshell" in words:
        return "webshell"
    return "post-exploitation"


def _to_rule(
    rule: SigmaRule,
    path: Path,
    source: str,
    sql: str | None,
    params: tuple[object, ...],
    view: FieldView | None,
    by_family: tuple[tuple[str, str, tuple[object, ...]], ...] = (),
) -> Rule:
    tags = _tags(rule)
    level = rule.level.name.lower() if rule.level else "medium"
    status = rule.status.name.lower() if rule.status else ""
    return Rule(
        id=f"sigma:{rule.id or path.stem}", title=rule.title, description=(rule.description or rule.title).strip(),
        severity=LEVELS.get(level, "medium"), kind=_kind(rule), source=source,
        confidence=CONFIDENCE.get(status, "medium"),
        cves=tuple(f"CVE-{name.upper()}" for ns, name in tags if ns == "cve"),
        attack=tuple(name.upper() for ns, name in tags if ns == "attack" and ATTACK_ID.match(name)),
        false_positives="; ".join(str(f) for f in rule.falsepositives or []),
        references=tuple(str(r) for r in rule.references or []), sql=sql, sql_params=params, view=view,
        by_family=by_family, origin=str(path),
    )  # fmt: skip


# -- a file ---------------------------------------------------------------------------------------


def _one_line(exc: Exception) -> str:
    """The first line of an exception's message, without pySigma's "(while converting rule ...)" tail."""
    text = str(exc.args[0]).strip() if exc.args else ""
    text = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r" \(while [a-z ]+ rule .*\)$", "", text)


def _convert(rule: SigmaRule, path: Path) -> list[Rule]:
    """One exhunt rule per source the log source lives in. A web rule is one `web` union rule over
    IIS and HttpProxy, so a request both logs saw is one finding with evidence from each. A table
    that cannot express the rule is left out; the rule is not applicable only when no table can."""
    status = rule.status.name.lower() if rule.status else ""
    if status in ("deprecated", "unsupported"):
        raise NotApplicable(f"{status} rule (status: {status})")
    if "deprecated" in (p.lower() for p in path.parts[:-1]):
        raise NotApplicable(f"deprecated rule (in a 'deprecated' folder, status: {status or 'none'})")
    by_source: dict[str, list[Target]] = {}
    for target in targets_for(rule.logsource):
        by_source.setdefault(target.source, []).append(target)
    converted: list[tuple[str, str, tuple[object, ...], FieldView | None]] = []
    first_problem: NotApplicable | None = None
    for source, targets in by_source.items():
        try:
            sql, params, view = _convert_for(rule, targets)
            _check_sql(source, sql, params)
        except NotApplicable as exc:
            first_problem = first_problem or exc
            continue
        converted.append((source, sql, params, view))
    if not converted:
        raise first_problem or NotApplicable("no exhunt table for this rule")
    if set(by_source) <= WEB_TARGETS:
        parts = tuple((source, sql, params) for source, sql, params, _ in converted)
        return [_to_rule(rule, path, WEB_SOURCE, None, (), None, parts)]
    rules = [_to_rule(rule, path, *c) for c in converted]
    return [rules[0], *(dataclasses.replace(r, id=f"{r.id}@{r.source}") for r in rules[1:])]


def _convert_for(rule: SigmaRule, targets: list[Target]) -> tuple[str, tuple[object, ...], FieldView | None]:
    parts = []
    processed: list[SigmaRule] = []  # each target's copy, as its pipeline left it
    for target in targets:
        try:
            with _CONVERT_LOCK:  # the cached backends collect values per conversion
                processed.append(copy.deepcopy(rule))
                cond, values = _backend(target).condition(processed[-1])
        except NotApplicable as exc:
            raise NotApplicable(_one_line(exc)) from None
        except NotImplementedError as exc:
            raise NotApplicable(f"not supported by the DuckDB backend: {_one_line(exc)}") from None
        except SigmaError as exc:
            raise NotApplicable(f"cannot convert: {_one_line(exc)}") from None
        parts.append((target, cond, list(values)))
    # the targets' conditions are ORed: the literal gate's set is over all their trees
    return _assemble(parts, needs(c.parsed for r in processed for c in r.detection.parsed_condition))


def convert_file(path: Path) -> dict[str, Any]:
    """{"malformed": reason} or {"items": [{"title", "rules": [...]} or {"title", "skip": reason}]}."""
    try:
        docs = read_docs(path)
    except Malformed as exc:
        return {"malformed": str(exc)}
    try:
        collection = SigmaCollection.from_dicts(copy.deepcopy(docs), source=SigmaRuleLocation(path), policy=POLICY)
    except SigmaRegularExpressionError as exc:  # valid Sigma, but RE2 (DuckDB's engine) rejects the regex
        detail = re.sub(r"b'(.*)'$", r"\1", _one_line(exc))
        why = f"regular expression not supported by RE2 (DuckDB's engine): {detail}"
        return {"items": [{"title": first_title(docs), "skip": why}]}
    except SigmaError as exc:
        return {"malformed": f"not a valid Sigma rule: {_one_line(exc)}"}
    items: list[dict[str, Any]] = []
    for rule in collection.rules:
        title = str(getattr(rule, "title", "") or first_title(docs))
        if not isinstance(rule, SigmaRule):
            kind = "correlation" if "Correlation" in type(rule).__name__ else type(rule).__name__
            items.append({"title": title, "skip": f"{kind} rules are not supported"})
            continue
        try:
            converted = _convert(rule, path)
        except NotApplicable as exc:
            items.append({"title": title, "skip": str(exc)})
            continue
        items.append({"title": title, "rules": [sigma_cache.rule_to_json(r) for r in converted]})
    return {"items": items}
