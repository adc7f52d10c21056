"""Hypothesis budgets for the property tests: small in the normal suite, large under `make fuzz`
(FUZZ=1, or FUZZ_EXAMPLES=N). A failing input is also written under fuzz-findings/ for replay."""

from __future__ import annotations

import hashlib
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

FUZZ = os.environ.get("FUZZ", "") not in ("", "0")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000" if FUZZ else "30"))
FINDINGS = Path(__file__).resolve().parents[2] / "fuzz-findings"

settings.register_profile(
    "exhunt",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    derandomize=not FUZZ,  # the normal suite is repeatable; make fuzz explores
    database=None,
)
settings.load_profile("exhunt")


def keep_failure(name: str, data: bytes, check: Callable[[], Any]) -> Any:
    """Run `check`; if it raises, save `data` (and the traceback) under fuzz-findings/ and re-raise."""
    try:
        return check()
    except Exception:
        FINDINGS.mkdir(exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()[:16]
        (FINDINGS / f"{name}-{digest}.bin").write_bytes(data)
        (FINDINGS / f"{name}-{digest}.txt").write_text(traceback.format_exc())
        raise
