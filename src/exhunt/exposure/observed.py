"""Builds an offline collection shows, turned into exposure windows and mitigation notes.

Three witnesses: the `#Version` directive of each Exchange log (the build when the file was
started), HttpProxy's per-row Major/Minor/Build/RevisionVersion columns, and the versioned
`owa/auth/<build>/` folders of the front end (file times tell when a build was installed).
Observations are kept per build and day, then merged by `exposure_windows`.
"""

from __future__ import annotations

from typing import Any

from exhunt.case import CaseReader
from exhunt.exposure.builds import Observation, exposure_windows


def observations(case: CaseReader) -> list[Observation]:
    obs = [Observation(build, lo, hi, witness) for build, lo, hi, witness in case.build_days()]
    return sorted(obs, key=lambda o: (o.first_seen, o.last_seen))


def exposure_report(case: CaseReader) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The exposure windows and the mitigations found, as JSON-ready rows."""
    windows = exposure_windows(observations(case))
    return [w.to_dict() for w in windows], case.mitigations()
