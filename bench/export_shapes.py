"""Reading web-log export shapes per MB, against the raw IIS and HttpProxy logs of the same content.

One `--plant all` collection is written raw and in each export shape (`exhunt synth --export-shape`);
the files each one reads into the IIS and HttpProxy tables are copied to a folder of their own, and
those folders are read with exhunt's reader on one thread, with no store (the rows are counted and
dropped), `--runs` times in turn. Figures are medians of CPU time (process time, so that other load
on a shared machine counts less), in MB of the files and in records per second; `paired` is the
median of each round's own ratio to the raw read beside it, with the range of those ratios (the
machine's speed drifts between rounds, which a ratio of medians carries).
Usage: python bench/export_shapes.py [--target-mb 150] [--runs 3] [SHAPE ...]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

from exhunt.collection import Skipped, open_collection
from exhunt.families import family
from exhunt.iocs import builtin_iocs, ioc_rules
from exhunt.reader import Item, Reader, bundles
from exhunt.rules.columns import columns_to_keep
from exhunt.rules.model import load_rules
from exhunt.rules.yara import compile_rules

DATA = Path(__file__).resolve().parents[1] / "bench-data" / "export-shapes"
EXHUNT = str(Path(sys.executable).parent / "exhunt")
WEB = (family("iis").table, family("httpproxy").table)
SHAPES = ["raw", "splunk", "elastic", "sentinel", "headerless"]


@cache
def _rules() -> tuple[object, dict[str, set[str] | None]]:
    """The built-in content rules and the columns the default scan keeps, made once for every read."""
    return compile_rules(None), columns_to_keep(load_rules() + ioc_rules(builtin_iocs()))


def _reader(path: Path) -> tuple[object, Reader, list[Item], dict[str, int]]:
    collection = open_collection(path)
    entries = [e for e in collection.entries() if not isinstance(e, Skipped)]
    counts: dict[str, int] = {}

    def sink(table: str, rows: object) -> None:
        counts[table] = counts.get(table, 0) + rows.num_rows  # type: ignore[attr-defined]

    content_rules, keep = _rules()
    reader = Reader(collection, collection.name, content_rules, keep, sink, lambda n: None)
    return collection, reader, [Item(i, e) for i, e in enumerate(entries)], counts


def web_files(shape: str, target_mb: float) -> Path:
    """The shape's files that exhunt reads into the web tables, in a folder of their own."""
    whole, web = DATA / shape, DATA / f"web-{shape}"
    if web.exists():
        return web
    if not whole.exists():
        cmd = [EXHUNT, "synth", str(whole), "--seed", "3", "--plant", "all", "--target-mb", str(target_mb)]
        subprocess.run(cmd + ([] if shape == "raw" else ["--export-shape", shape]), check=True, capture_output=True)
    collection, reader, items, _ = _reader(whole)
    for bundle in bundles(items):
        reader.work(bundle)
    for item in items:
        if reader.infos[item.artifact_id].table in WEB:
            dest = web / item.entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(whole / item.entry.path, dest)
    collection.close()  # type: ignore[attr-defined]
    return web


def read_once(folder: Path) -> tuple[float, int, int]:
    """CPU seconds, bytes and web records of one read of the folder."""
    collection, reader, items, counts = _reader(folder)
    started = time.process_time()
    for bundle in bundles(items):
        reader.work(bundle)
    cpu = time.process_time() - started
    collection.close()  # type: ignore[attr-defined]
    return cpu, sum(i.entry.size for i in items), sum(counts.get(t, 0) for t in WEB)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shapes", nargs="*", default=SHAPES)
    ap.add_argument("--target-mb", type=float, default=150)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    shapes = args.shapes if "raw" in args.shapes else ["raw", *args.shapes]
    folders = {s: web_files(s, args.target_mb) for s in shapes}
    runs: dict[str, list[tuple[float, int, int]]] = {s: [] for s in shapes}
    for _ in range(args.runs):
        for shape in shapes:
            runs[shape].append(read_once(folders[shape]))
    print(
        f"{'shape':11} {'MB':>7} {'records':>9} {'CPU s':>7} {'MB/s':>7} {'k rec/s':>8} {'MB/s vs raw':>12}"
        f" {'paired':>7} {'range':>12}"
    )
    raw_size = runs["raw"][0][1]
    raw_rate = raw_size / 1e6 / statistics.median(c for c, _, _ in runs["raw"])
    for shape in shapes:
        cpu = statistics.median(c for c, _, _ in runs[shape])
        _, size, records = runs[shape][0]
        rate = size / 1e6 / cpu
        # each round's own ratio (the raw read beside it): the machine's speed drifts between rounds
        paired = sorted(
            (size / c) / (raw_size / r) for (c, _, _), (r, _, _) in zip(runs[shape], runs["raw"], strict=True)
        )
        print(
            f"{shape:11} {size / 1e6:7.1f} {records:9,} {cpu:7.2f} {rate:7.1f} {records / cpu / 1e3:8.1f} {rate / raw_rate:11.2f}x"
            f" {statistics.median(paired):6.2f}x {paired[0]:5.2f}-{paired[-1]:.2f}x"
        )


if __name__ == "__main__":
    main()
