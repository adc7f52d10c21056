"""Where exhunt may write: one check for every output path (`--json`, `--out FMT=FILE`, `--case`).

An output is refused inside the collection (a folder's tree; for a single-file scan the file's
folder, where the rest of the evidence lies; for a zip the zip itself), and refused when the file
exists and is not an earlier exhunt output of the same kind, told by exhunt's own marker, never by
file magic: for JSON the leading `"schema": "exhunt.scan"` key, for the HTML report its first-line
comment `<!-- exhunt.report: ... -->`, for a case database a `meta` table
whose `schema_id` is `exhunt.case`. `--force` overwrites a file that is not exhunt's (never one
inside the evidence). `--case X.duckdb` never deletes an `X.duckdb.wal` that does not belong to an
exhunt case. `signals_as_exceptions()` turns SIGTERM (and SIGHUP) into an exception, so the
`finally` that removes a scan's temporary case runs on `kill` as it does on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exhunt.errors import UsageError

CASE_SCHEMA_ID = "exhunt.case"
JSON_SCHEMA = "exhunt.scan"
_JSON_MARKER = re.compile(rb'^\s*\{\s*"schema"\s*:\s*"exhunt\.scan"')
_HTML_MARKER = re.compile(rb"^<!DOCTYPE html><!-- exhunt\.report: ")


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM/SIGHUP): unwinds like KeyboardInterrupt."""


def _starts_with(path: Path, marker: re.Pattern[bytes]) -> bool:
    try:
        with open(path, "rb") as fh:
            return bool(marker.match(fh.read(4096)))
    except OSError:
        return False


def is_exhunt_json(path: Path) -> bool:
    """Does the file start with exhunt's result marker (`{"schema": "exhunt.scan"`)?"""
    return _starts_with(path, _JSON_MARKER)


def is_exhunt_html(path: Path) -> bool:
    """Does the file start with the report's marker (`<!DOCTYPE html><!-- exhunt.report: `)?"""
    return _starts_with(path, _HTML_MARKER)


def is_exhunt_case(path: Path) -> bool:
    """Is the file a DuckDB database whose `meta` table carries exhunt's schema id (or, for cases
    written before the id existed, exhunt's stored result)? Opened read-only, without file access."""
    from exhunt.case import CaseReader

    try:
        case = CaseReader.open_saved(path)
    except Exception:  # not a database at all, or one DuckDB cannot open
        return False
    try:
        schema_id = case.meta("schema_id")
        if schema_id == CASE_SCHEMA_ID:
            return True
        return (case.meta("result") or {}).get("schema") == JSON_SCHEMA
    except Exception:  # no meta table, or one that is not exhunt's
        return False
    finally:
        case.close()


MARKERS = {"json": is_exhunt_json, "html": is_exhunt_html, "case": is_exhunt_case}


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except (ValueError, OSError):
        return False


def evidence_area(scanned: Path) -> tuple[Path | None, Path]:
    """(the folder no output may go into, the scanned path itself)."""
    if scanned.is_dir():
        return scanned, scanned
    if scanned.suffix.lower() == ".zip":
        return None, scanned
    return scanned.parent, scanned


def check_output(target: Path, kind: str, scanned: Path | None = None, force: bool = False) -> None:
    """Raise UsageError unless exhunt may write `kind` output to `target`."""
    label = "--case" if kind == "case" else f"--out {kind}"
    if scanned is not None:
        folder, itself = evidence_area(scanned)
        if target.resolve() == itself.resolve() or (folder is not None and _inside(target, folder)):
            raise UsageError(
                f"{label} {target}: inside the evidence ({scanned}); outputs go outside the evidence folder"
            )
    if target.is_symlink():
        raise UsageError(f"{label} {target}: is a symbolic link; refusing to write through it")
    if not target.exists():
        return
    if not target.is_file():
        raise UsageError(f"{label} {target}: exists and is not a file")
    is_ours = MARKERS.get(kind)
    if (is_ours is None or not is_ours(target)) and not force:
        what = "a DuckDB case file written by exhunt" if kind == "case" else f"an earlier exhunt {kind} output"
        raise UsageError(f"{label} {target}: exists and is not {what}; refusing to overwrite it (--force to do so)")


def check_outputs(outputs: list[tuple[str, str]], scanned: Path | None, case: Path | None, force: bool) -> None:
    """Every `--out`/`--json` target, and no two outputs (or an output and the case) on one file."""
    seen: dict[Path, str] = {}
    if case is not None:
        seen[case.resolve()] = "--case"
    for kind, target in outputs:
        if target == "-":
            continue
        path = Path(target)
        if path.resolve() in seen:
            raise UsageError(f"{target}: given to both {seen[path.resolve()]} and --out {kind}")
        seen[path.resolve()] = f"--out {kind}"
        check_output(path, kind, scanned, force)


def prepare_case(case: Path, scanned: Path, force: bool = False) -> None:
    """Check `--case` and remove an earlier exhunt case there (with its own `.wal`). An existing
    `.wal` beside a file that is not an exhunt case is never deleted: that is refused."""
    check_output(case, "case", scanned, force)
    wal = Path(str(case) + ".wal")
    ours = case.exists() and is_exhunt_case(case)
    if wal.exists() and not ours:
        raise UsageError(
            f"--case {case}: {wal} exists and does not belong to an exhunt case; "
            "refusing to delete it or replay it into a new case (choose another name)"
        )
    from exhunt import case_records

    folder, (area, itself) = case_records.folder_of(case), evidence_area(scanned)
    if folder.resolve() == itself.resolve() or _inside(itself, folder) or (area is not None and _inside(folder, area)):
        raise UsageError(f"--case {case}: its records folder {folder} would be in the evidence ({scanned})")
    if case_records.is_foreign_folder(case):
        raise UsageError(
            f"--case {case}: {folder} exists and is not exhunt's records folder; "
            "refusing to replace it (choose another name)"
        )
    for p in (case, wal):
        if p.exists():
            p.unlink()
    case_records.remove_folder(case)


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Terminated` in the main thread while the block runs (elsewhere:
    no change), so temporary files are removed by the code's own `finally` blocks."""
    names = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    try:
        previous = {s: signal.signal(getattr(signal, s), _raise) for s in names}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(getattr(signal, s), handler)


def _raise(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def exit_after_interrupt(code: int = 130) -> None:
    """Leave at once after cleanup: reader threads still blocked on a queue must not keep the
    process alive (the interpreter would wait for them at exit)."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
