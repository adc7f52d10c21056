"""Sigma rules on events: loading (cold and from the cache) and matching, CPU seconds and events/s.

The events are bench/event_rules.py's case (the synthetic servers' Windows events, --copies times).
The rules are the shared SigmaHQ subset beside the repository and, with --rules DIR, any other
Sigma folder (e.g. a checkout of SigmaHQ's rules/windows). CPU seconds are quoted besides wall time
because shared machines stretch wall time; both are medians of --runs.
Usage: python bench/sigma_events.py [--copies 40] [--runs 3] [--rules DIR ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from exhunt.case import CaseReader
from exhunt.detect import detect, rule_params
from exhunt.families import family

SHARED_SIGMA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sigma"


def _timed(fn, runs: int) -> tuple[float, float, object]:
    walls, cpus, out = [], [], None
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    from event_rules import build  # the same events as the event-rule bench

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rules", type=Path, action="append", default=[])
    args = ap.parse_args()
    case = build(args.copies)
    store = CaseReader.open_saved(case, threads=1)
    ((n,),) = store.fetch(f"SELECT count(*) FROM {family('events').table}")
    folders = ([SHARED_SIGMA] if SHARED_SIGMA.exists() else []) + args.rules
    from exhunt.rules.sigma_load import load_sigma

    for folder in folders:
        os.environ["EXHUNT_CACHE"] = tempfile.mkdtemp(prefix="exhunt-bench-cache-")
        cold_w, cold_c, load = _timed(lambda f=folder: load_sigma([f]), 1)
        warm_w, warm_c, load = _timed(lambda f=folder: load_sigma([f]), args.runs)
        rules = [r for r in load.rules if r.source == "events"]  # type: ignore[union-attr]
        wall, cpu, found = _timed(lambda r=rules: detect(store, r, rule_params(None), 5, 1), args.runs)
        print(f"{folder}: {len(rules)} event rules, {n:,} events")
        print(f"  load   cold {cold_w:6.2f} s wall {cold_c:6.2f} s CPU   warm {warm_w:6.2f} s wall {warm_c:6.2f} s CPU")
        print(f"  match  {wall:6.2f} s wall {cpu:6.2f} s CPU   {n / wall:9,.0f} events/s wall  {n / cpu:9,.0f} events/s CPU"
              f"   {len(found[0])} hit groups, {len(found[1])} rules failed")  # type: ignore[index]  # fmt: skip


if __name__ == "__main__":
    main()
