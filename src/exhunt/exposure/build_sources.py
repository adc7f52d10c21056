"""Exchange builds from evidence other than logs: message headers, file listings, HealthChecker output.

Pure text functions; the caller reads files (read-only). All input is attacker-influenced: only
strings shaped like builds are returned, never other text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from exhunt.errors import UsageError
from exhunt.exposure.builds import Build, parse_build

MAX_TEXT = 16 << 20
_BUILD = r"(1[45]\.\d{1,2}\.\d{1,5}\.\d{1,5})"
_SMTP_ID = re.compile(r"Microsoft\s+SMTP\s+Server\b[^;]{0,400}?\bid\s+" + _BUILD + r"\b", re.I | re.S)
_RECEIVED = re.compile(r"^Received:[ \t]*(.*(?:\r?\n[ \t]+.*)*)", re.I | re.M)
_EXSETUP = re.compile(r"exsetup(?:\.exe)?", re.I)
_ANY_BUILD = re.compile(r"(?<![\d.])" + _BUILD + r"(?![\d.])")


@dataclass(frozen=True)
class FoundBuild:
    build: Build
    seen: datetime | None
    source: str


def _text(data: str | bytes) -> str:
    """Bytes as UTF-8, plus the UTF-16LE reading (.msg files keep their headers in UTF-16)."""
    if isinstance(data, str):
        return data[:MAX_TEXT]
    data = data[:MAX_TEXT]
    text = data.decode("utf-8", "replace")
    if b"\x00" in data[:4096] or b"R\x00e\x00c\x00e\x00i\x00v\x00e\x00d\x00" in data:
        text += "\n" + data.decode("utf-16-le", "replace").replace("\x00", "")
    return text


def _parse(text: str) -> Build | None:
    try:
        return parse_build(text)
    except UsageError:
        return None


def builds_from_headers(data: str | bytes) -> list[FoundBuild]:
    """Builds of 'Received: ... with Microsoft SMTP Server ... id 15.2.x.y' headers, with each header's date."""
    text = _text(data)
    found: list[FoundBuild] = []
    for header in _RECEIVED.finditer(text):
        value = re.sub(r"\s+", " ", header.group(1))
        for match in _SMTP_ID.finditer(value):
            build = _parse(match.group(1))
            if build is None:
                continue
            found.append(FoundBuild(build, _header_date(value), "Received: header (Microsoft SMTP Server id)"))
    if not found:  # headers without line structure (e.g. a .msg property stream)
        for match in _SMTP_ID.finditer(text):
            build = _parse(match.group(1))
            if build is not None:
                found.append(FoundBuild(build, None, "message header text (Microsoft SMTP Server id)"))
    return found


def _header_date(value: str) -> datetime | None:
    if ";" not in value:
        return None
    try:
        return parsedate_to_datetime(value.rsplit(";", 1)[1].strip())
    except (TypeError, ValueError, IndexError):
        return None


def builds_from_file_listing(data: str | bytes) -> list[FoundBuild]:
    """ExSetup.exe file version from a collected listing (FileVersionInfo output, CSV, any line naming it).

    FileVersionInfo prints the version before the file name on the same line, CSV exports put it in a
    column: every build-shaped token on a line that names ExSetup counts.
    """
    found = []
    lines = _text(data).splitlines()
    for index, line in enumerate(lines):
        if not _EXSETUP.search(line):
            continue
        candidates = _ANY_BUILD.findall(line)
        if not candidates and index + 1 < len(lines):  # Format-List puts the version on the next lines
            candidates = _ANY_BUILD.findall(" ".join(lines[index + 1 : index + 4]))
        for text in candidates:
            build = _parse(text)
            if build is not None:
                found.append(FoundBuild(build, None, "ExSetup.exe version in a file listing"))
    return found


_HC_KEYS = re.compile(
    r"(?:BuildVersion|FileVersion|ProductVersion|ExchangeSetup|BuildNumber|Build Number|Version)\b"
    r"[^<>\n]{0,40}>?\s*(?:<[^>]{0,80}>\s*){0,4}" + _BUILD,
    re.I,
)


def builds_from_healthchecker(data: str | bytes) -> list[FoundBuild]:
    """The Exchange build HealthChecker recorded (XML export or HTML report).

    Prefers builds next to a version field name; falls back to the most frequent 15.x build in the file.
    """
    text = _text(data)
    keyed = Counter(m.group(1) for m in _HC_KEYS.finditer(text) if m.group(1).startswith("15."))
    counts = keyed or Counter(b for b in _ANY_BUILD.findall(text) if b.startswith("15."))
    found = []
    for text_build, _ in counts.most_common():
        build = _parse(text_build)
        if build is not None:
            found.append(FoundBuild(build, None, "HealthChecker output"))
    return found[:1]
