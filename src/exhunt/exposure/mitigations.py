"""Read IIS applicationHost.config / web.config for Microsoft's URL-rewrite mitigations and vdir tampering.

Never raises on bad content: well-formed XML is read with ElementTree, anything else with a tag scan.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MITIGATED = "mitigated, not patched"
DISABLED = "mitigation rule present but disabled"


@dataclass(frozen=True)
class KnownRule:
    name: str
    pattern: str
    family: str
    cves: tuple[str, ...]
    tool: str


# Published names/patterns (research §2.2, §2.8, §2.9 "Mitigation artifacts"; CSS-EOMT).
KNOWN_RULES = (
    KnownRule(
        "X-AnonResource-Backend Abort - inbound",
        "(.*)X-AnonResource-Backend(.*)",
        "proxylogon",
        ("CVE-2021-26855",),
        "EOMT (March 2021)",
    ),
    KnownRule(
        "X-BEResource Abort - inbound",
        "(.*)X-BEResource=(.+)/(.+)~(.+)",
        "proxylogon",
        ("CVE-2021-26855",),
        "EOMT (March 2021)",
    ),
    KnownRule(
        "PowerShell - inbound",
        "(?=.*autodiscover)(?=.*powershell)",
        "proxynotshell",
        ("CVE-2022-41040",),
        "EOMTv2 (October 2022)",
    ),
)


@dataclass(frozen=True)
class Mitigation:
    family: str
    cves: tuple[str, ...]
    status: str
    rule_name: str
    tool: str
    matched_by: str
    pattern: str
    action: str
    scope: str
    path: str
    line: int | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "cves": list(self.cves)}


@dataclass(frozen=True)
class SuspiciousVirtualDirectory:
    site: str
    application: str
    virtual_directory: str
    physical_path: str
    reason: str
    path: str
    line: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ----------------------------------------------------------------------------- neutral records


@dataclass
class _Rule:
    name: str
    enabled: bool
    scope: str
    offset: int | None = None
    patterns: list[str] = field(default_factory=list)
    action: str = ""


@dataclass
class _Vdir:
    site: str
    application: str
    vdir: str
    physical_path: str
    offset: int | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _as_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text.lstrip("\ufeff") if isinstance(text, str) else ""


def _enabled(value: str | None) -> bool:
    return (value or "true").strip().lower() != "false"


def _parse_xml(text: str) -> ET.Element | None:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return None  # IIS configs never declare these; do not let the parser expand them.
    try:
        return ET.fromstring(text)
    except (ET.ParseError, ValueError):
        return None


# ----------------------------------------------------------------------------- ElementTree path


def _xml_rules(root: ET.Element) -> list[_Rule]:
    rules: list[_Rule] = []

    def walk(elem: ET.Element, scope: str, in_rewrite: bool) -> None:
        tag = _local(elem.tag)
        if tag == "location":
            scope = elem.get("path", "")
        if tag == "rule" and in_rewrite:
            rules.append(_xml_rule(elem, scope))
            return
        for child in elem:
            walk(child, scope, in_rewrite or tag == "rewrite")

    walk(root, "", False)
    return rules


def _xml_rule(elem: ET.Element, scope: str) -> _Rule:
    rule = _Rule(elem.get("name", ""), _enabled(elem.get("enabled")), scope)
    for child in elem.iter():
        tag = _local(child.tag)
        if tag == "match" and child.get("url"):
            rule.patterns.append(child.get("url", ""))
        elif tag == "add" and child.get("pattern"):
            rule.patterns.append(child.get("pattern", ""))
        elif tag == "action":
            rule.action = child.get("type", "")
    return rule


def _xml_vdirs(root: ET.Element) -> list[_Vdir]:
    found: list[_Vdir] = []
    for site in root.iter():
        if _local(site.tag) != "site":
            continue
        for app in site:
            if _local(app.tag) != "application":
                continue
            for vdir in app:
                if _local(vdir.tag) == "virtualDirectory":
                    found.append(
                        _Vdir(
                            site.get("name", ""),
                            app.get("path", ""),
                            vdir.get("path", ""),
                            vdir.get("physicalPath", ""),
                        )
                    )
    return found


# ----------------------------------------------------------------------------- tag-scan fallback

_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_TAG_RE = re.compile(r"<(/?)([A-Za-z_][\w.:-]*)((?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*?)(/?)>")
_ATTR_RE = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def _blank_comments(text: str) -> str:
    """Replace comments by spaces (newlines kept) so offsets and line numbers stay right."""
    return _COMMENT_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def _attrs(raw: str) -> dict[str, str]:
    return {
        m.group(1): html.unescape(m.group(2) if m.group(2) is not None else m.group(3)) for m in _ATTR_RE.finditer(raw)
    }


def _tags(text: str) -> Iterator[tuple[bool, bool, str, dict[str, str], int]]:
    """(closing, self-closing, local name, attributes, offset) for every tag outside comments."""
    for m in _TAG_RE.finditer(_blank_comments(text)):
        closing, name, raw, selfclose = m.groups()
        yield bool(closing), bool(selfclose), _local(name), _attrs(raw), m.start()


def _scan_rules(text: str) -> list[_Rule]:
    rules: list[_Rule] = []
    scope, rewrite_depth, current = "", 0, None
    for closing, selfclose, tag, attrs, offset in _tags(text):
        if tag == "location" and not closing:
            scope = attrs.get("path", "")
        elif tag == "rewrite":
            rewrite_depth += -1 if closing else (0 if selfclose else 1)
        elif tag == "rule" and not closing and (rewrite_depth > 0 or "name" in attrs):
            current = _Rule(attrs.get("name", ""), _enabled(attrs.get("enabled")), scope, offset)
            rules.append(current)
            current = None if selfclose else current
        elif tag == "rule" and closing:
            current = None
        elif current is not None and not closing:
            _scan_rule_child(current, tag, attrs)
    return rules


def _scan_rule_child(rule: _Rule, tag: str, attrs: dict[str, str]) -> None:
    if tag == "match" and attrs.get("url"):
        rule.patterns.append(attrs["url"])
    elif tag == "add" and attrs.get("pattern"):
        rule.patterns.append(attrs["pattern"])
    elif tag == "action":
        rule.action = attrs.get("type", "")


def _scan_vdirs(text: str) -> list[_Vdir]:
    found: list[_Vdir] = []
    site = app = ""
    for closing, _selfclose, tag, attrs, offset in _tags(text):
        if tag == "site":
            site = "" if closing else attrs.get("name", "")
        elif tag == "application":
            app = "" if closing else attrs.get("path", "")
        elif tag == "virtualDirectory" and not closing and "physicalPath" in attrs:
            found.append(_Vdir(site, app, attrs.get("path", ""), attrs["physicalPath"], offset))
    return found


# ----------------------------------------------------------------------------- classification


def _line(text: str, offset: int | None) -> int | None:
    return None if offset is None else text.count("\n", 0, offset) + 1


def _locate_rule(text: str, name: str, start: int) -> int | None:
    """Offset of the `<rule ... name="...">` tag, for line numbers on the ElementTree path."""
    for spelled in (html.escape(name, quote=False), name):
        pattern = re.compile(r"<rule\b[^>]*\bname\s*=\s*[\"']" + re.escape(spelled) + r"[\"']")
        found = pattern.search(text, start) or pattern.search(text)
        if found:
            return found.start()
    return None


def _norm_pattern(pattern: str) -> str:
    return re.sub(r"\s+", "", pattern).lower()


def _match_rule(rule: _Rule) -> tuple[KnownRule, str] | None:
    name = rule.name.strip().lower()
    patterns = {_norm_pattern(p) for p in rule.patterns}
    for known in KNOWN_RULES:
        by_name = name == known.name.lower()
        by_pattern = _norm_pattern(known.pattern) in patterns
        if by_name or by_pattern:
            how = "name and pattern" if by_name and by_pattern else ("name" if by_name else "pattern")
            return known, how
    return None


def _tool(rule: _Rule, known: KnownRule, how: str) -> str:
    if how != "pattern":
        return known.tool
    if rule.name.upper().startswith("EEMS"):
        return "Exchange Emergency Mitigation service"
    return f"URL Rewrite rule with the pattern Microsoft published for {known.cves[0]}"


def _mitigations(text: str, rules: list[_Rule], path: str) -> list[Mitigation]:
    found: list[Mitigation] = []
    cursor = 0
    for rule in rules:
        offset = rule.offset if rule.offset is not None else _locate_rule(text, rule.name, cursor)
        cursor = offset + 1 if offset is not None else cursor
        matched = _match_rule(rule)
        if matched is None:
            continue
        known, how = matched
        pattern = next((p for p in rule.patterns if _norm_pattern(p) == _norm_pattern(known.pattern)), "")
        found.append(
            Mitigation(
                family=known.family,
                cves=known.cves,
                status=MITIGATED if rule.enabled else DISABLED,
                rule_name=rule.name,
                tool=_tool(rule, known, how),
                matched_by=how,
                pattern=pattern or "; ".join(rule.patterns),
                action=rule.action,
                scope=rule.scope,
                path=path,
                line=_line(text, offset),
            )
        )
    return found


def find_mitigations(text: str, path: str) -> list[Mitigation]:
    """Microsoft's EOMT / EOMTv2 URL-rewrite rules (by name or published pattern) in one config file."""
    text = _as_text(text)
    root = _parse_xml(text)
    rules = _xml_rules(root) if root is not None else _scan_rules(text)
    return _mitigations(text, rules, path)


_DRIVE_DIRS = re.compile(r"^[a-z]:\\(programdata|users)(\\|$)")
_ENV = {
    "%systemdrive%": "c:",
    "%homedrive%": "c:",
    "%programdata%": "c:\\programdata",
    "%allusersprofile%": "c:\\programdata",
    "%public%": "c:\\users\\public",
    "%userprofile%": "c:\\users\\%username%",
}


def _normal_physical_path(value: str) -> str:
    lowered = value.strip().strip('"').lower().replace("/", "\\")
    for var, expansion in _ENV.items():
        lowered = lowered.replace(var, expansion)
    lowered = lowered.removeprefix("\\\\?\\")
    return re.sub(r"\\{2,}", "\\\\", lowered)


def suspicious_virtual_directories(
    text: str, path: str, vdirs: list[tuple[str, str, str, str, int | None]] | None = None
) -> list[SuspiciousVirtualDirectory]:
    """Sites' virtual directories whose physicalPath points into C:\\ProgramData\\ or C:\\Users\\
    (`vdirs`: the file's `virtual_directories(text)` when the caller has them already)."""
    found = []
    for site, application, vdir, physical_path, line in virtual_directories(text) if vdirs is None else vdirs:
        where = _DRIVE_DIRS.match(_normal_physical_path(physical_path))
        if not where:
            continue
        folder = "ProgramData" if where.group(1) == "programdata" else "Users"
        reason = f"physicalPath points into C:\\{folder}\\ (ProxyShell-era IIS configuration tampering)"
        found.append(SuspiciousVirtualDirectory(site, application, vdir, physical_path, reason, path, line))
    return found


def virtual_directories(text: str) -> list[tuple[str, str, str, str, int | None]]:
    """Every site's virtual directories: (site, application path, virtual directory path, physical path, line)."""
    text = _as_text(text)
    root = _parse_xml(text)
    vdirs = _xml_vdirs(root) if root is not None else _scan_vdirs(text)
    out = []
    cursor = 0
    for vdir in vdirs:
        offset = vdir.offset if vdir.offset is not None else _locate_attr(text, vdir.physical_path, cursor)
        cursor = offset + 1 if offset is not None else cursor
        out.append((vdir.site, vdir.application, vdir.vdir, vdir.physical_path, _line(text, offset)))
    return out


def _locate_attr(text: str, value: str, start: int) -> int | None:
    needle = f'physicalPath="{html.escape(value, quote=True)}"'
    found = text.find(needle, start)
    if found < 0:
        found = text.find(needle)
    return found if found >= 0 else None
