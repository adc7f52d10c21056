"""What the registry says about the server: Exchange install path and build, host name, event log folder.

Read from the SOFTWARE and SYSTEM hive files with libregf (the `images` extra), or, on a live
Windows server, from `winreg` (see live.py). Every value that cannot be read becomes a note; the
caller falls back to the default paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exhunt.images.fs import Filesystem, resolve

SETUP_KEY = "Microsoft\\ExchangeServer\\v15\\Setup"
SOFTWARE_HIVE = "Windows\\System32\\config\\SOFTWARE"
SYSTEM_HIVE = "Windows\\System32\\config\\SYSTEM"


@dataclass
class RegistryFacts:
    install_path: str | None = None  # e.g. "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
    build: str | None = None  # e.g. "15.1.2106.2"
    computer_name: str | None = None
    event_log_files: list[str] = field(
        default_factory=list
    )  # e.g. "%SystemRoot%\\System32\\Winevt\\Logs\\Application.evtx"
    notes: list[str] = field(default_factory=list)


def setup_facts(values: dict[str, Any]) -> tuple[str | None, str | None]:
    """(install path, build) from the values of the Exchange `Setup` key."""
    path = values.get("MsiInstallPath")
    install = str(path).rstrip("\\") + "\\" if isinstance(path, str) and path.strip() else None
    parts = [values.get(k) for k in ("MsiProductMajor", "MsiProductMinor", "MsiBuildMajor", "MsiBuildMinor")]
    build = ".".join(str(p) for p in parts) if all(isinstance(p, int) for p in parts) else None
    return install, build


def read_hives(fs: Filesystem) -> RegistryFacts:
    """Read the SOFTWARE and SYSTEM hives of the volume holding Windows."""
    facts = RegistryFacts()
    try:
        import pyregf
    except ImportError:
        facts.notes.append(
            "registry not read: the libregf binding is missing (pip install 'exhunt[images]'); default paths used"
        )
        return facts
    software = _open_hive(pyregf, fs, SOFTWARE_HIVE, facts)
    if software is not None:
        key = _key(software, SETUP_KEY)
        if key is None:
            facts.notes.append(f"SOFTWARE hive has no {SETUP_KEY} key: Exchange install path not in the registry")
        else:
            facts.install_path, facts.build = setup_facts(_values(key))
            if facts.install_path is None:
                facts.notes.append(f"{SETUP_KEY} has no MsiInstallPath: default install path used")
    system = _open_hive(pyregf, fs, SYSTEM_HIVE, facts)
    if system is not None:
        control_set = _current_control_set(system)
        name_key = _key(system, f"{control_set}\\Control\\ComputerName\\ComputerName")
        if name_key is not None:
            name = _values(name_key).get("ComputerName")
            facts.computer_name = name if isinstance(name, str) and name.strip() else None
        for channel in ("Application", "Security", "System"):
            key = _key(system, f"{control_set}\\Services\\EventLog\\{channel}")
            value = _values(key).get("File") if key is not None else None
            if isinstance(value, str) and value.strip():
                facts.event_log_files.append(value)
    return facts


def _open_hive(pyregf: Any, fs: Filesystem, win_path: str, facts: RegistryFacts) -> Any:
    node = resolve(fs, win_path)
    if node is None or node.is_dir:
        facts.notes.append(f"registry hive {win_path} is absent: default paths used")
        return None
    try:
        stream = fs.open(node)
        hive = pyregf.file()
        hive.open_file_object(stream)
        hive.get_root_key()
        return hive
    except (OSError, ValueError) as exc:
        facts.notes.append(f"registry hive {win_path} is unreadable ({_reason(exc)}): default paths used")
        return None


def _key(hive: Any, path: str) -> Any:
    try:
        return hive.get_key_by_path(path)
    except (OSError, ValueError):
        return None


def _values(key: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        for value in key.values:
            try:
                if value.type in (1, 2):  # REG_SZ, REG_EXPAND_SZ
                    out[value.name] = value.get_data_as_string()
                elif value.type in (4, 11):  # REG_DWORD, REG_QWORD
                    out[value.name] = value.get_data_as_integer()
            except (OSError, ValueError):
                continue
    except (OSError, ValueError):
        pass
    return out


def _current_control_set(system: Any) -> str:
    select = _key(system, "Select")
    current = _values(select).get("Current") if select is not None else None
    return f"ControlSet{current:03d}" if isinstance(current, int) and 0 < current < 1000 else "ControlSet001"


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1].strip() if lines else type(exc).__name__
