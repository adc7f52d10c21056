"""What the analytics add to a scan: median wall time, reading time, CPU time and peak RSS of RUNS
(default 5) scans each of the same collection with the analytics, without them, and without them and
their extra columns. `make bench` runs it on its 1 GB collection (bench/run.py makes it).

    exhunt synth /tmp/an150 --plant all --target-mb 150
    RUNS=7 python bench/analytics_cost.py /tmp/an150 [VARIANT ...]   # default: full noanalytics nocols

Each scan runs in its own process (peak RSS from wait4); variants alternate so that load spikes on a
shared machine hit all of them. Without `--case`, as users run it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import sys, time, json
variant, col = sys.argv[1], sys.argv[2]
import exhunt.analytics, exhunt.rules.columns as rc
if variant != "full":
    exhunt.analytics.analyse_case = lambda *a, **k: {}
if variant == "nocols":
    rc.ANALYTICS_COLUMNS = {}
from pathlib import Path
import exhunt.scan
read, spent = exhunt.scan.ingest, []
def timed_ingest(*a, **k):
    t0 = time.perf_counter()
    try:
        return read(*a, **k)
    finally:
        spent.append(time.perf_counter() - t0)
exhunt.scan.ingest = timed_ingest
from exhunt.scan import scan, ScanOptions
t = time.perf_counter()
d = scan(Path(col), ScanOptions()).to_dict()
print(json.dumps({"wall": time.perf_counter() - t, "ingest": sum(spent), "analytics": (d.get("incident") or {}).get("seconds"),
                  "records": d["stats"]["records"], "bytes": d["stats"]["bytes_read"]}))
"""

VARIANTS = ("full", "noanalytics", "nocols")


def main(collection: str, variants: tuple[str, ...] = VARIANTS, runs: int = int(os.environ.get("RUNS", "5"))) -> None:
    res: dict[str, list[dict]] = {}
    for _ in range(runs):
        for variant in variants:
            p = subprocess.Popen([sys.executable, "-c", CHILD, variant, collection], stdout=subprocess.PIPE, text=True)
            _, _, ru = os.wait4(p.pid, 0)
            out = json.loads(p.stdout.read())  # type: ignore[union-attr]
            out.update(maxrss_mb=ru.ru_maxrss / 1024, cpu=ru.ru_utime + ru.ru_stime, load=os.getloadavg()[0])
            res.setdefault(variant, []).append(out)
            print(variant, json.dumps(out), flush=True)
    for v, rs in res.items():
        med = {k: round(statistics.median(r[k] for r in rs), 2) for k in ("wall", "ingest", "cpu", "maxrss_mb")}
        med["wall_after_ingest"] = round(statistics.median(r["wall"] - r["ingest"] for r in rs), 2)
        print(v, "median", med, "analytics seconds", [r["analytics"] for r in rs])
    if "full" in res and "nocols" in res:  # what the analytics add: their time and their columns
        full, bare = (statistics.median(r["wall"] for r in res[v]) for v in ("full", "nocols"))
        print(f"full / nocols median wall: {full / bare:.3f}")
        # reading varies most between runs (thread scheduling): compare the stages after it too, and
        # state the analytics' own share of the full scans
        share = statistics.median(r["analytics"] / r["wall"] for r in res["full"])
        after = [statistics.median(r["wall"] - r["ingest"] for r in res[v]) for v in ("full", "nocols")]
        ingest = [statistics.median(r["ingest"] for r in res[v]) for v in ("full", "nocols")]
        print(f"analytics' own share of the full scan's wall time (median): {share:.1%}")
        print(
            f"reading, full / nocols (median): {ingest[0] / ingest[1]:.3f}; after reading: {after[0] - after[1]:+.2f} s"
        )


if __name__ == "__main__":
    main(sys.argv[1], tuple(sys.argv[2:]) or VARIANTS)
