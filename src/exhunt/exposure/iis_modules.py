"""IIS native and managed modules that a stock IIS + Exchange install does not have.

Reads `<globalModules>` (native: name + DLL), `<modules>` / `<httpModules>` (managed: name + type)
and `<handlers>` / `<httpHandlers>` (type or scriptProcessor DLL) of one applicationHost.config or
web.config, and compares every entry with the stock list in `iis_modules_stock.yaml`.

Uses the comment-aware tag scan of `exhunt.exposure.mitigations` (no XML parser, no entity
expansion, no recursion), so hostile, truncated or deeply nested files cannot break it, and every
entry keeps the line of its `<add>` element.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import yaml

from exhunt.exposure.mitigations import _as_text, _tags

NATIVE_SECTIONS = frozenset({"globalModules"})
MANAGED_SECTIONS = frozenset({"modules", "httpModules"})
HANDLER_SECTIONS = frozenset({"handlers", "httpHandlers"})
SECTIONS = NATIVE_SECTIONS | MANAGED_SECTIONS | HANDLER_SECTIONS
OUTSIDE = "outside install folders"
INSIDE = "install folder"
_ENV = {
    "%windir%": "c:\\windows",
    "%systemroot%": "c:\\windows",
    "%systemdrive%": "c:",
    "%programfiles%": "c:\\program files",
    "%exchangeinstallpath%": "c:\\program files\\microsoft\\exchange server\\v15\\",
}


@dataclass(frozen=True)
class Stock:
    native: dict[str, str]  # lower-case module name -> lower-case DLL file name
    install_folders: tuple[str, ...]
    managed: frozenset[str]  # lower-case type names


@dataclass(frozen=True)
class ModuleEntry:
    section: str
    name: str
    image: str  # native DLL (globalModules image, handler scriptProcessor), else ""
    type: str  # managed type, else ""
    scope: str  # <location path=...>, "" at the top
    web_app: str  # "owa", "ecp" or "" (from the file's path, else from the <location path>)
    placement: str  # OUTSIDE / INSIDE for a DLL, "" for a managed type
    reason: str
    line: int | None


@functools.cache
def stock() -> Stock:
    """The stock module list shipped with exhunt."""
    doc = yaml.safe_load(resources.files("exhunt.exposure").joinpath("iis_modules_stock.yaml").read_text("utf-8"))
    return Stock(
        native={str(k).lower(): str(v).lower() for k, v in doc["native"].items()},
        install_folders=tuple(str(f).lower() for f in doc["install_folders"]),
        managed=frozenset(str(t).lower() for t in doc["managed"]),
    )


def normal_dll_path(value: str) -> str:
    """Lower case, environment variables expanded, forward slashes and doubled separators folded."""
    low = value.strip().strip('"').lower().replace("/", "\\").removeprefix("\\\\?\\")
    for var, expansion in _ENV.items():
        low = low.replace(var, expansion)
    return re.sub(r"\\{2,}", "\\\\", low)


def placement(dll: str, folders: tuple[str, ...] | None = None) -> str:
    """INSIDE when the DLL lies under a Windows, .NET or Exchange install folder, else OUTSIDE.

    A relative, UNC or `..` path is OUTSIDE.
    """
    path = normal_dll_path(dll)
    if ".." in path or not path:
        return OUTSIDE
    folders = stock().install_folders if folders is None else folders
    drive = re.match(r"[a-z]:(?=\\)", path)
    rest = path[drive.end() :] if drive else None
    return INSIDE if rest is not None and rest.startswith(folders) else OUTSIDE


def _web_app(path: str) -> str:
    low = path.lower().replace("\\", "/")
    for app in ("owa", "ecp"):
        if re.search(rf"(^|[/_-]){app}([/_-]|$)", low):
            return app
    return ""


def _type_name(value: str) -> str:
    return value.split(",", 1)[0].strip()


# Microsoft's strong-name key tokens (.NET Framework, ASP.NET / Exchange); a foreign assembly cannot carry them.
MICROSOFT_TOKENS = frozenset({"31bf3856ad364e35", "b77a5c561934e089", "b03f5f7f11d50a3a"})


def _foreign_assembly(value: str) -> str:
    """Why a stock class name's assembly is not Microsoft's ("" when it is, or when none is named)."""
    parts = [p.strip() for p in value.split(",")[1:]]
    if not parts:
        return ""
    assembly = parts[0].lower()
    if not (assembly.startswith("microsoft.exchange.") or assembly.startswith("system.") or assembly == "system"):
        return f"stock type name from a foreign assembly ({parts[0]})"
    for part in parts[1:]:
        key, _, token = part.partition("=")
        if key.strip().lower() == "publickeytoken" and token.strip().lower() not in MICROSOFT_TOKENS:
            return f"stock type name signed with a foreign key ({token.strip()})"
    return ""


def _judge(section: str, attrs: dict[str, str], known: Stock) -> tuple[str, str, str, str] | None:
    """(image, type, placement, reason) of a non-stock entry, None for a stock one."""
    name = attrs.get("name", "")
    if section in NATIVE_SECTIONS:
        image = attrs.get("image", "")
        where = placement(image, known.install_folders)
        expected = known.native.get(name.lower())
        dll = normal_dll_path(image).rsplit("\\", 1)[-1]
        if expected is not None and dll == expected and where == INSIDE:
            return None
        if expected is None:
            reason = "native module not part of a stock IIS + Exchange install"
        elif dll != expected:
            reason = f"stock module name loading {dll or 'no DLL'} instead of {expected}"
        else:
            reason = "stock module name loading its DLL from outside the install folders"
        return image, "", where, f"{reason} ({where})"
    type_ = _type_name(attrs.get("type", ""))
    script = attrs.get("scriptProcessor", "")
    kind = "handler" if section in HANDLER_SECTIONS else "managed module"
    if type_ and type_.lower() not in known.managed:
        return "", type_, "", f"{kind} type not part of a stock IIS + Exchange install"
    foreign = _foreign_assembly(attrs.get("type", "")) if type_ else ""
    if foreign:
        return "", attrs.get("type", "").strip(), "", f"{kind}: {foreign}"
    if script and section in HANDLER_SECTIONS:
        where = placement(script, known.install_folders)
        if where == OUTSIDE:
            return script, type_, where, "handler script processor DLL outside the install folders"
    return None


def unknown_modules(text: str | bytes, path: str) -> list[ModuleEntry]:
    """Every module or handler of one config file that the stock list does not know, with its line."""
    text = _as_text(text)
    known = stock()
    app = _web_app(path)
    found: list[ModuleEntry] = []
    section, scope = "", ""
    counted, line = 0, 1  # lines counted incrementally: a huge file with many entries stays linear
    for closing, selfclose, tag, attrs, offset in _tags(text):
        if tag == "location":
            scope = "" if closing else attrs.get("path", "")
        elif tag in SECTIONS:
            section = "" if closing or selfclose else tag
        elif tag == "add" and section and not closing:
            judged = _judge(section, attrs, known)
            if judged is not None:
                image, type_, where, reason = judged
                line += text.count("\n", counted, offset)
                counted = offset
                web_app = app or _web_app(scope)
                found.append(
                    ModuleEntry(section, attrs.get("name", ""), image, type_, scope, web_app, where, reason, line)
                )
    return found
