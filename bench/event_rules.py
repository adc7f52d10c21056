"""Throughput of the event rules on a case database: the event rules that existed before the
intrusion rules, then all of them, timed on the same events (medians of --runs runs, one thread).

The events are the synthetic collection's Windows event logs (the Exchange server's and the DC's)
copied --copies times under different host folders, scanned once into a case file.
Usage: python bench/event_rules.py [--copies 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import duckdb

from exhunt.case import CaseReader, quote
from exhunt.detect import rule_params
from exhunt.families import family
from exhunt.rules.model import load_rules
from exhunt.rules.native import run_rule
from exhunt.scan import ScanOptions, scan
from exhunt.synth import generate
from exhunt.synth.intrusion import RULES as INTRUSION_RULES

DATA = Path(__file__).resolve().parents[1] / "bench-data"


def build(copies: int) -> Path:
    out = DATA / f"events-x{copies}"
    case = out.with_suffix(".duckdb")
    if case.exists():
        return case
    shutil.rmtree(out, ignore_errors=True)
    src = DATA / "events-source"
    shutil.rmtree(src, ignore_errors=True)
    generate(src, seed=5, users=12, days=16, plant=frozenset({"all"}))
    logs = sorted(src.rglob("*.ndjson"))
    for i in range(copies):
        for p in logs:
            dest = out / f"H{i:03d}" / p.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
    scan(out, ScanOptions(case=case))
    return case


def timed(store: CaseReader, rules: list, runs: int) -> float:
    params = rule_params(None)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for rule in rules:
            run_rule(store, rule, params, 5)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    case = build(args.copies)
    con = duckdb.connect(str(case), read_only=True, config={"threads": 1})
    store = CaseReader(con)
    ((n,),) = store.fetch(f"SELECT count(*) FROM {quote(family('events').table)}")
    rules = [r for r in load_rules() if r.source == "events"]
    before = [r for r in rules if r.id not in INTRUSION_RULES]
    for label, subset in (("before (existing event rules)", before), ("after (with the intrusion rules)", rules)):
        s = timed(store, subset, args.runs)
        print(f"{label}: {len(subset)} rules, {n:,} events, {s:.2f} s, {n / s:,.0f} events/s")


if __name__ == "__main__":
    main()
