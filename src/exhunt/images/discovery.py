"""Targeted discovery: which folders of a Windows server hold the Exchange evidence set.

From the registry (install path, event log files) and IIS's `applicationHost.config` (each site's
`<logFile directory>`, `siteDefaults`, virtual directories' physical paths), with Microsoft's
default paths when either is missing. Nothing else of the disk is walked.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from exhunt.images.fs import Filesystem, resolve
from exhunt.images.registry import RegistryFacts
from exhunt.layout import DEFAULT_INSTALL

APPHOST = "Windows\\System32\\inetsrv\\config\\applicationHost.config"
DEFAULT_IIS_LOGS = "C:\\inetpub\\logs\\LogFiles"
DEFAULT_EVENT_LOGS = "C:\\Windows\\System32\\winevt\\Logs"
_ENV = {"%systemdrive%": "C:", "%systemroot%": "C:\\Windows", "%windir%": "C:\\Windows"}
_APPHOST_LIMIT = 16 << 20

# Kinds: logs and events are read as logs; web and staging also get $SI/$FN records (fsrecords.py).
WEB, STAGING, LOGS, EVENTS, CONFIG = "web", "staging", "logs", "events", "config"


@dataclass(frozen=True)
class Root:
    """One folder of the evidence set: a Windows path with drive, how deep to go, and why."""

    win_path: str
    kind: str
    why: str
    max_depth: int | None = None
    exclude: tuple[str, ...] = ()  # child folder names (lower case) not walked
    names: tuple[str, ...] = ()  # only these file names (lower case), when given


@dataclass
class Discovery:
    install_path: str
    build: str | None
    computer_name: str | None
    roots: list[Root]
    notes: list[str] = field(default_factory=list)


def expand(path: str) -> str:
    """Expand the environment variables Windows uses in these settings; C: is the system drive."""
    out = re.sub(r"%[A-Za-z_]+%", lambda m: _ENV.get(m.group(0).lower(), m.group(0)), path.strip().strip('"'))
    return out.replace("/", "\\").rstrip("\\")


def discover(volumes: dict[str, Filesystem], facts: RegistryFacts) -> Discovery:
    notes = list(facts.notes)
    install = facts.install_path
    if install is None:
        install = DEFAULT_INSTALL
        notes.append(f"Exchange install path not read from the registry: the default {DEFAULT_INSTALL} is used")
    install = install.rstrip("\\")
    roots = [
        Root(f"{install}\\Logging", LOGS, "Exchange logs (install path\\Logging)", exclude=("diagnostics",)),
        Root(f"{install}\\TransportRoles\\Logs", LOGS, "transport logs (message tracking)"),
        Root(f"{install}\\FrontEnd\\HttpProxy", WEB, "Exchange front-end web folders"),
        Root(f"{install}\\ClientAccess", WEB, "Exchange back-end web folders"),
    ]
    iis_dirs, virtual_dirs, apphost_notes = iis_folders(volumes, install)
    notes.extend(apphost_notes)
    roots += [Root(d, LOGS, "IIS logs (applicationHost.config)") for d in iis_dirs]
    roots.append(Root("C:\\inetpub\\wwwroot", WEB, "IIS default web root"))
    roots += [Root(d, WEB, "IIS virtual directory (applicationHost.config)", max_depth=6) for d in virtual_dirs]
    event_dirs = sorted({expand(f).rsplit("\\", 1)[0] for f in facts.event_log_files if "\\" in expand(f)})
    for d in [DEFAULT_EVENT_LOGS, *event_dirs]:
        roots.append(Root(d, EVENTS, "event logs"))
    roots += [
        Root("C:\\Windows\\System32\\inetsrv\\config", CONFIG, "IIS configuration", max_depth=1),
        Root("C:\\ProgramData", STAGING, "ProgramData (staging, dumps)", max_depth=3, exclude=("microsoft",)),
        Root("C:\\Windows\\Temp", STAGING, "Windows\\Temp (staging, dumps)", max_depth=3),
        Root("C:\\root", STAGING, "C:\\root (dump location)", max_depth=4),
        Root("C:\\Users\\Public", STAGING, "Users\\Public (staging)", max_depth=3),
    ]
    notes.append(
        "not read: install path\\Logging\\Diagnostics (performance and trace logs), ProgramData\\Microsoft, "
        "and everything outside the evidence set"
    )
    unique: dict[str, Root] = {}
    for r in roots:
        unique.setdefault(r.win_path.lower(), r)
    return Discovery(install + "\\", facts.build, facts.computer_name, list(unique.values()), notes)


def iis_folders(
    volumes: dict[str, Filesystem], install: str = DEFAULT_INSTALL
) -> tuple[list[str], list[str], list[str]]:
    """(IIS log folders, virtual directories outside the usual web roots, notes) from applicationHost.config."""
    fs = volumes.get("C")
    node = resolve(fs, APPHOST) if fs is not None else None
    if fs is None or node is None or node.is_dir:
        return (
            [DEFAULT_IIS_LOGS],
            [],
            [f"C:\\{APPHOST} is absent: the default IIS log folder {DEFAULT_IIS_LOGS} is used"],
        )
    try:
        with fs.open(node) as fh:
            data = fh.read(_APPHOST_LIMIT)
        root = ET.fromstring(data)
    except (OSError, ET.ParseError, ValueError) as exc:
        return (
            [DEFAULT_IIS_LOGS],
            [],
            [f"C:\\{APPHOST} is unreadable ({exc}): the default IIS log folder {DEFAULT_IIS_LOGS} is used"],
        )
    dirs: list[str] = []
    default = root.find(".//sites/siteDefaults/logFile")
    default_dir = expand(default.get("directory", "")) if default is not None else ""
    dirs.append(default_dir or DEFAULT_IIS_LOGS)
    for site in root.iterfind(".//sites/site"):
        log = site.find("logFile")
        if log is not None and log.get("directory"):
            dirs.append(expand(log.get("directory", "")))
    virtual = []
    for vdir in root.iterfind(".//sites/site/application/virtualDirectory"):
        physical = expand(vdir.get("physicalPath", ""))
        low = physical.lower()
        inside_known = low.startswith(install.lower().rstrip("\\")) or "\\inetpub\\wwwroot" in low
        too_broad = low.count("\\") < 1 or low in ("c:\\windows", "c:\\program files") or len(low) <= 3
        if re.match(r"^[a-z]:\\", low) and not inside_known and not too_broad:
            virtual.append(physical)
    return sorted(set(dirs), key=dirs.index), sorted(set(virtual)), []
