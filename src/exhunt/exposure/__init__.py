"""Exposure: was this Exchange server vulnerable, when, and is it mitigated (builds, logs, config)."""

from __future__ import annotations

from exhunt.exposure.builds import (
    PATCHED,
    PROBABLY_PATCHED,
    UNKNOWN,
    VULNERABLE,
    Assessment,
    Build,
    CveStatus,
    ExposureWindow,
    FamilyStatus,
    Observation,
    assess,
    exposure_windows,
    parse_build,
)
from exhunt.exposure.mitigations import (
    Mitigation,
    SuspiciousVirtualDirectory,
    find_mitigations,
    suspicious_virtual_directories,
)
from exhunt.exposure.probe import ProbeResult, probe_url

__all__ = [
    "PATCHED",
    "PROBABLY_PATCHED",
    "UNKNOWN",
    "VULNERABLE",
    "Assessment",
    "Build",
    "CveStatus",
    "ExposureWindow",
    "FamilyStatus",
    "Mitigation",
    "Observation",
    "ProbeResult",
    "SuspiciousVirtualDirectory",
    "assess",
    "exposure_windows",
    "find_mitigations",
    "parse_build",
    "probe_url",
    "suspicious_virtual_directories",
]
