"""Map a path inside a collection to the server it came from and its Windows path.

Collections come as a raw disk layout (`C/Program Files/...`), a KAPE-style `HOST/C/...` tree, a
`C%3A` folder, or loose files. The drive is the first path part that is a single letter (optionally
`C:`, `C$`, `C%3A`); the part before it, if any, names the host.
"""

from __future__ import annotations

import re

_DRIVE = re.compile(r"^([A-Za-z])(:|\$|%3A)?$", re.IGNORECASE)
_ROOTS = {"program files", "inetpub", "windows", "programdata", "users", "root", "program files (x86)"}
DEFAULT_INSTALL = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"


def split_host_and_windows_path(relpath: str, default_host: str) -> tuple[str, str | None]:
    """('EXCH01', 'C:\\inetpub\\...') for 'EXCH01/C/inetpub/...'; (default_host, None) if unknown."""
    parts = relpath.split("/")
    for i, part in enumerate(parts[:-1]):
        m = _DRIVE.match(part)
        if m and parts[i + 1].lower() in _ROOTS:
            host = parts[i - 1] if i > 0 else default_host
            return host, f"{m.group(1).upper()}:\\" + "\\".join(parts[i + 1 :])
    for i, part in enumerate(parts[:-1]):
        if part.lower() in _ROOTS and i <= 1:
            host = parts[0] if i == 1 else default_host
            return host, "C:\\" + "\\".join(parts[i:])
    return default_host, None


def install_path_of(win_path: str | None) -> str | None:
    """The Exchange install folder (ending in a backslash) a Windows path lies under, if any."""
    if not win_path:
        return None
    m = re.match(r"^(.*?\\Exchange Server\\V1[45]\\)", win_path, re.IGNORECASE)
    return m.group(1) if m else None
