"""Sigma on events, side by side with Zircolite (Sigma on SQLite) on the same files in the same run.

The events are the synthetic servers' Windows events of bench/event_rules.py (--copies times),
written as flat JSON lines (`Channel`, `EventID`, `Computer`, the event data as top-level keys), the
shape of public security datasets, which both tools read. The rules are a folder of Sigma YAML: the
shared SigmaHQ subset beside the repository by default, or --rules DIR (e.g. SigmaHQ's rules/windows).
Both tools run warm: exhunt from its cache of converted rules, Zircolite from the ruleset its first
run saved (`--save-ruleset`); the first runs, which convert the rules, are printed apart.
Zircolite runs from a checkout in a virtual environment of its own (never exhunt's), given by
--zircolite DIR and --python PATH; the runs alternate and each time is a median. Times come from runs
that nothing watches, and peak memory from one more run of each, sampled.
Usage: python bench/zircolite.py --zircolite DIR --python PY [--copies 10] [--runs 3] [--rules DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import treemem  # a sibling of this script (the benches run as scripts)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "bench-data"
SHARED_SIGMA = HERE.parents[1] / "shared" / "data" / "sigma" / "rules"
EXHUNT = str(Path(sys.executable).parent / "exhunt")


def flat_events(copies: int) -> tuple[Path, int]:
    """The bench events as flat JSON lines (one folder per copy), and how many there are."""
    sys.path.insert(0, str(HERE))
    from event_rules import build

    build(copies)
    source = DATA / f"events-x{copies}"
    out = DATA / f"events-flat-x{copies}"
    count = 0
    for path in sorted(source.rglob("*.ndjson")):
        dest = out / path.relative_to(source).with_suffix(".jsonl")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with path.open(encoding="utf-8") as src, dest.open("w", encoding="utf-8") as sink:
            for line in src:
                if line.strip():
                    sink.write(json.dumps(_flat(json.loads(line))) + "\n")
                    count += 1
    return out, count


def _flat(doc: dict) -> dict:
    """A Winlogbeat document as a flat event: system fields, then the event data beside them."""
    log = doc.get("winlog", {})
    flat = {
        "EventTime": doc.get("@timestamp"), "Channel": log.get("channel"), "EventID": log.get("event_id"),
        "Computer": log.get("computer_name"), "SourceName": log.get("provider_name"),
        "RecordNumber": log.get("record_id"), "Message": doc.get("message"),
    }  # fmt: skip
    flat.update({k: v for k, v in (log.get("event_data") or {}).items() if k not in flat})
    return {k: v for k, v in flat.items() if v is not None}


def timed(cmd: list[str], cwd: Path | None = None) -> float:
    """Wall seconds of one run, with nothing else watching it (sampling the process tree's memory
    every 20 ms took a core's share from exhunt's two threads on a 2-core machine: 7.5 s against
    5.1-5.5 s alone, while single-threaded Zircolite left it a core)."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"bench: {cmd[0]} failed with {done.returncode}:\n{(done.stdout + done.stderr)[-2000:]}")
    return wall


def peak_memory(cmd: list[str], cwd: Path | None = None) -> int:
    """Peak memory of one more run (MiB, PSS summed over the process and its workers)."""
    _, pss, _, rc, output = treemem.run(cmd, cwd=cwd)
    if rc not in (0, 1):
        sys.exit(f"bench: {cmd[0]} failed with {rc}:\n{output[-2000:]}")
    return pss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zircolite", type=Path, required=True, help="a checkout of Zircolite")
    ap.add_argument("--python", type=Path, required=True, help="the Python of Zircolite's own virtual environment")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rules", type=Path, default=SHARED_SIGMA)
    args = ap.parse_args()
    args.python, args.rules = args.python.absolute(), args.rules.absolute()  # Zircolite runs in its own folder
    events, count = flat_events(args.copies)
    out = DATA / "zircolite-out.json"
    zircolite = [
        str(args.python), "zircolite.py", "--events", str(events), "--jsonl", "--fileext", "jsonl", "--ruleset", str(args.rules),
        "--pipeline", "sysmon", "--pipeline", "windows-logsources", "--outfile", str(out),
    ]  # fmt: skip
    exhunt = [EXHUNT, "scan", str(events), "--sigma", str(args.rules), "--quiet", "--force"]
    exhunt += ["--json", str(DATA / "exhunt-out.json")]
    cold_exhunt = timed(exhunt)  # the first run converts the Sigma rules into exhunt's cache
    # Zircolite converts the Sigma rules on every run unless handed a ruleset it saved: the first run
    # saves one, and the timed runs read it, so that both tools run warm
    before = set(args.zircolite.glob("ruleset-*.json"))
    cold_zircolite = timed([*zircolite, "--save-ruleset"], cwd=args.zircolite)
    saved = sorted(set(args.zircolite.glob("ruleset-*.json")) - before, key=lambda p: p.stat().st_mtime)
    if saved:
        zircolite[zircolite.index("--ruleset") + 1] = str(saved[-1])
    print(f"first runs (rules converted): Zircolite {cold_zircolite:.1f} s, exhunt {cold_exhunt:.1f} s")
    runs: dict[str, list[float]] = {"Zircolite": [], "exhunt": []}
    for _ in range(args.runs):
        runs["Zircolite"].append(timed(zircolite, cwd=args.zircolite))
        runs["exhunt"].append(timed(exhunt))
    memory = {"Zircolite": peak_memory(zircolite, cwd=args.zircolite), "exhunt": peak_memory(exhunt)}
    print(
        f"{count:,} events ({sum(p.stat().st_size for p in events.rglob('*.jsonl')) / 1e6:.0f} MB), rules {args.rules}"
    )
    print(
        f"{'tool':10} {'wall s':>8} {'events/s':>10} {'peak MiB':>9}  (memory: PSS of all its processes, a run of its own)"
    )
    med = {}
    for tool, walls in runs.items():
        wall, rss = statistics.median(walls), memory[tool]
        med[tool] = (wall, rss)
        print(f"{tool:10} {wall:8.1f} {count / wall:10,.0f} {rss:9,}")
    ratio = med["Zircolite"][0] / med["exhunt"][0]
    print(f"exhunt events/s = {ratio:.2f}x Zircolite's; memory {med['exhunt'][1] / med['Zircolite'][1]:.2f}x")


if __name__ == "__main__":
    main()
