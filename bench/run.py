"""make bench: throughput and peak memory of `exhunt scan` (default, `--case`, the foundation rules
alone, one thread) on a ~1 GB synthetic collection, next to ripgrep counting the same literal
indicators over the same files (the I/O floor), and what a second thread gives.

The collection is generated once into bench-data/ and reused while the generator settings are the
same. Timings are medians over --runs runs: these machines are shared and noisy.
Usage: python bench/run.py [--target-mb 1000] [--runs 3] [--keep-case]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import treemem  # a sibling of this script (the benches run as scripts)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench-data"
EXHUNT = [str(Path(sys.executable).parent / "exhunt")]
FOUNDATION = [  # the Test-ProxyLogon parity rules of the foundation issue
    "proxylogon-ssrf-anchor", "proxylogon-ssrf-cookie", "proxylogon-um-deserialization", "proxylogon-oab-file-write",
    "proxylogon-vdir-script-ecp", "proxylogon-vdir-reset", "context-lsass-dump-file", "context-staging-archive",
]  # fmt: skip
INDICATORS = [
    "ServerInfo~", "ResetOABVirtualDirectory", "VirtualDirectory", "InvalidCastException",
    "Download failed and temporary file", "aspnet_client", "python-requests", "ExchangeServicesClient/0.0.0.0",
    "autodiscover.json", "X-Rps-CAT", "comsvcs", "lsass", "/ecp/y.js", "powershell",
]  # fmt: skip


def ensure_collection(target_mb: float, seed: int) -> Path:
    key = {"target_mb": target_mb, "seed": seed, "plant": "all"}
    out = DATA / f"collection-{int(target_mb)}mb-s{seed}"
    stamp = out / ".bench-key.json"
    if stamp.exists() and json.loads(stamp.read_text()) == key:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run(
        [*EXHUNT, "synth", str(out), "--seed", str(seed), "--plant", "all", "--target-mb", str(target_mb)], check=True
    )
    print(f"generated {out} in {time.perf_counter() - t0:.1f} s")
    stamp.write_text(json.dumps(key))
    return out


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def timed(cmd: list[str], ok: tuple[int, ...] = (0, 1)) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run, from GNU time -v."""
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if res.returncode not in ok:
        sys.exit(f"bench: {' '.join(cmd[:3])}... failed with {res.returncode}:\n{res.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", res.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    assert wall and rss, res.stderr[-500:]
    h, m, s = wall.groups()
    return int(h or 0) * 3600 + int(m) * 60 + float(s), int(rss.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-mb", type=float, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep-case", action="store_true")
    args = ap.parse_args()
    for tool in ("rg", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (make bench installs ripgrep and time from Debian)")
    coll = ensure_collection(args.target_mb, args.seed)
    size = tree_bytes(coll)
    case = DATA / "bench-case.duckdb"
    out = DATA / "bench-result.json"
    modes = {
        "scan --case (every column kept)": ["--case", str(case)],
        "scan (default)": [],
        "scan, foundation rules only": [a for r in FOUNDATION for a in ("--rule", r)],
        "scan (default), --threads 1": ["--threads", "1"],
    }
    times: dict[str, list[tuple[float, int]]] = {m: [] for m in modes}
    rgs = []
    rg = ["rg", "-c", "-i", "-F", *[arg for x in INDICATORS for arg in ("-e", x)], str(coll)]
    for _ in range(args.runs):
        for mode, extra in modes.items():
            case.unlink(missing_ok=True)
            times[mode].append(timed([*EXHUNT, "scan", str(coll), *extra, "--json", str(out), "-q"]))
        rgs.append(timed(rg, ok=(0, 1)))
    result = json.loads(out.read_text())  # the last mode's: the default scan with every rule
    records = result["stats"]["records"]
    mb = size / 1e6
    rg_s = statistics.median(s for s, _ in rgs)
    print(
        f"collection  {coll.relative_to(REPO)}: {mb:,.0f} MB, {records:,} records, {result['stats']['artifacts']:,} files"
    )
    print(
        f"            verdict {result['verdict']}, {len(result['findings'])} findings, {len(result['errors'])} errors"
    )
    for mode, runs in times.items():
        med = statistics.median(s for s, _ in runs)
        peak = max(r for _, r in runs) / 1024
        print(f"{mode:34s} median {med:6.2f} s  {mb / med:6.1f} MB/s  {records / med:9,.0f} records/s  "
              f"peak RSS {peak:5,.0f} MB  ({', '.join(f'{s:.1f}' for s, _ in runs)}; {med / rg_s:.0f}x ripgrep)")  # fmt: skip
    print(f"{'rg -c -i -F (' + str(len(INDICATORS)) + ' literals)':34s} median {rg_s:6.2f} s  {mb / rg_s:6.0f} MB/s")
    one, default = (
        statistics.median(s for s, _ in times[m]) for m in ("scan (default), --threads 1", "scan (default)")
    )
    print(f"default scan, {os.cpu_count()} threads against 1: {one / default:.2f}x faster")
    for mode in ("scan (default)", "scan --case (every column kept)"):  # one more run each, for memory only
        case.unlink(missing_ok=True)
        _, pss, procs, code, _ = treemem.run([*EXHUNT, "scan", str(coll), *modes[mode], "--json", str(out), "-q"])
        print(f"{mode:34s} peak PSS of all its processes {pss:,} MiB ({procs} processes at most, exit {code})")
    print(f"cpu: {os.cpu_count()} cores")
    if not args.keep_case:  # the case file and the records folder beside it
        case.unlink(missing_ok=True)
        shutil.rmtree(f"{case}.records", ignore_errors=True)


if __name__ == "__main__":
    main()
