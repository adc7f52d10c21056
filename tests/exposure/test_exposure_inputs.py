"""Configuration state and build sources beyond logs (headers, file listings, HealthChecker), and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from exhunt.exposure import command
from exhunt.exposure.answer import CONDITIONAL, CONFIG_FIXED, CONFIG_MISSING, answer
from exhunt.exposure.build_sources import builds_from_file_listing, builds_from_headers, builds_from_healthchecker
from exhunt.exposure.config_state import read_configuration, read_extended_protection, read_setting_overrides

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
IIS = Path(".")  # the config_dir fixture is the IIS folder of the shared set


def run(*args: str):  # type: ignore[no-untyped-def]
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Root."""

    command.register(app)
    return CliRunner().invoke(app, ["exposure", *args], env=ENV)


# ----------------------------------------------------------------------------- Extended Protection


def test_shared_config_set_extended_protection_per_vdir(config_dir: Path) -> None:
    text = (config_dir / IIS / "applicationHost.config").read_text(encoding="utf-8-sig")
    vdirs = {(v.site, v.vdir): v for v in read_extended_protection(text) or []}
    # The file sets tokenChecking="None" on EWS and Autodiscover and nothing elsewhere (default None).
    assert vdirs[("Default Web Site", "EWS")].actual == "None" and not vdirs[("Default Web Site", "EWS")].ok
    assert vdirs[("Default Web Site", "Autodiscover")].ok  # not required there
    assert not vdirs[("Default Web Site", "OWA")].ok
    hardened = (config_dir / IIS / "applicationHost1.config").read_text(encoding="utf-8-sig")
    vdirs1 = {(v.site, v.vdir): v for v in read_extended_protection(hardened) or []}
    assert vdirs1[("Default Web Site", "OWA")].actual == "Require" and vdirs1[("Default Web Site", "OWA")].ok
    assert vdirs1[("Default Web Site", "EWS")].actual == "Allow" and vdirs1[("Default Web Site", "EWS")].ok
    assert vdirs1[("Exchange Back End", "EWS")].ok


def test_shared_config_set_decides_cve_2024_21410(config_dir: Path) -> None:
    state = read_configuration([config_dir])
    assert any("BadApplicationHost" in p for p in state.problems)  # the deliberately broken fixture
    assert len(state.extended_protection) >= 3
    result = answer("15.2.1748.43", config=state)
    ep = result.cve("CVE-2024-21410")
    assert ep.state == CONFIG_MISSING and "Extended Protection below" in ep.detail
    only_hardened = read_configuration([config_dir / IIS / "applicationHost1.config"])
    weak = [v for vs in only_hardened.extended_protection.values() for v in vs if not v.ok]
    state_fixed = answer("15.2.1748.43", config=only_hardened).cve("CVE-2024-21410").state
    assert state_fixed == (CONFIG_FIXED if not weak else CONFIG_MISSING)


def test_cli_reads_the_shared_config(config_dir: Path) -> None:
    result = run("--build", "15.2.1748.10", "--config", str(config_dir), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ep = next(c for c in data["answer"]["exposed"] if c["cve"] == "CVE-2024-21410")
    assert ep["state"] == CONFIG_MISSING
    files = data["answer"]["configuration"]["extended_protection"]
    assert any(p.endswith("applicationHost.config") for p in files)


# ----------------------------------------------------------------------------- setting overrides

FORMAT_LIST = """
Name          : DisableSigning
Reason        : test
ComponentName : Data
SectionName   : EnableSerializationDataSigning
Parameters    : {Enabled=False}
Server        :

Name          : Other
ComponentName : Transport
SectionName   : NonCompliantSenderSettings
Parameters    : {AddP2FromRegexMatchHeader=True}
"""


def test_setting_overrides_decide_fixes(tmp_path: Path) -> None:
    overrides = read_setting_overrides(FORMAT_LIST, "so.txt")
    assert {(o.section, o.parameter, o.value) for o in overrides} == {
        ("EnableSerializationDataSigning", "Enabled", "False"),
        ("NonCompliantSenderSettings", "AddP2FromRegexMatchHeader", "True"),
    }
    (tmp_path / "Get-SettingOverride.txt").write_text(FORMAT_LIST, encoding="utf-8")
    state = read_configuration([tmp_path])
    result = answer("15.2.1748.43", config=state)
    assert result.cve("CVE-2023-36439").state == CONFIG_MISSING  # signing turned off
    assert result.cve("CVE-2024-49040").state == CONFIG_FIXED  # override sets True: fix on
    assert result.cve("CVE-2025-53786").state == CONDITIONAL  # hybrid steps cannot be judged offline
    csv_text = '"Name","ComponentName","SectionName","Parameters"\n"x","Cafe","RemoveBackendCookieFromAutoDiscoverV2Response","{Enabled=False}"\n'
    assert read_setting_overrides(csv_text)[0].parameter == "Enabled"


# ----------------------------------------------------------------------------- build sources

EML = (
    "Received: from MBX01.corp.example (10.0.0.5) by EDGE01.corp.example (10.0.0.9)\r\n"
    " with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id\r\n"
    " 15.2.1748.10 via Frontend Transport; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
    "Received: from x by y with Microsoft SMTP Server id 15.2.2562.17; Tue, 1 Dec 2026 09:59:00 +0000\r\n"
    "Subject: hello [bold]x[/bold]\r\n\r\nbody mentions id 15.1.1.1\r\n"
)


def test_builds_from_headers() -> None:
    found = builds_from_headers(EML.encode())
    assert [str(f.build) for f in found] == ["15.2.1748.10", "15.2.2562.17"]
    assert found[0].seen is not None and found[0].seen.year == 2026
    msg = b"\xd0\xcf\x11\xe0" + ("Received: a with Microsoft SMTP Server id 15.1.2507.6; x").encode("utf-16-le")
    assert [str(f.build) for f in builds_from_headers(msg)] == ["15.1.2507.6"]
    assert builds_from_headers(b"Received: from a by b with SMTP id 15.2.1.1") == []


def test_builds_from_file_listing_and_healthchecker() -> None:
    listing = (
        "ProductVersion   FileVersion      FileName\n15.02.1748.010   15.02.1748.010   C:\\Exchange\\Bin\\ExSetup.exe\n"
    )
    assert {str(f.build) for f in builds_from_file_listing(listing)} == {"15.2.1748.10"}
    assert builds_from_file_listing("C:\\Windows\\notepad.exe 10.0.1.1") == []
    hc = "<Objs><S N='BuildVersion'>15.1.2507.44</S><S N='Other'>15.1.2507.6</S></Objs>"
    assert [str(f.build) for f in builds_from_healthchecker(hc)] == ["15.1.2507.44"]


def test_cli_headers_and_listing(tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(EML.encode())
    result = run("--headers", str(eml), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"]["build"] == "15.2.1748.10" and data["other_builds"][0]["build"] == "15.2.2562.17"
    empty = tmp_path / "e.eml"
    empty.write_text("Subject: nothing", encoding="utf-8")
    bad = run("--headers", str(empty))
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- CLI answers


def test_cli_terminal_fits_80_columns() -> None:
    result = run("--build", "15.2.1748.10")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    text = " ".join(result.stdout.split())
    assert "out of support since 2025-10-14" in text
    assert "CVE-2024-21410 (KEV 2024-02-15): fixed only with Extended Protection" in text
    assert "Apr25HU 2025-04-18" in text


def test_cli_as_of_and_json_schema() -> None:
    result = run("--build", "15.1.2106.2", "--as-of", "2021-03-02", "--json")
    data = json.loads(result.stdout)
    assert data["schema"] == "exhunt.exposure/2" and data["answer"]["as_of"] == "2021-03-02"
    assert {f["family"] for f in data["families"]} == {"proxylogon"}
    exposed = {c["cve"] for c in data["answer"]["exposed"]}
    assert {"CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858", "CVE-2021-27065"} <= exposed
    assert all(c["published"] <= "2021-03-02" for c in data["answer"]["exposed"])


@pytest.mark.parametrize(
    "args",
    [
        ["--build", "15.3.100.1"],
        ["--build", "15.1.2200.5"],
        ["--build", "x"],
        ["--build", "15.1.2106.2", "--as-of", "2021-13-01"],
    ],
)
def test_unknown_builds_and_bad_dates_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_build_newer_than_table() -> None:
    result = run("--build", "15.2.2600.1")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "2026-12-01" in text and "may be out of date" in text
    assert "patched" not in text


CLIXML = """<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
  <Obj RefId="0"><ToString>TurnOffSigning</ToString><Props>
    <S N="ComponentName">Data</S><S N="SectionName">EnableSerializationDataSigning</S>
    <Obj N="Parameters" RefId="1"><LST><S>Enabled=False</S></LST></Obj>
    <S N="Name">TurnOffSigning</S></Props></Obj>
</Objs>"""


def test_setting_overrides_from_clixml(tmp_path: Path) -> None:
    overrides = read_setting_overrides(CLIXML, "GetSettingOverride.xml")
    assert [(o.component, o.section, o.parameter, o.value, o.name) for o in overrides] == [
        ("Data", "EnableSerializationDataSigning", "Enabled", "False", "TurnOffSigning")
    ]
    hc = tmp_path / "HealthChecker.xml"
    hc.write_text(CLIXML.replace("</Objs>", "<S N='BuildVersion'>15.2.1748.43</S></Objs>"), encoding="utf-8")
    result = run("--healthchecker", str(hc), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"]["build"] == "15.2.1748.43"
    state = next(c for c in data["answer"]["exposed"] if c["cve"] == "CVE-2023-36439")["state"]
    assert state == CONFIG_MISSING
