"""Reading speed of message-only event exports against the structured events of the same content.

One synthetic `--plant all` collection is written three ways: Winlogbeat NDJSON (structured
EventData), the message-only JSON-lines shape and the Sentinel CSV shape (SecurityEvent columns for
the Security log, message-only `Event` rows for the rest). Each form's event files are read with
its exhunt source, one thread, no database (`--runs` runs, median events/s and MB/s of CPU time:
process time, so that other load on a shared machine does not count; wall time is printed too).
Usage: python bench/message_events.py [--users 50] [--days 14] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from exhunt.sources.base import ArtifactInfo, Source
from exhunt.sources.events import JsonLinesEventSource
from exhunt.sources.sentinel_csv import SentinelEventCsvSource
from exhunt.synth import FAMILIES, generate
from exhunt.synth.shape_message_only import write_message_only
from exhunt.synth.shape_sentinel_events import write_sentinel_events


def read_all(files: list[Path], source: type[Source]) -> tuple[int, float, float]:
    events = 0
    started, cpu = time.perf_counter(), time.process_time()
    for path in files:
        info = ArtifactInfo(path.name)
        with path.open("rb") as stream:
            for _ in source().read(stream, info, None):
                pass
        events += info.records
    return events, time.process_time() - cpu, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        generate(base / "structured", seed=3, users=args.users, days=args.days, plant=frozenset(FAMILIES))
        write_message_only(base / "structured", base / "message-only")
        write_sentinel_events(base / "structured", base / "sentinel")
        forms = {
            "structured (Winlogbeat NDJSON)": (sorted((base / "structured").rglob("*.ndjson")), JsonLinesEventSource),
            "message-only (JSON lines)": (sorted((base / "message-only").rglob("*.ndjson")), JsonLinesEventSource),
            "Sentinel CSV": (sorted((base / "sentinel").rglob("*.csv")), SentinelEventCsvSource),
        }
        for name, (files, source) in forms.items():
            size = sum(p.stat().st_size for p in files) / 1e6
            cpu, wall = [], []
            for _ in range(args.runs):
                events, seconds, elapsed = read_all(files, source)
                cpu.append(seconds)
                wall.append(elapsed)
            median = statistics.median(cpu)
            print(f"{name:32} {events:>8,} events {size:7.1f} MB  median CPU {median:6.3f} s "
                  f"(wall {statistics.median(wall):6.3f} s)  {events / median:>9,.0f} events/s  "
                  f"{size / median:6.1f} MB/s")  # fmt: skip


if __name__ == "__main__":
    main()
