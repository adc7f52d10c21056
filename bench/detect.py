"""Rule matching alone on a saved case: every built-in rule through `detect` (the scan's own thread
pool, --threads threads), medians of --runs runs after a warm-up, and the slowest rules timed one by
one on one thread.

Make the case once with `exhunt scan DIR --case CASE.duckdb`.
Usage: python bench/detect.py CASE.duckdb [--threads 2] [--runs 5] [--top 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from exhunt.case import CaseReader
from exhunt.detect import detect, rule_params
from exhunt.rules.model import load_rules
from exhunt.rules.native import run_rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    rules, params = load_rules(), rule_params(None)
    case = CaseReader.open_saved(args.case, threads=args.threads)
    detect(case, rules, params, 5, args.threads)  # warm-up: DuckDB's caches, the rules' compiled forms
    walls = []
    for _ in range(args.runs):
        started = time.perf_counter()
        raw, problems = detect(case, rules, params, 5, args.threads)
        walls.append(time.perf_counter() - started)
    print(f"detect, {len(rules)} rules, {args.threads} thread(s): median {statistics.median(walls):.3f} s "
          f"(min {min(walls):.3f}), {len(raw)} hit groups, {len(problems)} rule failures")  # fmt: skip
    case.close()
    one = CaseReader.open_saved(args.case, threads=1)
    alone = []
    for rule in rules:
        started = time.perf_counter()
        run_rule(one, rule, params, 5)
        alone.append((time.perf_counter() - started, rule.id))
    print(f"each rule alone, one thread: {sum(t for t, _ in alone):.3f} s in all; the slowest:")
    for seconds, rule_id in sorted(alone, reverse=True)[: args.top]:
        print(f"  {seconds:7.3f} s  {rule_id}")
    one.close()


if __name__ == "__main__":
    main()
