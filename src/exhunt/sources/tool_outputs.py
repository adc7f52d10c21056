"""File lists written by triage scripts instead of log lines: Test-ProxyLogon.ps1's
`<COMPUTER>-Cve-2021-26858.log` (OAB generator logs holding "Download failed and temporary file") and
`<COMPUTER>-Cve-2021-27065.log` (ECP Server logs holding "Set-...VirtualDirectory"), one Windows path a
line (Microsoft CSS-Exchange, Security/src/Test-ProxyLogon.ps1).

Such a list carries no record to run rules on, but it says that logs with exploitation traces
existed: each listed file is reported as a problem of the collection (collect that log), so a
collection made of these outputs is never taken for a clean one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa

from exhunt.sources.base import ArtifactInfo, Source, text_head

MAX_LISTED = 1000
_LISTS = (
    (re.compile(r"^[A-Za-z]:\\.+\\Logging\\OABGeneratorLog\\.+$", re.IGNORECASE), "CVE-2021-26858",
     "OAB generator log with 'Download failed and temporary file' entries"),
    (re.compile(r"^[A-Za-z]:\\.+\\Logging\\ECP\\Server\\.+\.log$", re.IGNORECASE), "CVE-2021-27065",
     "ECP Server log with 'Set-*VirtualDirectory' entries"),
)  # fmt: skip


def _kind(lines: list[str]) -> tuple[str, str] | None:
    for pattern, cve, what in _LISTS:
        if lines and all(pattern.match(ln) for ln in lines):
            return cve, what
    return None


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


class ToolFileListSource(Source):
    kind = "tool-file-list"

    @classmethod
    def sniff(cls, head: bytes, path: str) -> bool:
        lines = _lines(text_head(head))
        if len(head) >= 8192:
            lines = lines[:-1]
        return _kind(lines) is not None

    def read(self, stream: BinaryIO, info: ArtifactInfo, hasher: object) -> Iterator[tuple[str, pa.Table]]:
        data = stream.read(1 << 20)
        hasher.update(data)  # type: ignore[attr-defined]
        while more := stream.read(1 << 20):
            hasher.update(more)  # type: ignore[attr-defined]
        lines = _lines(text_head(data))
        found = _kind(lines)
        if found is None:
            info.errors.append((None, "a file list of an unknown kind: not read"))
            return
        cve, what = found
        info.log_type = f"Test-ProxyLogon {cve} file list"
        for number, path in enumerate(lines[:MAX_LISTED], 1):
            info.errors.append(
                (
                    number,
                    f"Test-ProxyLogon ({cve}) lists {path}: a {what}; the log itself is not in the collection, collect it",
                )
            )
        if len(lines) > MAX_LISTED:
            info.errors.append((None, f"{len(lines) - MAX_LISTED:,} more listed file(s) not shown"))
        return
        yield  # a generator that yields no rows
