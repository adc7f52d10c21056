"""Find the host collections of a fleet: `ROOT/HOST`, `ROOT/TENANT/HOST` (folders or zips) or a manifest.

A folder directly under ROOT is a host when it looks like a collection (it holds a file, a drive-letter
folder such as `C`, or one of the usual triage folders); otherwise it is a tenant and each folder or
zip inside it is one host. Loose files directly under ROOT (an answer key, notes) are not hosts.

Manifest format (a text file given instead of ROOT): one host per line, `#` starts a comment,
fields separated by a TAB or by ` | `:

    PATH                       a host named after the folder/zip, no tenant
    TENANT | PATH              a host in that tenant
    TENANT | HOST | PATH       an explicit host name

Relative paths are read from the manifest's folder. A line whose path does not exist is kept as a
host that fails with that reason, so nothing in the list is silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from exhunt.errors import UsageError

_COLLECTION_DIRS = {"eventlogs", "inetpub", "program files", "windows", "programdata", "logs", "exchange", "users"}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class HostSpec:
    """One host collection of the fleet."""

    key: str  # unique, filesystem-safe: "tenant/host" or "host"
    tenant: str  # "" when the fleet has no tenant level
    name: str
    path: Path


@dataclass(frozen=True)
class Discovery:
    hosts: list[HostSpec]
    tenants: list[str]  # every tenant folder seen, empty ones included
    problems: list[dict[str, str]]  # fleet-level notes: empty tenant folders, duplicate names


def safe_name(text: str) -> str:
    """A file-name-safe form of a host or tenant name (names come from the evidence's folder names)."""
    out = _SAFE.sub("_", text).strip("._") or "_"
    return out[:100]


def discover(root: Path) -> Discovery:
    """The hosts under ROOT (a folder) or listed in ROOT (a manifest file)."""
    root = Path(root)
    if not root.exists():
        raise UsageError(f"{root}: no such folder or manifest")
    if root.is_file() and root.suffix.lower() != ".zip":
        return _from_manifest(root)
    if root.is_file():
        raise UsageError(f"{root}: a single zip is one host; use 'exhunt scan' or give its folder")
    hosts: list[HostSpec] = []
    tenants: list[str] = []
    problems: list[dict[str, str]] = []
    for child in sorted(root.iterdir(), key=lambda p: p.name):
        if _is_zip(child) or (child.is_dir() and _looks_like_host(child)):
            hosts.append(_spec("", child.name if child.is_dir() else child.stem, child))
        elif child.is_dir():
            tenants.append(child.name)
            members = [g for g in sorted(child.iterdir(), key=lambda p: p.name) if g.is_dir() or _is_zip(g)]
            if not members:
                problems.append({"tenant": child.name, "reason": "tenant folder holds no host collection"})
            for g in members:
                hosts.append(_spec(child.name, g.name if g.is_dir() else g.stem, g))
    return Discovery(_unique(hosts, problems), tenants, problems)


def _is_zip(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".zip"


def _looks_like_host(d: Path) -> bool:
    try:
        for c in d.iterdir():
            if c.is_file() and not _is_zip(c):
                return True
            if c.is_dir() and (re.fullmatch(r"[A-Za-z]", c.name) or c.name.lower() in _COLLECTION_DIRS):
                return True
    except OSError:
        return True  # unreadable: let the scan report why
    return False


def _spec(tenant: str, name: str, path: Path) -> HostSpec:
    key = f"{safe_name(tenant)}/{safe_name(name)}" if tenant else safe_name(name)
    return HostSpec(key, tenant, name, path)


def _unique(hosts: list[HostSpec], problems: list[dict[str, str]]) -> list[HostSpec]:
    """Two collections with one name (a folder and a zip of it) keep both, the second renamed."""
    seen: dict[str, int] = {}
    out = []
    for h in hosts:
        n = seen.get(h.key, 0)
        seen[h.key] = n + 1
        if n:
            problems.append({"host": h.key, "reason": f"duplicate host name; {h.path.name} kept as {h.key}~{n + 1}"})
            h = HostSpec(f"{h.key}~{n + 1}", h.tenant, h.name, h.path)
        out.append(h)
    return out


def _from_manifest(path: Path) -> Discovery:
    hosts: list[HostSpec] = []
    problems: list[dict[str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the manifest ({exc})") from exc
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in re.split(r"\t| \| ", line)]
        if len(parts) > 3 or not parts[-1]:
            raise UsageError(f"{path}:{n}: expected PATH, TENANT | PATH or TENANT | HOST | PATH")
        target = Path(parts[-1]).expanduser()
        if not target.is_absolute():
            target = path.parent / target
        tenant = parts[0] if len(parts) >= 2 else ""
        name = parts[1] if len(parts) == 3 else (target.stem if _is_zip(target) else target.name)
        hosts.append(_spec(tenant, name, target))
    tenants = sorted({h.tenant for h in hosts if h.tenant})
    return Discovery(_unique(hosts, problems), tenants, problems)
