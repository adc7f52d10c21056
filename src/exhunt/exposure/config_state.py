"""Configuration that decides configuration-dependent fixes, read from collected files (read-only).

* `applicationHost.config`: Extended Protection (IIS tokenChecking) per Exchange virtual directory and
  whether the IIS TokenCacheModule is installed;
* a `Get-SettingOverride` export (Format-List text or CSV): overrides that turn a fix off;
* HealthChecker's `GetIISModules.xml`: the installed IIS modules.
Never raises on bad content: a file that cannot be read is noted and skipped.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exhunt.exposure.mitigations import _local, _parse_xml
from exhunt.exposure.table import BuildTable, Cve, default_table

MAX_CONFIG_BYTES = 32 << 20
MAX_FILES = 2000
_RANK = {"none": 0, "allow": 1, "require": 2}
_SITES = (("front", "Default Web Site"), ("back", "Exchange Back End"))


@dataclass(frozen=True)
class VdirProtection:
    site: str
    vdir: str
    expected: str
    actual: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SettingOverride:
    component: str
    section: str
    parameter: str
    value: str
    name: str
    path: str


@dataclass
class ConfigState:
    """What the collection says; empty lists mean 'not in the collection', never 'fine'."""

    extended_protection: dict[str, list[VdirProtection]] = field(default_factory=dict)
    overrides: list[SettingOverride] | None = None
    token_cache_module: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "extended_protection": {p: [v.to_dict() for v in vs] for p, vs in self.extended_protection.items()},
            "setting_overrides": None if self.overrides is None else [o.__dict__ for o in self.overrides],
            "token_cache_module": dict(self.token_cache_module),
            "problems": list(self.problems),
        }

    # ------------------------------------------------------------------------- judging one CVE

    def judge(self, cve: Cve, table: BuildTable | None = None) -> tuple[bool | None, str]:
        """(True = the configuration completes the fix, False = it undoes it, None = not known, why)."""
        condition = cve.condition or ""
        if condition == "extended_protection":
            return self._judge_ep()
        if condition == "serialized_data_signing":
            return self._judge_overrides(["Data/EnableSerializationDataSigning/Enabled"], "serialized data signing")
        if condition == "setting_override":
            return self._judge_overrides(list(cve.overrides), "the fix")
        if condition == "token_cache_module":
            return self._judge_token_cache()
        if condition == "hybrid_application":
            return None, "the hybrid application and its service principal are not in offline files: check by hand"
        return None, ""

    def _judge_ep(self) -> tuple[bool | None, str]:
        if not self.extended_protection:
            return None, "no applicationHost.config in the collection"
        weak = [(path, v) for path, vs in self.extended_protection.items() for v in vs if not v.ok]
        if weak:
            shown = ", ".join(f"{v.site}/{v.vdir}={v.actual}" for _, v in weak[:4])
            more = f" and {len(weak) - 4} more" if len(weak) > 4 else ""
            files = len({p for p, _ in weak})
            return False, f"Extended Protection below the required level on {shown}{more} ({files} file(s))"
        count = sum(len(vs) for vs in self.extended_protection.values())
        return True, f"Extended Protection at the required level on all {count} virtual directories read"

    def _judge_overrides(self, keys: list[str], what: str) -> tuple[bool | None, str]:
        if self.overrides is None:
            return None, "no Get-SettingOverride export in the collection"
        wanted = {k.lower() for k in keys}
        hits = [
            o
            for o in self.overrides
            if f"{o.component}/{o.section}/{o.parameter}".lower() in wanted and o.value.strip().lower() == "false"
        ]
        if hits:
            return False, f"setting override {hits[0].name or hits[0].section} turns {what} off ({hits[0].path})"
        return True, f"no setting override turns {what} off ({len(self.overrides)} override(s) read)"

    def _judge_token_cache(self) -> tuple[bool | None, str]:
        if not self.token_cache_module:
            return None, "installed IIS modules are not in the collection"
        if any(self.token_cache_module.values()):
            where = next(p for p, present in self.token_cache_module.items() if present)
            return None, f"TokenCacheModule is installed ({where}): fixed only if Windows has the October 2023 update"
        return True, "TokenCacheModule is not installed"


# ----------------------------------------------------------------------------- readers


def read_extended_protection(text: str, table: BuildTable | None = None) -> list[VdirProtection] | None:
    """Per expected virtual directory present in an applicationHost.config, its tokenChecking level."""
    table = table or default_table()
    root = _parse_xml(text.lstrip("\ufeff"))
    if root is None:
        return None
    levels: dict[str, str | None] = {}
    for loc in root:
        if _local(loc.tag) != "location":
            continue
        token = None
        for elem in loc.iter():
            if _local(elem.tag) == "extendedProtection":
                token = elem.get("tokenChecking")
        levels[loc.get("path", "").strip().lower()] = token
    found = []
    for expectation in table.extended_protection:
        for side, site in _SITES:
            expected = getattr(expectation, side)
            path = f"{site}/{expectation.vdir}".lower()
            if expected is None or path not in levels:
                continue
            actual = levels[path] or levels.get(path.rsplit("/", 1)[0]) or "None"
            ok = _RANK.get(actual.strip().lower(), 0) >= _RANK.get(expected.lower(), 0)
            found.append(VdirProtection(site, expectation.vdir, expected, actual, ok))
    return found


def token_cache_module_installed(text: str) -> bool | None:
    """From applicationHost.config <globalModules> or a module list export; None when the text has neither."""
    root = _parse_xml(text.lstrip("\ufeff"))
    if root is not None and _local(root.tag) == "configuration":
        modules = [e for e in root.iter() if _local(e.tag) == "globalModules"]
        if not modules:
            return None
        return any((a.get("name") or "").lower() == "tokencachemodule" for m in modules for a in m)
    if "modulelist" in text.lower() or "<Objs" in text:
        return re.search(r">\s*TokenCacheModule\s*<", text, re.I) is not None
    return None


_FL_LINE = re.compile(r"^\s*([A-Za-z]+)\s*:\s?(.*)$")
_PARAM = re.compile(r"([A-Za-z0-9_]+)\s*=\s*([^,;}\s]+)")


def _clixml_records(root: ET.Element) -> list[dict[str, str]]:
    """SettingOverride objects of a PowerShell CliXml file (Export-Clixml, HealthChecker's XML)."""
    records = []
    for obj in root.iter():
        if _local(obj.tag) != "Obj":
            continue
        props = next((c for c in obj if _local(c.tag) == "Props"), None)
        if props is None:
            continue
        record: dict[str, str] = {}
        for prop in props:
            name = prop.get("N", "")
            if name in ("ComponentName", "SectionName", "Name") and _local(prop.tag) == "S":
                record[name] = prop.text or ""
            elif name == "Parameters":
                values = [s.text or "" for s in prop.iter() if _local(s.tag) == "S"]
                record["Parameters"] = ", ".join(values)
        if "ComponentName" in record and "SectionName" in record:
            records.append(record)
    return records


def read_setting_overrides(text: str, path: str = "") -> list[SettingOverride]:
    """Overrides from `Get-SettingOverride` output: Format-List text, `Export-Csv` or `Export-Clixml`."""
    text = text.lstrip("\ufeff")
    records: list[dict[str, str]] = []
    head = text.lstrip()[:2000]
    if head.startswith("<"):
        root = _parse_xml(text)
        records = _clixml_records(root) if root is not None else []
    elif head.startswith(("#TYPE", '"')) or head.split("\n", 1)[0].count(",") >= 2:
        lines = [ln for ln in text.splitlines() if not ln.startswith("#TYPE")]
        records = [
            {k.strip(): (v or "") for k, v in r.items() if k} for r in csv.DictReader(io.StringIO("\n".join(lines)))
        ]
    else:
        current: dict[str, str] = {}
        last = ""
        for line in text.splitlines():
            if not line.strip():
                if current:
                    records.append(current)
                current, last = {}, ""
                continue
            found = _FL_LINE.match(line)
            if found and found.group(1) in _FIELDS:
                last = found.group(1)
                current[last] = found.group(2).strip()
            elif last:
                current[last] += " " + line.strip()
        if current:
            records.append(current)
    overrides = []
    for record in records:
        component = record.get("ComponentName", "").strip()
        section = record.get("SectionName", "").strip()
        if not component or not section:
            continue
        for parameter, value in _PARAM.findall(record.get("Parameters", "")):
            overrides.append(SettingOverride(component, section, parameter, value, record.get("Name", ""), path))
    return overrides


_FIELDS = {"Name", "ComponentName", "SectionName", "Parameters", "Server", "Reason", "Identity", "MinVersion"}


def _looks_like_overrides(name: str, text: str) -> bool:
    named = "settingoverride" in name.replace("-", "").replace("_", "")
    return (
        named
        or ('N="ComponentName"' in text and 'N="SectionName"' in text)
        or ("ComponentName" in text[:4000] and "SectionName" in text[:4000])
    )


def read_configuration(paths: Iterable[Path], table: BuildTable | None = None) -> ConfigState:
    """Walk files and folders (read-only) and collect every configuration fact this module understands."""
    state = ConfigState()
    seen = 0
    for path in _walk(paths):
        seen += 1
        if seen > MAX_FILES:
            state.problems.append(f"more than {MAX_FILES} files: the rest were not read")
            break
        name = path.name.lower()
        wanted = name.endswith(".config") and "applicationhost" in name
        modules = name == "getiismodules.xml"
        try:
            if not (wanted or modules or name.endswith((".txt", ".csv", ".log", ".xml"))):
                continue
            data = path.read_bytes()[:MAX_CONFIG_BYTES]
        except OSError as error:
            state.problems.append(f"{path}: {error.strerror or error}")
            continue
        text = _decode(data)
        if wanted:
            vdirs = read_extended_protection(text, table)
            if vdirs is None:
                state.problems.append(f"{path}: not well-formed XML, Extended Protection not read")
                continue
            if vdirs:
                state.extended_protection[str(path)] = vdirs
            present = token_cache_module_installed(text)
            if present is not None:
                state.token_cache_module[str(path)] = present
        elif modules:
            present = token_cache_module_installed(text)
            if present is not None:
                state.token_cache_module[str(path)] = present
        elif _looks_like_overrides(name, text):
            state.overrides = (state.overrides or []) + read_setting_overrides(text, str(path))
    return state


def _decode(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", "replace")
    return data.decode("utf-8-sig", "replace")


def _walk(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink())
        elif path.is_file():
            yield path
