"""Read-only collection access: folders, zips (with hostile member names), single files, bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from exhunt.collection import Entry, Skipped, open_collection
from exhunt.errors import InputError
from exhunt.layout import install_path_of, split_host_and_windows_path


def test_zip_members_escaping_the_collection_are_reported_and_skipped(tmp_path: Path):
    z = tmp_path / "c.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", "#Fields: date time\n")
        zf.writestr("../../etc/evil.log", "x")
        zf.writestr("/abs/evil.log", "x")
    col = open_collection(z)
    entries = list(col.entries())
    good = [e for e in entries if isinstance(e, Entry)]
    bad = [e for e in entries if isinstance(e, Skipped)]
    assert [e.path for e in good] == ["EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"]
    assert {b.reason for b in bad} == {"unsafe path in zip (absolute or '..'): not read"}
    assert col.open(good[0].path).read() == b"#Fields: date time\n"
    assert not (tmp_path / "etc").exists()


def test_missing_path_and_bad_zip_raise_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        open_collection(tmp_path / "nope")
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="cannot read zip"):
        open_collection(bad)


def test_folder_walk_does_not_follow_symlinks(tmp_path: Path):
    (tmp_path / "a.log").write_text("x")
    (tmp_path / "link.log").symlink_to(tmp_path / "a.log")
    entries = list(open_collection(tmp_path).entries())
    assert [e.path for e in entries if isinstance(e, Entry)] == ["a.log"]
    assert [e.path for e in entries if isinstance(e, Skipped)] == ["link.log"]


@pytest.mark.parametrize(
    ("rel", "host", "win"),
    [
        ("EXCH01/C/inetpub/wwwroot/aspnet_client/x.aspx", "EXCH01", "C:\\inetpub\\wwwroot\\aspnet_client\\x.aspx"),
        (
            "C/Program Files/Microsoft/Exchange Server/V15/a.log",
            "coll",
            "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\a.log",
        ),
        ("HOST2/C%3A/root/lsass.dmp", "HOST2", "C:\\root\\lsass.dmp"),
        ("inetpub/logs/LogFiles/W3SVC1/u_ex1.log", "coll", "C:\\inetpub\\logs\\LogFiles\\W3SVC1\\u_ex1.log"),
        ("loose/u_ex1.log", "coll", None),
    ],
)
def test_layouts_map_to_host_and_windows_path(rel, host, win):
    assert split_host_and_windows_path(rel, "coll") == (host, win)


def test_install_path():
    assert install_path_of("D:\\Exchange Server\\V15\\Logging\\x.LOG") == "D:\\Exchange Server\\V15\\"
    assert install_path_of("C:\\inetpub\\x") is None
