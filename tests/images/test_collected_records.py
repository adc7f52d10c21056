"""NTFS records read back from a collected zip's `_exhunt/filesystem.csv`: typed again, hostile cells
harmless. Needs no disk image (the CSV is written here as `exhunt collect` writes it)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from exhunt.scan import ScanOptions, scan

WEB = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth"
COLS = ["host", "image", "path", "win_path", "kind", "mft_record", "parent_record", "deleted", "size",
        "si_created", "si_modified", "si_changed", "si_accessed", "fn_created", "fn_modified", "fn_changed",
        "fn_accessed", "ads", "tells"]  # fmt: skip


def _zip(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out = tmp_path / "collected.zip"
    with zipfile.ZipFile(out, "x") as zf:
        zf.writestr(f"{WEB}/x.aspx", '<%@ Page Language="C#" %>\r\n')
        zf.writestr("_exhunt/filesystem.csv", buf.getvalue())
    return out


def test_collected_records_are_typed_and_found_by_the_rules(tmp_path):
    good = {"host": "EXCH01", "image": "D:\\cases\\EXCH01.vhdx", "path": f"{WEB}/x.aspx", "win_path": "C:\\x.aspx",
            "kind": "web", "mft_record": "70", "parent_record": "60", "deleted": "False", "size": "30",
            "si_created": "2020-01-01T00:00:00.123456+00:00", "fn_created": "2024-05-01T10:00:00.654321+00:00",
            "tells": "si_before_fn record_order"}  # fmt: skip
    gone = {**good, "path": f"{WEB}/gone.aspx", "mft_record": "71", "deleted": "True", "tells": ""}
    hostile = {"host": "EXCH01", "path": f"{WEB}/'=cmd.aspx", "mft_record": "1e9999", "deleted": "maybe",
               "size": "-", "si_created": "not a time", "fn_created": "9999-99-99", "tells": "'=HYPERLINK()"}  # fmt: skip
    doc = scan(_zip(tmp_path, [good, gone, hostile]), ScanOptions()).to_dict()
    hits = {(f["rule"], e["path"].rsplit("/", 1)[-1]): e for f in doc["findings"] for e in f["evidence"]}
    stomped = hits[("fs-script-timestomped", "x.aspx")]
    assert stomped["record"]["mft_record"] == 70 and stomped["record"]["image"] == "D:\\cases\\EXCH01.vhdx"
    assert stomped["record"]["si_created"] == "2020-01-01T00:00:00.123456"
    assert stomped["time"].startswith("2024-05-01T10:00:00.654321")  # $FN created: the real creation time
    assert ("fs-script-deleted", "gone.aspx") in hits
    assert not any(name == "'=cmd.aspx" for _, name in hits)  # its values did not parse: no tell, no finding
    coverage = {c["family"]: c for c in doc["coverage"]}
    assert coverage["fs_records"]["records"] == 3
    assert not [e for e in doc["errors"] if "NTFS records" in e["reason"]]
