"""EOMT / EOMTv2 URL-rewrite rules and tampered virtual directories in IIS config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from exhunt.exposure.mitigations import (
    DISABLED,
    MITIGATED,
    find_mitigations,
    suspicious_virtual_directories,
)

EOMT_RULES = """
    <system.webServer>
        <rewrite>
            <rules>
                <rule name="X-AnonResource-Backend Abort - inbound" patternSyntax="ECMAScript" stopProcessing="false">
                    <match url=".*" />
                    <conditions>
                        <add input="{HTTP_COOKIE}" pattern="(.*)X-AnonResource-Backend(.*)" />
                    </conditions>
                    <action type="AbortRequest" />
                </rule>
                <rule name="X-BEResource Abort - inbound" patternSyntax="ECMAScript" stopProcessing="true">
                    <match url=".*" />
                    <conditions>
                        <add input="{HTTP_COOKIE}" pattern="(.*)X-BEResource=(.+)/(.+)~(.+)" />
                    </conditions>
                    <action type="AbortRequest" />
                </rule>
            </rules>
        </rewrite>
    </system.webServer>
"""

# Markers whose presence in a file means it may legitimately contain a mitigation rule.
MARKERS = ("X-AnonResource-Backend", "X-BEResource", "(?=.*autodiscover)(?=.*powershell)", "PowerShell - inbound")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig", errors="replace")


def with_rules(text: str, rules: str = EOMT_RULES) -> str:
    head, tail = text.rsplit("</configuration>", 1)
    return head + rules + "</configuration>" + tail


# ----------------------------------------------------------------------------- real samples


def test_samples_without_rules_have_no_mitigations(config_dir: Path) -> None:
    files = sorted(config_dir.rglob("*.config"))
    assert len(files) >= 30
    checked = 0
    for path in files:
        text = read(path)
        if any(marker in text for marker in MARKERS):
            continue
        assert find_mitigations(text, str(path)) == [], path.name
        assert suspicious_virtual_directories(text, str(path)) == [], path.name
        checked += 1
    assert checked >= 30


def test_sample_with_proxynotshell_rules_is_found_despite_broken_xml(config_dir: Path) -> None:
    # DefaultWebSite_web1.config is deliberately malformed (<system.web> not closed) and carries
    # three URL-rewrite rules with Microsoft's ProxyNotShell pattern (EEMS, IIS-manager default name, EOMTv2).
    path = config_dir / "DefaultWebSite_web1.config"
    if not path.exists():
        pytest.skip(f"{path} not in the shared samples")
    found = find_mitigations(read(path), str(path))
    assert {m.rule_name for m in found} == {
        "EEMS M1.1 PowerShell - inbound",
        "RequestBlockingRule1",
        "PowerShell - inbound",
    }
    assert {m.family for m in found} == {"proxynotshell"}
    assert all(m.status == MITIGATED and m.path == str(path) for m in found)
    by_name = {m.rule_name: m for m in found}
    assert by_name["PowerShell - inbound"].tool.startswith("EOMTv2")
    assert by_name["PowerShell - inbound"].matched_by == "name and pattern"
    assert by_name["RequestBlockingRule1"].matched_by == "pattern"
    assert by_name["EEMS M1.1 PowerShell - inbound"].tool == "Exchange Emergency Mitigation service"
    lines = read(path).splitlines()
    for m in found:
        assert m.line is not None and m.rule_name in lines[m.line - 1]


def test_sample_web_config_with_eomt_rules_is_mitigated(config_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "web.config"
    copy.write_text(with_rules(read(config_dir / "DefaultWebSite_web.config")), encoding="utf-8")
    found = find_mitigations(copy.read_text(encoding="utf-8"), str(copy))
    assert [m.rule_name for m in found] == ["X-AnonResource-Backend Abort - inbound", "X-BEResource Abort - inbound"]
    for m in found:
        assert (m.family, m.cves, m.status, m.path) == ("proxylogon", ("CVE-2021-26855",), MITIGATED, str(copy))
        assert m.tool == "EOMT (March 2021)" and m.action == "AbortRequest"
        assert m.matched_by == "name and pattern"


def test_sample_application_host_with_location_rules(config_dir: Path, tmp_path: Path) -> None:
    rules = f'<location path="Default Web Site">{EOMT_RULES}</location>'
    text = with_rules(read(config_dir / "applicationHost.config"), rules)
    found = find_mitigations(text, "applicationHost.config")
    assert len(found) == 2
    assert {m.scope for m in found} == {"Default Web Site"}


def test_broken_copy_still_found_by_fallback(config_dir: Path) -> None:
    text = with_rules(read(config_dir / "DefaultWebSite_web.config"))
    broken = text.replace("</system.web>", "", 1)  # no longer well-formed XML
    found = find_mitigations(broken, "web.config")
    assert [m.rule_name for m in found] == ["X-AnonResource-Backend Abort - inbound", "X-BEResource Abort - inbound"]
    assert [m.line for m in found] == [m.line for m in find_mitigations(text, "web.config")]


# ----------------------------------------------------------------------------- small inputs


@pytest.mark.parametrize("broken", [False, True])
def test_disabled_and_commented_rules(broken: bool) -> None:
    rules = """<system.webServer><rewrite><rules>
      <!-- <rule name="X-BEResource Abort - inbound"><match url=".*"/></rule> -->
      <rule name="PowerShell - inbound" enabled="false" stopProcessing="true">
        <match url=".*" />
        <conditions><add input="{UrlDecode:{REQUEST_URI}}" pattern="(?=.*autodiscover)(?=.*powershell)" /></conditions>
        <action type="AbortRequest" />
      </rule></rules></rewrite></system.webServer>"""
    text = f"<configuration>{rules}</configuration>" + ("<oops" if broken else "")
    found = find_mitigations(text, "w.config")
    assert [(m.rule_name, m.status, m.family) for m in found] == [("PowerShell - inbound", DISABLED, "proxynotshell")]


def test_unrelated_rewrite_rules_are_ignored() -> None:
    text = """<configuration><system.webServer><rewrite><rules>
      <rule name="HTTP to HTTPS"><match url="(.*)"/><action type="Redirect" url="https://{HTTP_HOST}/{R:1}"/></rule>
      </rules></rewrite></system.webServer></configuration>"""
    assert find_mitigations(text, "w.config") == []


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\x00\xff\xfe", "<<<>>>", "not xml at all", "<configuration>", "<rule name='x'",
     '<rule name="X-BEResource Abort - inbound"', "<!-- unterminated", "<a b='c>" * 1000,
     '<!DOCTYPE x [<!ENTITY a "aaaa">]><configuration>&a;</configuration>', "\ufeff<?xml version='1.0'?><x/>"],
)  # fmt: skip
def test_bad_content_never_raises(text: str) -> None:
    assert isinstance(find_mitigations(text, "bad.config"), list)
    assert isinstance(suspicious_virtual_directories(text, "bad.config"), list)


def test_bytes_are_tolerated() -> None:
    text = f"<configuration>{EOMT_RULES}</configuration>".encode()
    assert len(find_mitigations(text, "w.config")) == 2  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- virtual directories

APP_HOST = """<configuration><system.applicationHost><sites>
  <site name="Default Web Site" id="1">
    <application path="/" applicationPool="DefaultAppPool">
      <virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" />
    </application>
    <application path="/owa/auth/Current/themes" applicationPool="MSExchangeOWAAppPool">
      <virtualDirectory path="/" physicalPath="C:\\ProgramData\\COM\\themes" />
    </application>
    <application path="/ecp/x" applicationPool="MSExchangeECPAppPool">
      <virtualDirectory path="/" physicalPath="%SystemDrive%\\Users\\Public\\x" />
      <virtualDirectory path="/y" physicalPath="C:/programdata/zoo" />
    </application>
    <application path="/fine">
      <virtualDirectory path="/" physicalPath="C:\\ProgramDataX\\fine" />
      <virtualDirectory path="/z" physicalPath="D:\\Users2" />
    </application>
  </site>
</sites></system.applicationHost></configuration>"""


@pytest.mark.parametrize("broken", [False, True])
def test_suspicious_virtual_directories(broken: bool) -> None:
    text = APP_HOST.replace("</sites>", "") if broken else APP_HOST
    found = suspicious_virtual_directories(text, "applicationHost.config")
    assert [(v.site, v.application, v.virtual_directory) for v in found] == [
        ("Default Web Site", "/owa/auth/Current/themes", "/"),
        ("Default Web Site", "/ecp/x", "/"),
        ("Default Web Site", "/ecp/x", "/y"),
    ]
    assert [v.physical_path for v in found] == [
        "C:\\ProgramData\\COM\\themes",
        "%SystemDrive%\\Users\\Public\\x",
        "C:/programdata/zoo",
    ]
    assert "ProgramData" in found[0].reason and "Users" in found[1].reason
    lines = text.splitlines()
    for v in found:
        assert v.line is not None and v.physical_path in lines[v.line - 1]
    assert found[0].to_dict()["path"] == "applicationHost.config"


def test_sample_application_host_with_tampered_vdir(config_dir: Path) -> None:
    text = read(config_dir / "applicationHost.config")
    assert suspicious_virtual_directories(text, "a") == []
    marker = '<virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" />'
    assert marker in text
    tampered = text.replace(
        marker, marker + '\n<virtualDirectory path="/aux" physicalPath="C:\\ProgramData\\AUX\\x" />', 1
    )
    found = suspicious_virtual_directories(tampered, "a")
    assert [(v.site, v.application, v.virtual_directory) for v in found] == [("Default Web Site", "/", "/aux")]
