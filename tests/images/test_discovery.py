"""Targeted discovery on a folder laid out like a C: drive (no image tools needed)."""

from __future__ import annotations

from pathlib import Path

from exhunt.collection import FolderCollection, open_collection
from exhunt.images.discovery import discover, expand
from exhunt.images.fs import DirectoryFilesystem
from exhunt.images.registry import RegistryFacts, setup_facts

APPHOST = """<configuration><system.applicationHost><sites>
  <site name="Default Web Site" id="1">
    <application path="/"><virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" /></application>
    <application path="/owa"><virtualDirectory path="/" physicalPath="E:\\Exchange\\V15\\FrontEnd\\HttpProxy\\owa" /></application>
    <application path="/files"><virtualDirectory path="/" physicalPath="C:\\ProgramData\\Shared" /></application>
    <logFile directory="L:\\Weblogs" />
  </site>
  <site name="Exchange Back End" id="2"><logFile directory="%SystemDrive%\\BackLogs" /></site>
  <siteDefaults><logFile directory="%SystemDrive%\\inetpub\\logs\\LogFiles" /></siteDefaults>
</sites></system.applicationHost></configuration>"""


def _drive(root: Path) -> Path:
    c = root / "C"
    (c / "Windows/System32/inetsrv/config").mkdir(parents=True)
    (c / "Windows/System32/inetsrv/config/applicationHost.config").write_text(APPHOST)
    for folder in ("BackLogs/W3SVC2", "inetpub/logs/LogFiles/W3SVC1", "Windows/Temp", "ProgramData/Shared"):
        (c / folder).mkdir(parents=True)
    (c / "BackLogs/W3SVC2/u_ex210303.log").write_text("#Software: Microsoft Internet Information Services 10.0\n")
    (c / "Windows/Temp/lsass.dmp").write_bytes(b"MDMP")
    return c


def test_expand_environment_and_slashes():
    assert expand('"%SystemDrive%/inetpub/logs/"') == "C:\\inetpub\\logs"
    assert expand("%windir%\\Temp") == "C:\\Windows\\Temp"
    assert expand("%UNKNOWN%\\x") == "%UNKNOWN%\\x"


def test_setup_values_give_install_path_and_build():
    values = {"MsiInstallPath": "E:\\Exchange\\V15", "MsiProductMajor": 15, "MsiProductMinor": 2,
              "MsiBuildMajor": 986, "MsiBuildMinor": 5}  # fmt: skip
    assert setup_facts(values) == ("E:\\Exchange\\V15\\", "15.2.986.5")
    assert setup_facts({"MsiInstallPath": "  "}) == (None, None)


def test_discovery_reads_every_log_folder_of_applicationhost(tmp_path: Path):
    c = _drive(tmp_path)
    facts = RegistryFacts(install_path="E:\\Exchange\\V15\\", build="15.2.986.5")
    found = discover({"C": DirectoryFilesystem(c, "test")}, facts)
    roots = {r.win_path: r.kind for r in found.roots}
    assert roots["L:\\Weblogs"] == roots["C:\\BackLogs"] == roots["C:\\inetpub\\logs\\LogFiles"] == "logs"
    assert roots["E:\\Exchange\\V15\\Logging"] == "logs" and roots["E:\\Exchange\\V15\\FrontEnd\\HttpProxy"] == "web"
    assert roots["C:\\ProgramData\\Shared"] == "web"  # a virtual directory served from ProgramData
    assert "E:\\Exchange\\V15\\FrontEnd\\HttpProxy\\owa" not in roots  # inside the install path: already read
    assert found.build == "15.2.986.5" and not any("default" in n for n in found.notes if "install" in n)


def test_a_folder_holding_a_volume_is_read_as_one(tmp_path: Path):
    c = _drive(tmp_path)
    (c / "Windows/System32/config").mkdir(parents=True)
    (c / "Windows/System32/config/SOFTWARE").write_bytes(b"not a hive at all")
    coll = open_collection(c)
    assert not isinstance(coll, FolderCollection)
    paths = {i.path for i in coll.listing()}
    assert paths == {
        "volume-C/C/BackLogs/W3SVC2/u_ex210303.log",
        "volume-C/C/Windows/Temp/lsass.dmp",
        "volume-C/C/Windows/System32/inetsrv/config/applicationHost.config",
    }
    notes = " | ".join(coll.notes)
    assert ("SOFTWARE is unreadable" in notes) or ("libregf binding is missing" in notes)
    assert "no L: volume" in notes
    assert isinstance(open_collection(tmp_path), FolderCollection)  # its parent stays a plain folder
