"""make bench, disk images: `exhunt scan` of a synthetic server's tree as a folder and as an NTFS VHDX.

The image is built once into bench-data/ with ntfs-3g and qemu-img (root and FUSE needed; skipped
with the reason otherwise). Prints median wall and CPU seconds and the image/folder ratio (the
issue's bound: within 1.5x).
Usage: python bench/images.py [--target-mb 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.images.build import convert, missing_tools, ntfs_volume, reference_tree  # noqa: E402

DATA = REPO / "bench-data"
EXHUNT = str(Path(sys.executable).parent / "exhunt")


def build(target_mb: float, seed: int) -> tuple[Path, Path]:
    out = DATA / f"image-{int(target_mb)}mb-s{seed}"
    stamp = out / ".bench-key.json"
    key = {"target_mb": target_mb, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == key:
        return out / "ref", out / "EXCH01.vhdx"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    synth = out / "synth"
    subprocess.run(
        [EXHUNT, "synth", str(synth), "--seed", str(seed), "--plant", "all", "--target-mb", str(target_mb)], check=True
    )
    host = reference_tree(synth, out / "ref")
    shutil.rmtree(synth)
    size = sum(p.stat().st_size for p in (host / "C").rglob("*") if p.is_file())
    volume = ntfs_volume(host / "C", out / "volume.raw", int(size / 2**20 * 1.3) + 64)
    convert(volume, out / "EXCH01.vhdx", "vhdx")
    volume.unlink()
    stamp.write_text(json.dumps(key))
    return out / "ref", out / "EXCH01.vhdx"


def run(path: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run([EXHUNT, "scan", str(path), "-q"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode not in (0, 1, 3):
        raise SystemExit(f"scan of {path} failed ({res.returncode}): {res.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-mb", type=float, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    why = missing_tools()
    if why:
        print(f"bench images: skipped: {why}")
        return
    folder, image = build(args.target_mb, args.seed)
    results = {}
    for name, path in (("folder", folder), ("vhdx", image)):
        runs = [run(path) for _ in range(args.runs)]
        results[name] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        print(f"{name:7} {path}: median {results[name][0]:.2f} s wall, {results[name][1]:.2f} s CPU")
    print(
        f"image/folder: {results['vhdx'][0] / results['folder'][0]:.2f}x wall, "
        f"{results['vhdx'][1] / results['folder'][1]:.2f}x CPU (bound: 1.5x)"
    )


if __name__ == "__main__":
    main()
