"""make bench-fleet: fleet throughput on dask.distributed with 1 and 2 local workers, and the
incremental rerun after one new day of logs on 3 hosts against a full rerun of the same grown fleet
(files read, bytes read and CPU seconds of the host tasks: the machine may be shared, so CPU seconds
and their ratio are the numbers to quote, not wall time).

The fleet (50 tiny synthetic servers, 3 tenants) is generated once into bench-data/ and reused.
Each timed run is `exhunt fleet --full` into a fresh output folder; hosts/minute and MB/s are the
fleet's own stats (bytes of evidence scanned / wall time, cluster start included).
Usage: python bench/fleet.py [--hosts 50] [--users 3] [--days 3] [--incremental-only] [--one-host-mb 150]
(--one-host-mb: also one server of that size scanned in-process, its incremental rescan after one new
day of IIS logs against a full scan of the grown collection: where reading, not judging, dominates.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from exhunt.fleet.discover import discover  # noqa: E402
from exhunt.fleet.runner import FleetOptions, run_fleet  # noqa: E402
from exhunt.synth.fleet import generate_fleet  # noqa: E402

DATA = REPO / "bench-data"


def ensure_fleet(hosts: int, users: int, days: int) -> Path:
    root = DATA / f"fleet-{hosts}h-u{users}-d{days}"
    stamp = DATA / f"fleet-{hosts}h-u{users}-d{days}.json"
    key = {"hosts": hosts, "users": users, "days": days, "seed": 5}
    if root.exists() and stamp.exists() and json.loads(stamp.read_text()) == key:
        return root
    shutil.rmtree(root, ignore_errors=True)
    print(f"generating {hosts} hosts into {root} ...", flush=True)
    generate_fleet(root, hosts=hosts, tenants=3, seed=5, users=users, days=days)
    stamp.write_text(json.dumps(key))
    return root


def run(root: Path, out: Path, workers: int, full: bool) -> dict:
    started = time.perf_counter()
    doc = run_fleet(root, FleetOptions(out_dir=out, workers=workers, full=full))
    stats = doc["stats"]
    stats["wall"] = round(time.perf_counter() - started, 2)
    return stats


def one_host(mb: int, work: Path) -> dict:
    """Full scan, one new IIS day, incremental rescan vs full scan of the grown host (CPU s in this process)."""
    from exhunt.fleet.state import changed_files, fingerprint
    from exhunt.fleet.task import _rules
    from exhunt.rescan import Rescan
    from exhunt.scan import ScanOptions, scan
    from exhunt.synth import generate

    root = work / f"one-host-{mb}mb"
    generate(root, seed=3, users=12, days=4, host="EXCH01", target_mb=mb)
    host, rules = root / "EXCH01", _rules()

    def timed(case: str, rescan: Rescan | None = None) -> tuple[dict, float]:
        cpu = time.process_time()
        opts = ScanOptions(case=work / case, threads=1, workers=1, rules=rules, analytics=True, rescan=rescan)
        return scan(host, opts).to_dict(), time.process_time() - cpu

    first, _ = timed("one-kept.duckdb")
    fp = fingerprint(host)
    w3 = host / "C" / "inetpub" / "logs" / "LogFiles" / "W3SVC1"
    last = sorted(w3.glob("u_ex*.log"))[-1]
    (w3 / "u_ex210301.log").write_text(last.read_text().replace("2021-02-27", "2021-03-01"))
    inc, inc_cpu = timed("one-kept.duckdb", Rescan(changed_files(host, fp), [], first["errors"], first["notes"]))
    full, full_cpu = timed("one-full.duckdb")
    same = json.dumps(inc["findings"], default=str) == json.dumps(full["findings"], default=str)
    print(f"one host of {full['stats']['bytes_read'] / 1e6:.0f} MB ({full['stats']['artifacts']} files): incremental "
          f"{inc['stats']['bytes_read'] / 1e6:.2f} MB read, {inc_cpu:.2f} CPU s; full {full_cpu:.2f} CPU s; "
          f"ratio {inc_cpu / full_cpu:.3f}; same findings: {same}", flush=True)  # fmt: skip
    return {"mb": mb, "incremental_cpu": inc_cpu, "full_cpu": full_cpu, "same_findings": same}


def _records(out: Path) -> dict[str, dict]:
    """Each host's record of a fleet output folder, with the bytes its last scan read."""
    recs = {}
    for p in (out / "hosts").rglob("host.json"):
        r = json.loads(p.read_text())
        r["bytes_read"] = ((r.get("result") or {}).get("stats") or {}).get("bytes_read", 0)
        recs[r["key"]] = r
    return recs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--incremental-only", action="store_true", help="skip the 1- and 2-worker throughput runs")
    ap.add_argument("--runs", type=int, default=2, help="throughput runs per worker count, alternated; medians")
    ap.add_argument("--throughput-only", action="store_true", help="skip the incremental rerun")
    ap.add_argument("--one-host-mb", type=int, default=0, help="also measure one server of this size in-process")
    args = ap.parse_args()
    root = ensure_fleet(args.hosts, args.users, args.days)
    work = DATA / "fleet-bench-work"
    shutil.rmtree(work, ignore_errors=True)
    runs: dict[int, list[dict]] = {}
    for i in range(0 if args.incremental_only else args.runs):  # alternated, so a load spike hits both counts
        for workers in (1, 2):
            s = run(root, work / f"out-{workers}-{i}", workers, full=True)
            runs.setdefault(workers, []).append(s)
            print(f"{workers} worker(s): {s['scanned']} hosts in {s['seconds']:.1f} s = {s['hosts_per_minute']:.1f} "
                  f"hosts/min, {s['mb_per_s']:.1f} MB/s", flush=True)  # fmt: skip
    results = {
        w: min(rs, key=lambda r: abs(r["seconds"] - statistics.median(x["seconds"] for x in rs)))
        for w, rs in runs.items()
    }
    ratio = results[1]["seconds"] / results[2]["seconds"] if results else None
    if ratio:
        print(f"1 -> 2 workers (median of {args.runs} runs each): {ratio:.2f}x", flush=True)
    if args.throughput_only:
        return
    # incremental: a copy of the fleet, one new day of front-end IIS logs on 3 hosts
    copy = work / "fleet-copy"
    shutil.copytree(root, copy)
    inc_out = work / "out-inc"
    run(copy, inc_out, 2, full=True)
    for spec in discover(copy).hosts[:3]:
        w3 = spec.path / "C" / "inetpub" / "logs" / "LogFiles" / "W3SVC1"
        last = sorted(w3.glob("u_ex*.log"))[-1]
        (w3 / "u_ex210227.log").write_text(last.read_text().replace("2021-02-26", "2021-02-27"))
    s = run(copy, inc_out, 2, full=False)
    f = run(copy, work / "out-grown-full", 2, full=True)
    for label, st in (("incremental", s), ("full", f)):
        print(f"{label} rerun of the grown fleet (3 of {args.hosts} hosts changed, 2 workers): {st['scanned']} "
              f"scanned ({st['incremental']} incrementally), {st['reused']} reused, {st['files_read']} files and "
              f"{st['bytes_read'] / 1e6:.1f} MB read, {st['cpu_seconds']:.1f} CPU s in host tasks, "
              f"{st['seconds']:.1f} s wall", flush=True)  # fmt: skip
    keys = [k for k, r in _records(inc_out).items() if r.get("rescan") == "incremental"]
    same = {k: r for k, r in _records(work / "out-grown-full").items() if k in keys}
    hosts_full = {
        x: round(sum(r.get(x) or 0 for r in same.values()), 3) for x in ("files_read", "bytes_read", "cpu_seconds")
    }
    print(f"the {len(keys)} changed hosts alone, full scan: {hosts_full['files_read']} files, "
          f"{hosts_full['bytes_read'] / 1e6:.1f} MB, {hosts_full['cpu_seconds']:.1f} CPU s", flush=True)  # fmt: skip
    print(f"incremental / full (changed hosts): files {s['files_read'] / max(hosts_full['files_read'], 1):.3f}, "
          f"bytes {s['bytes_read'] / max(hosts_full['bytes_read'], 1):.3f}, "
          f"CPU s {s['cpu_seconds'] / max(hosts_full['cpu_seconds'], 1e-9):.3f}; "
          f"against the whole grown fleet's full rerun: CPU s {s['cpu_seconds'] / max(f['cpu_seconds'], 1e-9):.3f}",
          flush=True)  # fmt: skip
    single = one_host(args.one_host_mb, work) if args.one_host_mb else None
    (work / "results.json").write_text(
        json.dumps(
            {
                "runs": results,
                "incremental": s,
                "grown_full": f,
                "changed_hosts_full": hosts_full,
                "one_host": single,
                "speedup_1_to_2": ratio,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
