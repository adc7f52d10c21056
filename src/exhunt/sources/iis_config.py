"""IIS configuration (`applicationHost.config`, `web.config`): the URL-rewrite mitigation rules
Microsoft's one-click tools installed, virtual directories pointing into ProgramData or Users, and
IIS modules / handlers a stock IIS + Exchange install does not have.

Rows go to `cfg_mitigations`, `cfg_suspicious_vdirs` and `cfg_unknown_modules`, one per rule,
directory or module with its line,
so ordinary rules and the exposure report read them like any other records. The XML logic lives in
`exhunt.exposure.mitigations`; this module only adapts it to the source interface.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa

from exhunt.exposure.config_state import read_extended_protection
from exhunt.exposure.iis_modules import unknown_modules
from exhunt.exposure.mitigations import find_mitigations, suspicious_virtual_directories, virtual_directories
from exhunt.families import family
from exhunt.sources.base import ArtifactInfo, Source, text_head

MAX_CONFIG_BYTES = 32 << 20
MITIGATIONS = family("config_mitigations").table
VDIRS = family("config_vdirs").table
PROTECTION = family("config_extended_protection").table
SITE_VDIRS = family("config_site_vdirs").table
MODULES = family("config_modules").table


class IisConfigSource(Source):
    kind = "iis-config"
    scan_content = True  # a web.config can carry a web shell

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        name = path.rsplit("/", 1)[-1].lower()
        return name.endswith(".config") and "<configuration" in text_head(head)[:4096]

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        info.table, info.log_type = MITIGATIONS, "IIS configuration"
        data = stream.read(MAX_CONFIG_BYTES + 1)
        hasher.update(data)  # type: ignore[attr-defined]
        if len(data) > MAX_CONFIG_BYTES:
            info.errors.append(
                (None, f"configuration larger than {MAX_CONFIG_BYTES >> 20} MiB: only the start was read")
            )
            while more := stream.read(8 << 20):
                hasher.update(more)  # type: ignore[attr-defined]
        text = data[:MAX_CONFIG_BYTES].decode("utf-8-sig", "backslashreplace")
        mitigations = find_mitigations(text, info.path)
        if mitigations:
            rows = [
                {"_line": m.line, "family": m.family, "cves": json.dumps(list(m.cves)), "status": m.status,
                 "rule_name": m.rule_name, "tool": m.tool, "pattern": m.pattern, "action": m.action}
                for m in mitigations
            ]  # fmt: skip
            info.records += len(rows)
            yield MITIGATIONS, _table(rows)
        every_vdir = virtual_directories(text)  # the XML is parsed once for both uses
        vdirs = suspicious_virtual_directories(text, info.path, every_vdir)
        if vdirs:
            rows = [
                {"_line": v.line, "site": v.site, "application": v.application, "virtual_directory": v.virtual_directory,
                 "physical_path": v.physical_path, "reason": v.reason}
                for v in vdirs
            ]  # fmt: skip
            info.records += len(rows)
            yield VDIRS, _table(rows)
        if "applicationhost" in info.path.lower():  # every virtual directory, to map request paths to files
            rows = [{"_line": line, "site": site, "application": app, "virtual_directory": vdir, "physical_path": phys}
                    for site, app, vdir, phys, line in every_vdir]  # fmt: skip
            if rows:
                info.records += len(rows)
                yield SITE_VDIRS, _table(rows)
        modules = unknown_modules(text, info.path)
        if modules:
            rows = [
                {"_line": m.line, "section": m.section, "name": m.name, "image": m.image or None, "type": m.type or None,
                 "scope": m.scope, "web_app": m.web_app or None, "placement": m.placement or None,
                 "reason": m.reason}
                for m in modules
            ]  # fmt: skip
            info.records += len(rows)
            yield MODULES, _table(rows)
        protection = read_extended_protection(text) if "applicationhost" in info.path.lower() else None
        if protection:  # Extended Protection per virtual directory, for the exposure answer (CVE-2024-21410)
            rows = [{"_line": None, "site": v.site, "virtual_directory": v.vdir, "expected": v.expected,
                     "actual": v.actual, "ok": "true" if v.ok else "false"} for v in protection]  # fmt: skip
            info.records += len(rows)
            yield PROTECTION, _table(rows)


def _table(rows: list[dict[str, object]]) -> pa.Table:
    names = list(rows[0])
    arrays = [pa.array([r[n] for r in rows], pa.int64() if n == "_line" else pa.string()) for n in names]
    return pa.Table.from_arrays(arrays, names=names)
