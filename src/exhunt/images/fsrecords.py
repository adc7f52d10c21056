"""File-system evidence no log holds: `$SI`/`$FN` times, timestomping tells, deleted records, streams.

For every file of the web and staging/dump folders of an NTFS volume (see discovery.py), and every
unallocated MFT record whose `$FILE_NAME` parent is one of those folders. Tells, each a word in `tells`:

- `si_before_fn`: `$SI` creation earlier than `$FN` creation (`$SI` is what user-mode tools set back);
- `whole_seconds`: `$SI` created and modified on whole seconds while at least 90% of the other files
  in these folders carry sub-second times (Windows writes 100 ns ticks; timestomping tools often don't);
- `before_parent`: created before the folder holding it was (a file moved in keeps its creation
  time, so this one is a lead, not proof);
- `record_order`: created more than a day before both its MFT neighbours (by record number) were;
- `ads`: a script file with an alternate data stream (other than a download's Zone.Identifier).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from exhunt.images.discovery import STAGING, WEB

SCRIPT_EXTENSIONS = (".aspx", ".asp", ".ashx", ".asmx", ".asax", ".ascx", ".config", ".cshtml", ".js", ".ps1", ".bat", ".cmd", ".vbs", ".php", ".jsp")  # fmt: skip
_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_TICKS_PER_SECOND = 10_000_000
_DAY = 86_400 * _TICKS_PER_SECOND
_TS = pa.timestamp("us", tz="UTC")
COLLECTED = "_exhunt/filesystem.csv"  # the records in a zip written by `exhunt collect`
COLLECTED_LIMIT = 256 << 20

SCHEMA = pa.schema(
    [
        ("host", pa.string()),
        ("image", pa.string()),  # the image file (or source) the record was read from
        ("path", pa.string()),  # collection path (HOST/C/...); for a deleted record, its folder's path + name
        ("win_path", pa.string()),
        ("kind", pa.string()),  # web or staging
        ("mft_record", pa.int64()),
        ("parent_record", pa.int64()),
        ("deleted", pa.bool_()),
        ("size", pa.int64()),
        ("si_created", _TS),
        ("si_modified", _TS),
        ("si_changed", _TS),
        ("si_accessed", _TS),
        ("fn_created", _TS),
        ("fn_modified", _TS),
        ("fn_changed", _TS),
        ("fn_accessed", _TS),
        ("ads", pa.list_(pa.string())),
        ("tells", pa.list_(pa.string())),
    ]
)


def filetime(ticks: int | None) -> datetime | None:
    """A FILETIME (100 ns since 1601-01-01 UTC) as a datetime, to the microsecond."""
    if not ticks or ticks < 0:
        return None
    try:
        return _EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def filesystem_records(collection: Any) -> pa.Table:
    """One row per web/staging file and per deleted record there; empty when the volumes are not NTFS."""
    rows: list[dict[str, Any]] = []
    if not hasattr(collection, "walked_folders"):  # a container of collected files: no server folders
        return pa.Table.from_pylist([], schema=SCHEMA)
    folders = collection.walked_folders()
    image = str(collection.root)
    for drive, fs in collection.volumes.items():
        if not hasattr(fs, "record"):
            continue  # a mounted volume or the live system: no MFT access
        listed = [i for i in collection.listing() if i.drive == drive and i.kind in (WEB, STAGING)]
        records = [(i, fs.record(i.node.ref)) for i in listed]
        kind_of = {ref: _kind_of(cpath, listed) for (d, ref), cpath in folders.items() if d == drive}
        deleted = list(_deleted_in(fs, {ref: cpath for (d, ref), cpath in folders.items() if d == drive}))
        every = [r for _, r in records if r is not None] + [r for _, r in deleted]
        subsecond = _subsecond_share(every)
        parent_created: dict[int, int | None] = {}

        def created_of(ref: int | None, fs: Any = fs, cache: dict[int, int | None] = parent_created) -> int | None:
            if ref is None:
                return None
            if ref not in cache:
                rec = fs.record(ref)
                cache[ref] = rec.si.created if rec is not None and rec.si is not None else None
            return cache[ref]

        out_of_order = _out_of_allocation_order([r for _, r in records if r is not None])
        for item, rec in records:
            if rec is not None:
                row = _row(
                    collection.name, image, item.path, item.win_path, item.kind, rec, subsecond, created_of(rec.parent)
                )
                if rec.record in out_of_order:
                    row["tells"].append("record_order")
                rows.append(row)
        for cpath, rec in deleted:
            folder_win = _win_path_of(cpath, drive)
            name = rec.name or f"(record {rec.record})"
            rows.append(
                _row(
                    collection.name,
                    image,
                    f"{cpath}/{name}",
                    f"{folder_win}\\{name}",
                    kind_of.get(rec.parent, WEB),
                    rec,
                    subsecond,
                    created_of(rec.parent),
                )
            )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def case_records(collection: Any, artifact_ids: dict[str, int]) -> pa.Table:
    """The records as the case stores them (`fs_records`, times as naive UTC): those of an image's
    volumes, or those a collected zip carries in `_exhunt/filesystem.csv`; each with `_artifact`, the
    id of the same file in `artifacts` where it was read (NULL for a deleted file's record)."""
    if hasattr(collection, "walked_folders"):
        table = filesystem_records(collection)
    elif COLLECTED in artifact_ids:
        table = collected_records(collection)
    else:
        table = pa.Table.from_pylist([], schema=SCHEMA)
    for i, f in enumerate(table.schema):  # naive UTC, as every time in the case
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("us")))
    ids = pa.array([artifact_ids.get(p) for p in table.column("path").to_pylist()], pa.int32())
    return table.append_column("_artifact", ids)


def collected_records(collection: Any) -> pa.Table:
    """The records `exhunt collect` wrote into `_exhunt/filesystem.csv`, typed again. The file is as
    untrusted as the rest of the zip: read within `COLLECTED_LIMIT`, a value that does not parse is NULL."""
    with collection.open(COLLECTED) as fh:
        text = fh.read(COLLECTED_LIMIT).decode("utf-8", "replace")
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row = {k: _uncell(v) for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
        path = row.get("path") or ""
        if not path:
            continue
        rows.append(
            {
                "host": row.get("host") or path.split("/", 1)[0],
                "image": row.get("image") or None,
                "path": path,
                "win_path": row.get("win_path") or None,
                "kind": row.get("kind") or None,
                "mft_record": _int(row.get("mft_record")),
                "parent_record": _int(row.get("parent_record")),
                "deleted": {"true": True, "false": False}.get((row.get("deleted") or "").lower()),
                "size": _int(row.get("size")),
                **{name: _time(row.get(name)) for name in SCHEMA.names if name[:3] in ("si_", "fn_")},
                "ads": (row.get("ads") or "").split(),
                "tells": (row.get("tells") or "").split(),
            }
        )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _uncell(value: str) -> str:
    """A CSV cell as written, without the quote that kept a spreadsheet from running it."""
    return value[1:] if value[:1] == "'" and value[1:2] in ("=", "+", "-", "@", "\t", "\r", "|", "%") else value


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _time(value: str | None) -> datetime | None:
    try:
        t = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _deleted_in(fs: Any, folders: dict[Any, str]) -> Iterable[tuple[str, Any]]:
    """Unallocated MFT records whose `$FILE_NAME` parent is one of `folders` (ref -> collection path)."""
    for number in fs.unallocated_records():
        rec = fs.record(number)
        if rec is not None and not rec.allocated and rec.parent in folders:
            yield folders[rec.parent], rec


def _kind_of(cpath: str, listed: list[Any]) -> str:
    return next((i.kind for i in listed if i.path.startswith(cpath + "/")), WEB)


def _win_path_of(cpath: str, drive: str) -> str:
    parts = cpath.split("/")
    idx = parts.index(drive) if drive in parts else 1
    return f"{drive}:\\" + "\\".join(parts[idx + 1 :])


def _out_of_allocation_order(records: list[Any]) -> set[int]:
    """Records created more than a day before both their MFT neighbours (by record number, among
    these folders' files) were: NTFS hands out records in order, so a file in a slot between two
    newer ones was most likely written with them and had its times set back (or copied with them)."""
    dated = sorted((r.record, r.si.created, r.fn.created if r.fn else None) for r in records if r.si and r.si.created)
    flagged = set()
    for i in range(1, len(dated) - 1):
        number, si_created, _ = dated[i]
        before, after = dated[i - 1][2] or dated[i - 1][1], dated[i + 1][2] or dated[i + 1][1]
        if si_created < min(before, after) - _DAY:
            flagged.add(number)
    return flagged


def _subsecond_share(records: list[Any]) -> float | None:
    created = [r.si.created for r in records if r.si is not None and r.si.created]
    if len(created) < 10:
        return None
    return sum(1 for t in created if t % _TICKS_PER_SECOND) / len(created)


def _row(
    host: str,
    image: str,
    path: str,
    win_path: str,
    kind: str,
    rec: Any,
    subsecond: float | None,
    parent_created: int | None,
) -> dict[str, Any]:
    si, fn = rec.si, rec.fn
    tells = []
    if si is not None and fn is not None and si.created and fn.created and si.created < fn.created:
        tells.append("si_before_fn")
    if (
        si is not None
        and subsecond is not None
        and subsecond >= 0.9
        and si.created
        and si.created % _TICKS_PER_SECOND == 0
        and (si.modified or 0) % _TICKS_PER_SECOND == 0
    ):
        tells.append("whole_seconds")
    if si is not None and si.created and parent_created and si.created < parent_created:
        tells.append("before_parent")
    if any(s.lower() != "zone.identifier" for s in rec.streams) and path.lower().endswith(SCRIPT_EXTENSIONS):
        tells.append("ads")

    def t(times: Any, field: str) -> datetime | None:
        return filetime(getattr(times, field)) if times is not None else None

    return {
        "host": host,
        "image": image,
        "path": path,
        "win_path": win_path,
        "kind": kind,
        "mft_record": rec.record,
        "parent_record": rec.parent,
        "deleted": not rec.allocated,
        "size": rec.size,
        **{f"si_{f}": t(si, f) for f in ("created", "modified", "changed", "accessed")},
        **{f"fn_{f}": t(fn, f) for f in ("created", "modified", "changed", "accessed")},
        "ads": list(rec.streams),
        "tells": tells,
    }
