"""Every input is accounted for: duplicate zip names, inner zips, special files, links, unreadable
folders, zip bombs, damaged zips, non-UTF-8 names, the scanned path itself, and access times."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from exhunt import collection as coll
from exhunt.collection import Entry, Skipped, open_collection, open_readonly
from exhunt.errors import InputError
from exhunt.scan import scan
from tests.conftest import iis_log, write

W3SVC1 = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1"
ATTACK = iis_log(
    ["2021-03-03 04:11:58 10.0.0.5 POST /ecp/y.js - 443 - 130.255.189.21 ExchangeServicesClient/0.0.0.0 - 200 0 0 9"]
).replace("\n", "\r\n")
BENIGN = iis_log(["2021-03-03 05:00:00 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9"]).replace(
    "\n", "\r\n"
)


def _split(entries):
    got = list(entries)
    return [e for e in got if isinstance(e, Entry)], [e for e in got if isinstance(e, Skipped)]


def _rules(result) -> set[str]:
    return {f.rule.id for f in result.findings}


def _sha(result_case: Path) -> dict[str, str]:
    import duckdb

    con = duckdb.connect(str(result_case), read_only=True)
    try:
        return dict(con.execute("SELECT path, sha256 FROM artifacts").fetchall())
    finally:
        con.close()


# -- duplicate member names ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second"),
    [
        (f"{W3SVC1}/u_ex210303.log", f"{W3SVC1}/u_ex210303.log"),
        (f"./{W3SVC1}/u_ex210303.log", f"{W3SVC1}/u_ex210303.log"),
        (W3SVC1.replace("/", "\\") + "\\u_ex210303.log", f"{W3SVC1}/u_ex210303.log"),
    ],
)
def test_duplicate_zip_names_are_all_read_each_with_its_hash(tmp_path: Path, first: str, second: str):
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as zf, pytest.warns(UserWarning) if first == second else _nothing():
        zf.writestr(first, ATTACK)  # the attack copy first: the old code never read it
        zf.writestr(second, BENIGN)
    name = f"{W3SVC1}/u_ex210303.log"
    entries, _ = _split(open_collection(z).entries())
    assert [e.path for e in entries] == [name, name + "#2"]
    assert entries[1].logical_path == name
    case = tmp_path / "case.duckdb"
    result = scan(z, _options(case))
    assert "proxylogon-ecp-js-post" in _rules(result)
    hashes = _sha(case)
    import hashlib

    assert hashes[name] == hashlib.sha256(ATTACK.encode()).hexdigest()
    assert hashes[name + "#2"] == hashlib.sha256(BENIGN.encode()).hexdigest()
    evidence = [e.path for f in result.findings if f.rule.id == "proxylogon-ecp-js-post" for e in f.evidence]
    assert evidence == [name]  # provenance names which copy


def test_a_copy_index_never_takes_a_real_member_name(tmp_path: Path):
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.log#2", b"real")
        zf.writestr("a.log", b"one")
        zf.writestr("./a.log", b"two")
    col = open_collection(z)
    entries, _ = _split(col.entries())
    assert [e.path for e in entries] == ["a.log#2", "a.log", "a.log#3"]
    assert [col.open(e.path).read() for e in entries] == [b"real", b"one", b"two"]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _options(case: Path | None = None):
    from exhunt.scan import ScanOptions

    return ScanOptions(case=case)


# -- special files, links, unreadable folders ------------------------------------------------------
def test_special_files_and_links_are_listed_and_never_opened(tmp_path: Path):
    root = tmp_path / "c"
    write(root, f"{W3SVC1}/u_ex210303.log", ATTACK)
    os.mkfifo(root / "pipe.log")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.log"))
    (root / "file-link.log").symlink_to(root / W3SVC1 / "u_ex210303.log")
    (root / "dir-link").symlink_to(root / "EXCH01")
    (root / "loop").symlink_to(root / "loop")
    (root / "up").symlink_to(root)
    try:
        entries, skipped = _split(open_collection(root).entries())
        reasons = {s.path: s.reason for s in skipped}
        assert [e.path for e in entries] == [f"{W3SVC1}/u_ex210303.log"]
        assert reasons["pipe.log"].startswith("FIFO")
        assert reasons["sock.log"].startswith("socket")
        for link in ("file-link.log", "dir-link", "loop", "up"):
            assert reasons[link].startswith("symbolic link not followed"), link
        result = scan(root)  # must not block on the FIFO
        assert {"pipe.log", "sock.log", "dir-link", "loop", "up"} <= {e["path"] for e in result.errors}
        assert "proxylogon-ecp-js-post" in _rules(result)
    finally:
        sock.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to drop privileges")
def test_unreadable_folders_and_files_are_listed(tmp_path: Path):
    """As root every folder is readable, so the walk runs in a child that drops to uid 65534."""
    root = Path(os.path.realpath(tmp_path)) / "c"
    write(root, f"{W3SVC1}/u_ex210302.log", BENIGN)
    write(root, "EXCH01/C/inetpub/logs/LogFiles/W3SVC2/u_ex210303.log", ATTACK)
    write(root, "EXCH01/secret.log", ATTACK)
    for p in [tmp_path, *root.rglob("*"), root]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    (root / "EXCH01/C/inetpub/logs/LogFiles/W3SVC2").chmod(0)
    (root / "EXCH01/secret.log").chmod(0)
    parent = tmp_path
    while parent != parent.parent:  # the way down must be open to the child
        parent.chmod(parent.stat().st_mode | 0o005)
        parent = parent.parent
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(rd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            got = [(type(e).__name__, e.path, getattr(e, "reason", "")) for e in open_collection(root).entries()]
            os.write(wr, json.dumps(got).encode())
        finally:
            os._exit(0)
    os.close(wr)
    data = b""
    while chunk := os.read(rd, 65536):
        data += chunk
    os.waitpid(pid, 0)
    got = {path: (kind, why) for kind, path, why in json.loads(data)}
    assert got[f"{W3SVC1}/u_ex210302.log"][0] == "Entry"
    kind, why = got["EXCH01/C/inetpub/logs/LogFiles/W3SVC2/"]
    assert kind == "Skipped" and why.startswith("folder not read: PermissionError"), why
    assert got["EXCH01/secret.log"] == ("Skipped", "file not read: permission denied")


def test_folder_open_refuses_what_is_not_a_regular_file_at_open_time(tmp_path: Path):
    root = tmp_path / "c"
    write(root, "a.log", "x")
    write(root, "b.log", "y")
    col = open_collection(root)
    entries, _ = _split(col.entries())
    assert [e.path for e in entries] == ["a.log", "b.log"]
    (root / "a.log").unlink()
    os.mkfifo(root / "a.log")  # swapped after the walk: must not block
    (root / "b.log").unlink()
    (root / "b.log").symlink_to("/etc/passwd")
    with pytest.raises(OSError, match="not a regular file"):
        col.open("a.log")
    with pytest.raises(OSError):
        col.open("b.log")


# -- inner zips ------------------------------------------------------------------------------------
def _zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_inner_zips_are_read_to_a_bounded_depth(tmp_path: Path):
    level3 = _zip_bytes({"deep.log": b"x"})
    level2 = _zip_bytes({"l3.zip": level3, "two.log": b"y"})
    inner = _zip_bytes({f"{W3SVC1}/u_ex210303.log": ATTACK.encode(), "l2.zip": level2})
    outer = tmp_path / "outer.zip"
    outer.write_bytes(_zip_bytes({"EXCH01/inner.zip": inner, "EXCH01/broken.zip": b"PK\x03\x04junk"}))
    col = open_collection(outer)
    entries, skipped = _split(col.entries())
    paths = [e.path for e in entries]
    member = f"EXCH01/inner.zip/{W3SVC1}/u_ex210303.log"
    assert member in paths
    assert "EXCH01/inner.zip/l2.zip/two.log" in paths
    assert "EXCH01/inner.zip" in paths  # the archive itself is an artifact too
    assert "EXCH01/inner.zip/l2.zip/l3.zip/deep.log" not in paths
    reasons = {s.path: s.reason for s in skipped}
    assert "nested deeper than 2" in reasons["EXCH01/inner.zip/l2.zip/l3.zip"]
    assert "not a readable zip" in reasons["EXCH01/broken.zip"]
    assert col.open(member).read() == ATTACK.encode()
    result = scan(outer)
    assert "proxylogon-ecp-js-post" in _rules(result)
    assert any(e.path == member for f in result.findings for e in f.evidence)


def test_a_zip_in_a_folder_is_opened(tmp_path: Path):
    root = tmp_path / "c"
    write(root, "EXCH01/triage.zip", _zip_bytes({f"{W3SVC1}/u_ex210303.log": ATTACK.encode()}))
    result = scan(root)
    assert "proxylogon-ecp-js-post" in _rules(result)


# -- size and ratio budget, damaged members ------------------------------------------------------
def test_a_zip_bomb_member_is_read_up_to_the_cap_and_listed(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(coll, "RATIO_FLOOR", 1 << 20)  # the same budget logic at a test-sized scale
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("EXCH01/EventLogs/bomb.evtx", "w") as fh:
        fh.write(b"ElfFile\x00")
        zero = bytes(1 << 20)
        for _ in range(64):
            fh.write(zero)
    assert z.stat().st_size < 200_000
    col = open_collection(z)
    entries, skipped = _split(col.entries())
    info = zipfile.ZipFile(z).infolist()[0]
    cap = max(1 << 20, coll.RATIO_LIMIT * info.compress_size)
    assert entries[0].size == cap < info.file_size
    assert skipped[0].path == "EXCH01/EventLogs/bomb.evtx" and skipped[0].reason.startswith("partly read")
    with col.open(entries[0].path) as fh:
        assert len(fh.read()) == cap
    result = scan(z)
    assert any(e["reason"].startswith("partly read") for e in result.errors)


def _overstate_first_member(data: bytes, extra: int) -> bytes:
    """Raise the sizes (compressed and not) the central directory declares for the first member."""
    cd = data.index(b"PK\x01\x02")
    for offset in (20, 24):
        (size,) = struct.unpack_from("<I", data, cd + offset)
        data = data[: cd + offset] + struct.pack("<I", size + extra) + data[cd + offset + 4 :]
    return data


def test_a_zip_that_overstates_a_member_size_is_an_error_on_that_member(tmp_path: Path):
    from typer.testing import CliRunner

    from exhunt.cli import app

    z = tmp_path / "lying.zip"
    z.write_bytes(
        _overstate_first_member(
            _zip_bytes(
                {f"{W3SVC1}/u_ex210302.log": BENIGN.encode() * 50, f"{W3SVC1}/u_ex210303.log": ATTACK.encode()},
                zipfile.ZIP_STORED,
            ),
            100_000,
        )
    )
    res = CliRunner().invoke(app, ["scan", str(z), "--json", "-", "-q"])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    doc = json.loads(res.stdout)
    damaged = [e for e in doc["errors"] if e["path"] == f"{W3SVC1}/u_ex210302.log"]
    assert damaged and "zip member damaged" in damaged[0]["reason"], doc["errors"]
    assert "proxylogon-ecp-js-post" in {f["rule"] for f in doc["findings"]}


# -- names that are not UTF-8 --------------------------------------------------------------------
@pytest.mark.skipif(sys.platform != "linux", reason="byte file names are a POSIX matter")
def test_non_utf8_file_names_are_carried_as_escaped_text(tmp_path: Path):
    root = tmp_path / "c"
    write(root, f"{W3SVC1}/u_ex210303.log", ATTACK)
    raw = os.fsencode(root / W3SVC1) + b"/sh\xffell.log"
    with open(raw, "wb"):
        pass  # an empty file: the old code aborted the scan with UnicodeEncodeError
    with open(os.fsencode(root / W3SVC1) + b"/web\xfe.aspx", "wb") as fh:
        fh.write(b'<%@ Page Language="Jscript"%><%eval(Request.Item["p"],"unsafe");%>')
    col = open_collection(root)
    entries, _ = _split(col.entries())
    names = {e.path for e in entries}
    assert f"{W3SVC1}/sh\\xffell.log" in names and f"{W3SVC1}/web\\xfe.aspx" in names
    assert col.open(f"{W3SVC1}/web\\xfe.aspx").read().startswith(b"<%@")
    case = tmp_path / "case.duckdb"
    result = scan(root, _options(case))
    assert "proxylogon-ecp-js-post" in _rules(result)
    json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")
    assert f"{W3SVC1}/sh\\xffell.log" in {e["path"] for e in result.errors}
    assert _sha(case)[f"{W3SVC1}/web\\xfe.aspx"]


# -- the scanned path itself -------------------------------------------------------------------
def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exhunt", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "proc", "root"])
def test_the_scanned_path_is_refused_with_one_line(tmp_path: Path, kind: str):
    if kind == "fifo":
        target = str(tmp_path / "evidence.log")
        os.mkfifo(target)
    else:
        target = {"dev-zero": "/dev/zero", "proc": "/proc", "root": "/"}[kind]
        if not os.path.exists(target):
            pytest.skip(f"{target} does not exist here")
    res = _cli("scan", target, "-q", timeout=30)  # the old code blocked (FIFO, /proc) or ate memory
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to scan" in lines[0], res.stderr


def test_open_collection_refuses_special_paths(tmp_path: Path):
    os.mkfifo(tmp_path / "p")
    with pytest.raises(InputError, match="FIFO"):
        open_collection(tmp_path / "p")


# -- read-only evidence: bytes, sizes, mtimes and atimes unchanged --------------------------------
def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(root))] = (p.read_bytes(), st.st_size, st.st_mtime_ns)
    return out


def _times(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_atime_ns, p.lstat().st_mtime_ns) for p in sorted([root, *root.rglob("*")])}


def _atime_is_updated_here(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.write_bytes(b"x")
    os.utime(probe, ns=(1_000_000_000, probe.stat().st_mtime_ns))
    probe.read_bytes()
    return probe.stat().st_atime_ns != 1_000_000_000


def test_a_read_only_collection_is_unchanged_by_a_scan_atime_included(tmp_path: Path):
    from exhunt.synth import FAMILIES, generate

    src = tmp_path / "EXCH01-triage"
    generate(src, seed=3, users=5, days=2, plant=frozenset(FAMILIES))
    z = tmp_path / "EXCH01-triage.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    before, zip_before = _snapshot(src), z.read_bytes()  # reading sets atimes: old ones are set after
    old = 1_500_000_000_000_000_000  # well in the past: relatime updates such an atime on any read
    for p in [*src.rglob("*"), src, z]:
        os.utime(p, ns=(old, p.lstat().st_mtime_ns), follow_symlinks=False)
    for p in [*src.rglob("*"), src]:
        p.chmod(p.stat().st_mode & ~0o222)
    z.chmod(0o444)
    try:
        times = {**_times(src), str(z): (z.stat().st_atime_ns, z.stat().st_mtime_ns)}
        for target in (src, z):
            result = scan(target, _options(tmp_path / f"case-{target.suffix or 'dir'}.duckdb"))
            assert result.verdict == "COMPROMISED"
        after = {**_times(src), str(z): (z.stat().st_atime_ns, z.stat().st_mtime_ns)}
        check_atime = os.geteuid() == 0 and _atime_is_updated_here(tmp_path)
        for p, (atime, mtime) in times.items():
            assert after[p][1] == mtime, p
            if check_atime and not Path(p).is_dir():
                assert after[p][0] == atime, f"atime changed: {p}"
        assert _snapshot(src) == before
        assert z.read_bytes() == zip_before
    finally:
        for p in [src, *src.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)
        shutil.rmtree(src, ignore_errors=True)


def test_open_readonly_keeps_atime(tmp_path: Path):
    if os.geteuid() != 0 or not _atime_is_updated_here(tmp_path):
        pytest.skip("O_NOATIME needs the file's owner or root, and a file system that updates atime")
    p = tmp_path / "f"
    p.write_bytes(b"data")
    os.utime(p, ns=(1_000_000_000, p.stat().st_mtime_ns))
    with open_readonly(p) as fh:
        assert fh.read() == b"data"
    assert p.stat().st_atime_ns == 1_000_000_000


def test_an_error_without_a_message_is_listed_not_a_crash(tmp_path: Path, monkeypatch):
    """EOFError() has no message: the reader's own handler raised IndexError on it before."""
    root = tmp_path / "c"
    write(root, f"{W3SVC1}/u_ex210302.log", BENIGN)
    write(root, f"{W3SVC1}/u_ex210303.log", ATTACK)
    real_open = coll.FolderCollection.open

    class Broken(io.BytesIO):
        def read(self, *args):
            raise EOFError()

    def open_(self, path):
        return Broken() if path.endswith("u_ex210302.log") else real_open(self, path)

    monkeypatch.setattr(coll.FolderCollection, "open", open_)
    result = scan(root)
    assert {
        "path": f"{W3SVC1}/u_ex210302.log",
        "line": None,
        "reason": "cannot read: EOFError: no message",
    } in result.errors
    assert "proxylogon-ecp-js-post" in _rules(result)
