"""The per-host task a dask worker runs: one `exhunt.scan.scan` with a one-thread budget, then the hourly
counts from the case file it wrote. Input and output are plain data (picklable, JSON-ready).

A task with `rescan` (the host's new, changed and removed files since its last run) updates the host's
kept case instead of reading everything (exhunt.rescan). A marker file beside the case stands while it
is being updated: a task that finds it (the last update died half-way) scans the host in full."""

from __future__ import annotations

import functools
import os
import time
import traceback
from pathlib import Path
from typing import Any

# Test-only hook: a worker whose task names this host key exits at once, as a worker killed by the OOM
# killer would. Used by the fleet tests to prove a dead worker is reported and the fleet finishes.
TEST_KILL_ENV = "EXHUNT_TEST_KILL_HOST"


def scan_host(task: dict[str, Any], *shards: dict[str, Any]) -> dict[str, Any]:
    """Scan one host collection; never raises for a problem of the evidence (it is returned as `failed`).
    With `shards` (exhunt.fleet.split), the host's files were read by shard tasks: merge, then judge."""
    if os.environ.get(TEST_KILL_ENV) and os.environ[TEST_KILL_ENV] == task["key"]:
        os._exit(70)
    from exhunt.fleet.hourly import hourly_counts
    from exhunt.fleet.state import fingerprint
    from exhunt.scan import ScanOptions, scan

    started, cpu = time.perf_counter(), time.process_time()
    path, case = Path(task["path"]), Path(task["case"])
    out: dict[str, Any] = {"key": task["key"], "worker_pid": os.getpid()}
    marker = case.parent / UPDATING
    try:
        case.parent.mkdir(parents=True, exist_ok=True)
        fp = fingerprint(path, task.get("previous_fingerprint"))  # before reading: a file changed meanwhile is new
        trusted = not marker.exists()  # no earlier update of this case died half-way
        marker.touch()
        if shards:
            from exhunt.fleet.split import merge_shards
            from exhunt.rescan import Rescan

            rescan = Rescan(**merge_shards(case, list(shards), task.get("memory_limit", "512MB")))
        else:
            rescan = _rescan(task, case, fp) if trusted else None
        out["rescan"] = "split" if shards else "incremental" if rescan else "full"
        rules = _rules()
        options = ScanOptions(
            case=case,
            threads=1,
            workers=1,
            rules=rules,
            memory_limit=task.get("memory_limit", "512MB"),
            analytics=True,
            rescan=rescan,
        )
        result = scan(path, options).to_dict()
        if shards:  # what the shard tasks read
            result["stats"]["bytes_read"] = sum(s["bytes_read"] for s in shards)
        marker.unlink()
    except Exception as exc:  # the evidence decides: an unreadable zip is a failed host, not a failed fleet
        return {**out, "status": "failed", "reason": _why(exc), "trace": traceback.format_exc(limit=3)}
    try:  # the verdict stands even when the hourly view cannot be computed; the fleet shows why
        hourly = hourly_counts(case, rules)
    except Exception as exc:
        hourly = []
        out["hourly_error"] = _why(exc)
    return {
        **out,
        "status": "scanned",
        "result": result,
        "hourly": hourly,
        "fingerprint": fp,
        "files_read": sum(s["files_read"] for s in shards) if shards else len(rescan.changed) if rescan else len(fp),
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(time.process_time() - cpu + sum(s["cpu_seconds"] for s in shards), 3),
    }


UPDATING = "case.updating"  # present while a scan writes the host's case


def _rescan(task: dict[str, Any], case: Path, now: dict[str, list]) -> Any:
    """The incremental plan, when there is one and the kept case exists."""
    from exhunt.fleet.state import changes_between
    from exhunt.rescan import Rescan

    plan, before = task.get("rescan"), task.get("previous_fingerprint")
    if not plan or not before or not case.exists():
        return None
    changes = changes_between(before, now)  # from the fingerprint this task stores, not the runner's look
    changed, removed = [c for c in changes if not c.startswith("-")], [c[1:] for c in changes if c.startswith("-")]
    return Rescan(changed, removed, plan.get("problems") or [], plan.get("notes") or [])


@functools.cache
def _rules() -> list:
    """The built-in rules and IOC pack, parsed once per worker process (0.4 s of YAML per host otherwise)."""
    from exhunt.iocs import builtin_iocs, ioc_rules
    from exhunt.rules.model import load_rules

    return load_rules() + ioc_rules(builtin_iocs())


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
