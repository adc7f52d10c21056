"""Wall time and peak memory of a command and every process it starts (worker processes included).

GNU time's maximum RSS is that of the largest single process, which hides a pool of workers; this
samples the whole process tree every 20 ms from /proc and sums the proportional set sizes (PSS:
pages shared between processes, such as those a fork server hands its workers, count once).
Linux only, like the rest of the benches.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cmd: list[str], cwd: Path | None = None) -> tuple[float, int, int, int, str]:
    """Wall seconds, peak PSS of the process tree (MiB), most processes at once, the exit status
    and the output (stdout and stderr)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = most = 0
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak, most = max(peak, sum(_pss_kib(p) for p in pids)), max(most, len(pids))
        time.sleep(0.02)
    reader.join()
    return time.perf_counter() - started, peak // 1024, most, proc.returncode, "".join(output)
