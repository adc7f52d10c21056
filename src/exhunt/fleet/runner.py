"""Run a fleet: discover hosts, skip unchanged ones, scan the rest on dask.distributed, analyse, write.

The default is a `LocalCluster` of worker processes, one thread each, as many as cores; `scheduler=`
sends the very same per-host tasks to an existing cluster (its workers must see ROOT and the output
folder at the same paths). Hosts are submitted largest first, so one big server starts early instead of
holding up the end of the run, and a host larger than `split_bytes` is read by up to one task per worker
thread (contiguous ranges of its files, exhunt.fleet.split) before one task judges it. A host seen before whose collection is a
folder is rescanned incrementally: only its new and changed files are read into its kept case, then its
rules and analytics run again over the whole (a retry, a zip host, another exhunt version and `--full`
read everything). A host whose task fails or whose worker dies
is submitted once more; if it fails again it is reported with the reason and the rest of the fleet
completes. Ctrl-C cancels what is still queued or running and keeps every finished host.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exhunt import __version__
from exhunt.errors import UsageError
from exhunt.fleet.analyse import analyse
from exhunt.fleet.discover import Discovery, HostSpec, discover
from exhunt.fleet.state import changed_files, listing
from exhunt.fleet.store import write_fleet_db
from exhunt.fleet.task import scan_host

Progress = Callable[[dict[str, Any]], None]


@dataclass
class FleetOptions:
    out_dir: Path
    scheduler: str | None = None  # tcp://HOST:PORT of an existing cluster; None: a LocalCluster
    workers: int | None = None  # LocalCluster worker processes; default: one per core
    full: bool = False  # rescan every host, whatever the last run saw
    dashboard: bool = False  # LocalCluster dashboard on a loopback port (needs bokeh)
    memory_limit: str = "512MB"  # DuckDB's share inside each host scan
    split_bytes: int | None = 512 * 1024**2  # a host larger than this is read by several tasks (None: never)


def default_out_dir(root: Path) -> Path:
    """Next to ROOT, never inside it: ROOT-fleet (or MANIFEST-fleet)."""
    root = Path(root).resolve()
    return root.parent / f"{root.stem if root.is_file() else root.name}-fleet"


def host_dir(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / "hosts" / key


def run_fleet(root: Path, options: FleetOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Scan the fleet under `root` and return the fleet result document (also written to out_dir)."""
    started = time.perf_counter()
    disc = discover(root)
    if not disc.hosts:
        raise UsageError(f"{root}: no host collections found (expected ROOT/HOST or ROOT/TENANT/HOST)")
    out_dir = Path(options.out_dir).resolve()
    _check_out_dir(out_dir, root, disc)
    (out_dir / "hosts").mkdir(parents=True, exist_ok=True)

    records: dict[str, dict[str, Any]] = {}
    todo: list[tuple[HostSpec, dict[str, Any] | None, int]] = []
    for spec in disc.hosts:
        prev = _load_record(out_dir, spec)
        size = sum(s for s, _ in listing(spec.path).values()) if spec.path.exists() else 0
        changes = _changes(spec, prev)
        if not options.full and prev is not None and changes == []:
            records[spec.key] = {**prev, "status": "reused", "scanned_this_run": False}
        else:
            plan = None if options.full else _rescan_plan(spec, prev, changes)
            todo.append((spec, {**prev, "rescan_plan": plan} if prev else None, size))

    interrupted = False
    if todo:
        interrupted = _scan_all(todo, options, out_dir, records, progress, started)
    for spec in disc.hosts:
        if spec.key not in records:
            records[spec.key] = _failed(spec, "not scanned: the run was interrupted", 0)
    doc = _document(root, disc, records, options, started, interrupted)
    (out_dir / "fleet.json").write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    write_fleet_db(out_dir / "fleet.duckdb", doc, records)
    return doc


def _check_out_dir(out_dir: Path, root: Path, disc: Discovery) -> None:
    roots = [Path(root).resolve()] if Path(root).is_dir() else []
    roots += [h.path.resolve() for h in disc.hosts if h.path.is_dir()]
    for r in roots:
        if out_dir == r or r in out_dir.parents:
            raise UsageError(f"--out-dir {out_dir}: must be outside the evidence ({r})")


def _load_record(out_dir: Path, spec: HostSpec) -> dict[str, Any] | None:
    p = host_dir(out_dir, spec.key) / "host.json"
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if rec.get("path") == str(spec.path) and rec.get("status") in ("scanned", "reused") else None


def _changes(spec: HostSpec, prev: dict[str, Any] | None) -> list[str] | None:
    """The host's files new, changed or gone ('-path') since `prev`; None when there is nothing to compare."""
    fp = (prev or {}).get("fingerprint")
    if not fp or not spec.path.exists():
        return None
    return changed_files(spec.path, fp)


def _rescan_plan(spec: HostSpec, prev: dict[str, Any] | None, changes: list[str] | None) -> dict[str, Any] | None:
    """What an incremental rescan of a folder host needs, or None where only a full scan is right."""
    result = (prev or {}).get("result") or {}
    if changes is None or not spec.path.is_dir() or result.get("exhunt_version") != __version__:
        return None
    return {
        "changed": [c for c in changes if not c.startswith("-")],
        "removed": [c[1:] for c in changes if c.startswith("-")],
        "problems": result.get("errors") or [],
        "notes": result.get("notes") or [],
    }


def _failed(spec: HostSpec, reason: str, attempts: int) -> dict[str, Any]:
    return {
        "key": spec.key, "tenant": spec.tenant, "name": spec.name, "path": str(spec.path), "status": "failed",
        "reason": reason, "attempts": attempts, "scanned_this_run": attempts > 0, "result": None, "hourly": [],
        "fingerprint": None,
    }  # fmt: skip


def _client(options: FleetOptions) -> tuple[Any, Any, int]:
    """A dask Client on the given scheduler or on a new LocalCluster; (client, cluster or None, threads)."""
    import dask
    from distributed import Client, LocalCluster

    if options.scheduler:
        client = Client(options.scheduler, timeout="20s")
        threads = sum(client.nthreads().values()) or 1
        return client, None, threads
    n = options.workers or os.cpu_count() or 1
    # one host task on a worker at a time (saturation 1.0 with one thread): with the default 1.1 a worker
    # also holds the next task, and a worker killed by one host failed the host queued behind it too
    settings = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,
        "distributed.worker.daemon": False,
    }
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0" if options.dashboard else None,
            # the scheduler's HTTP server (health, metrics) starts even without a dashboard: loopback only,
            # on a free port, never 0.0.0.0:8787
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0", "dashboard": options.dashboard},
            silence_logs=logging.CRITICAL,
        )
        client = Client(cluster)
    return client, cluster, n


def _scan_all(
    todo: list[tuple[HostSpec, dict[str, Any] | None, int]],
    options: FleetOptions,
    out_dir: Path,
    records: dict[str, dict[str, Any]],
    progress: Progress | None,
    started: float,
) -> bool:
    """Scan `todo` on the cluster into `records`; True when interrupted by Ctrl-C."""
    from distributed import as_completed

    client, cluster, threads = _client(options)
    specs = {spec.key: spec for spec, _, _ in todo}
    tasks = {}
    for spec, prev, _ in todo:
        case = host_dir(out_dir, spec.key) / "case.duckdb"
        tasks[spec.key] = {
            "key": spec.key, "path": str(spec.path), "case": str(case), "memory_limit": options.memory_limit,
            "previous_fingerprint": (prev or {}).get("fingerprint"), "rescan": (prev or {}).get("rescan_plan"),
        }  # fmt: skip
    attempts: dict[str, int] = {}
    shard_futures: list[Any] = []  # a large host's shard tasks (exhunt.fleet.split)
    state = {"total": len(todo), "done": 0, "failed": 0, "bytes": 0, "dashboard": _dashboard(client, cluster)}

    def submit(key: str, size: int) -> Any:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] > 1:  # a retry reads the host in full, in one task: its kept case may be half-updated
            tasks[key]["rescan"] = None
        stamp = f"{key}-{attempts[key]}-{time.time_ns()}"
        shards = _shards(client, tasks[key], specs[key], size, options, threads, stamp) if attempts[key] == 1 else []
        shard_futures.extend(shards)
        return client.submit(scan_host, tasks[key], *shards, key=f"exhunt-scan-{stamp}", pure=False, retries=0,
                             priority=size)  # fmt: skip

    sizes = {spec.key: size for spec, _, size in todo}
    live: dict[str, tuple[Any, str]] = {}  # dask key -> (future, host key)
    interrupted = False
    try:
        for spec, _, size in sorted(todo, key=lambda t: -t[2]):
            f = submit(spec.key, size)
            live[f.key] = (f, spec.key)
        ac = as_completed([f for f, _ in live.values()])
        _report(progress, state, started, threads, state["total"])
        for fut in ac:
            key = live.pop(fut.key)[1]
            out = _outcome(fut)
            if out["status"] != "scanned" and attempts[key] < 2:
                nf = submit(key, sizes[key])
                live[nf.key] = (nf, key)
                ac.add(nf)
                continue
            spec = specs[key]
            if out["status"] == "scanned":
                records[key] = _save_scanned(out_dir, spec, out, attempts[key])
                state["done"] += 1
                state["bytes"] += int(out["result"]["stats"]["bytes_read"])
            else:
                records[key] = _failed(spec, out["reason"], attempts[key])
                _write_record(out_dir, records[key])
                state["failed"] += 1
            _report(progress, state, started, threads, state["total"] - state["done"] - state["failed"])
    except KeyboardInterrupt:
        interrupted = True
        client.cancel([f for f, _ in live.values()] + shard_futures, force=True)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return interrupted


def _shards(
    client: Any, task: dict[str, Any], spec: HostSpec, size: int, options: FleetOptions, threads: int, stamp: str
) -> list[Any]:
    """Shard tasks for a large folder host scanned in full (none for a small, zip or incremental one)."""
    from exhunt.fleet.split import host_files, read_shard, shard_ranges

    if task.get("rescan") or not options.split_bytes or size <= options.split_bytes or threads < 2:
        return []
    if not spec.path.is_dir():
        return []
    parts = min(threads, max(2, -(-size // options.split_bytes)))
    ranges = shard_ranges(host_files(spec.path), parts)
    if len(ranges) < 2:
        return []
    folder = Path(task["case"]).parent / "shards"
    return [
        client.submit(read_shard, {"path": task["path"], "shard": str(folder / f"{i}.duckdb"), "range": r,
                                   "memory_limit": task["memory_limit"]},
                      key=f"exhunt-shard-{i}-{stamp}", pure=False, retries=0, priority=size)
        for i, r in enumerate(ranges)
    ]  # fmt: skip


def _outcome(fut: Any) -> dict[str, Any]:
    """The task's own answer, or a failure naming how the worker or task died."""
    if fut.status == "finished":
        return fut.result()
    try:
        exc = fut.exception()
    except Exception as e:  # cancelled or lost
        exc = e
    name = type(exc).__name__
    if name == "KilledWorker":
        return {"status": "failed", "reason": "the worker process died while scanning this host (killed or crashed)"}
    return {"status": "failed", "reason": f"{name}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


def _dashboard(client: Any, cluster: Any) -> str | None:
    try:
        link = (cluster or client).dashboard_link
    except Exception:
        return None
    try:
        import bokeh  # noqa: F401  (the dashboard only exists with bokeh)
    except ImportError:
        return None
    return link


def _report(progress: Progress | None, state: dict[str, Any], started: float, threads: int, outstanding: int) -> None:
    if progress is None:
        return
    elapsed = max(time.perf_counter() - started, 1e-6)
    progress({
        "total": state["total"], "done": state["done"], "failed": state["failed"],
        "running": min(outstanding, threads), "queued": max(0, outstanding - threads),
        "bytes": state["bytes"], "mb_per_s": state["bytes"] / 1e6 / elapsed, "elapsed": elapsed,
        "dashboard": state["dashboard"],
    })  # fmt: skip


def _save_scanned(out_dir: Path, spec: HostSpec, out: dict[str, Any], attempts: int) -> dict[str, Any]:
    d = host_dir(out_dir, spec.key)
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(out["result"], indent=1, default=str) + "\n", encoding="utf-8")
    rec = {
        "key": spec.key, "tenant": spec.tenant, "name": spec.name, "path": str(spec.path), "status": "scanned",
        "reason": None, "attempts": attempts, "scanned_this_run": True, "result": out["result"],
        "hourly": out["hourly"], "hourly_error": out.get("hourly_error"), "fingerprint": out["fingerprint"], "seconds": out.get("seconds"),
        "rescan": out.get("rescan"), "files_read": out.get("files_read"), "cpu_seconds": out.get("cpu_seconds"),
    }  # fmt: skip
    _write_record(out_dir, rec)
    return rec


def _write_record(out_dir: Path, rec: dict[str, Any]) -> None:
    d = host_dir(out_dir, rec["key"])
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "host.json.tmp"
    tmp.write_text(json.dumps(rec, default=str) + "\n", encoding="utf-8")
    tmp.replace(d / "host.json")


def _document(
    root: Path, disc: Discovery, records: dict[str, dict[str, Any]], options: FleetOptions, started: float,
    interrupted: bool,
) -> dict[str, Any]:  # fmt: skip
    fleet = analyse(disc, records)
    seconds = time.perf_counter() - started
    scanned = [r for r in records.values() if r["status"] == "scanned" and r.get("scanned_this_run")]
    bytes_read = sum(int(r["result"]["stats"]["bytes_read"]) for r in scanned)
    exit_code = max((h["exit_code"] for h in fleet["hosts"]), default=3)
    if interrupted:
        exit_code = max(exit_code, 3)
    return {
        "schema": "exhunt.fleet",
        "schema_version": "1.0",
        "exhunt_version": __version__,
        "root": str(root),
        "out_dir": str(Path(options.out_dir).resolve()),
        "verdict": fleet.pop("verdict"),
        "exit_code": exit_code,
        "interrupted": interrupted,
        "stats": {
            "hosts": len(records),
            "scanned": len(scanned),
            "reused": sum(r["status"] == "reused" for r in records.values()),
            "incremental": sum(r.get("rescan") == "incremental" for r in scanned),
            "files_read": sum(r.get("files_read") or 0 for r in scanned),
            "cpu_seconds": round(sum(r.get("cpu_seconds") or 0 for r in scanned), 3),  # in the host tasks
            "failed": sum(r["status"] == "failed" for r in records.values()),
            "bytes_read": bytes_read,
            "seconds": round(seconds, 3),
            "hosts_per_minute": round(len(scanned) / seconds * 60, 2) if seconds else None,
            "mb_per_s": round(bytes_read / 1e6 / seconds, 2) if seconds else None,
            "cluster": options.scheduler or f"LocalCluster({options.workers or os.cpu_count()} processes x 1 thread)",
        },
        "fleet": fleet,
    }
