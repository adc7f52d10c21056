"""JSON-lines events read in worker processes against the same scan reading them on threads only.

The events are the Zircolite bench's flat JSON lines (bench/zircolite.py, --copies copies), joined
into --files files of equal size, as a SIEM export of one server comes (often a single file). All
runs are whole `exhunt scan`s with the shared Sigma subset: with worker processes as the scan uses
them (a big file cut in stretches, one per worker), with worker processes that each read a file
whole, and on threads only (the same program told that no collection is worth a pool). Runs
alternate; figures are medians of wall time and of the peak memory of all the scan's processes (PSS).
Usage: python bench/event_processes.py [--copies 30] [--files 6] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import treemem
from zircolite import DATA, SHARED_SIGMA, flat_events

PYTHON = sys.executable
# exhunt with one of procread's thresholds out of reach: no pool at all, or no file cut in stretches
WITHOUT = (
    "import sys, exhunt.procread as p; p.{} = 1 << 62; from exhunt.cli import app; "
    "sys.argv = ['exhunt', *sys.argv[1:]]; app()"
)
THREADS_ONLY, FILES_WHOLE = WITHOUT.format("WORTH_BYTES"), WITHOUT.format("SPLIT_BYTES")


def joined(copies: int, files: int) -> Path:
    """The flat events of `copies` copies in `files` files of about equal size (made once)."""
    out = DATA / f"events-joined-x{copies}-{files}" / "EXCH01" / "EventLogs"
    if out.exists():
        return out.parents[1]
    source, _ = flat_events(copies)
    lines = [ln for p in sorted(source.rglob("*.jsonl")) for ln in p.read_text(encoding="utf-8").splitlines(True)]
    out.mkdir(parents=True)
    per = -(-len(lines) // files)
    for i in range(files):
        (out / f"export-{i}.jsonl").write_text("".join(lines[i * per : (i + 1) * per]), encoding="utf-8")
    return out.parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=30)
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    folder = joined(args.copies, args.files)
    scan = ["scan", str(folder), "--sigma", str(SHARED_SIGMA), "--quiet"]
    commands = {
        "worker processes": [str(Path(PYTHON).parent / "exhunt"), *scan],
        "files whole": [PYTHON, "-c", FILES_WHOLE, *scan],
        "threads only": [PYTHON, "-c", THREADS_ONLY, *scan],
    }
    treemem.run(commands["worker processes"])  # warm: the Sigma cache, the page cache
    runs: dict[str, list[tuple[float, int, int]]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            wall, pss, most, rc, output = treemem.run(cmd)
            if rc not in (0, 1):
                sys.exit(f"bench: {name} failed with {rc}:\n{output[-2000:]}")
            runs[name].append((wall, pss, most))
    size = sum(p.stat().st_size for p in folder.rglob("*.jsonl"))
    print(f"{size / 1e6:.0f} MB of JSON-lines events in {args.files} files; medians of {args.runs} runs")
    print(f"{'read by':18} {'wall s':>7} {'peak MiB (PSS, all)':>20} {'processes':>10}")
    med = {}
    for name, rows in runs.items():
        med[name] = statistics.median(w for w, _, _ in rows), statistics.median(m for _, m, _ in rows)
        print(f"{name:18} {med[name][0]:7.2f} {med[name][1]:20,.0f} {max(n for _, _, n in rows):10}")
    (pw, pm), (ww, _), (tw, tm) = med["worker processes"], med["files whole"], med["threads only"]
    print(f"worker processes: {tw / pw:.2f}x as fast as threads only, {pm / tm:.2f}x the memory")
    print(f"big files cut in stretches: {ww / pw:.2f}x as fast as each file read whole by one worker")


if __name__ == "__main__":
    main()
