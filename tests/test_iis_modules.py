"""IIS modules and handlers compared with a stock IIS + Exchange install (exhunt.exposure.iis_modules)."""

from __future__ import annotations

import time
from pathlib import Path

from exhunt.exposure.iis_modules import INSIDE, OUTSIDE, placement, stock, unknown_modules
from exhunt.scan import ScanOptions, scan
from exhunt.synth.iis_host_config import STOCK_MANAGED, STOCK_NATIVE, application_host
from tests.conftest import shared_path

E19_IIS = (
    "data",
    "exchange-config",
    "Diagnostics",
    "HealthChecker",
    "Tests",
    "DataCollection",
    "E19",
    "Exchange",
    "IIS",
)
MODULE_RULES = {"iis-native-module-outside-install", "iis-managed-module-unknown-owa-ecp", "iis-module-not-stock"}
BACKDOOR = ("ExchangeHttpAuth", "C:\\ProgramData\\Microsoft\\Crypto\\httpauth.dll")
OWA_CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <modules>
      <add name="HttpProxy" type="Microsoft.Exchange.HttpProxy.ProxyModule, Microsoft.Exchange.FrontEndHttpProxy" />
      <!-- <add name="Commented" type="Not.Loaded.Module" /> -->
      <add name="ExtenderControlDesigner" type="ExtenderControlDesigner.Owa, Owa.Extender" />
    </modules>
  </system.webServer>
</configuration>
"""


def _shared_configs() -> list[Path]:
    """The benign Exchange 2019 IIS configuration (CSS-Exchange HealthChecker fixtures), or skip."""
    return sorted(shared_path(*E19_IIS).rglob("*.config"))


def test_the_benign_exchange_2019_configuration_has_no_unknown_module() -> None:
    configs = _shared_configs()
    assert len(configs) > 20
    unknown = [(p.name, m) for p in configs for m in unknown_modules(p.read_bytes(), str(p))]
    assert not unknown, unknown


def test_the_benign_exchange_2019_configuration_is_read_module_by_module() -> None:
    """The benign files are clean because each module was compared, not because nothing was read."""
    host = next(p for p in _shared_configs() if p.name == "applicationHost.config").read_text("utf-8-sig")
    tampered = host.replace('<add name="kerbauth"', f'<add name="{BACKDOOR[0]}" image="{BACKDOOR[1]}" /><add name="kerbauth"', 1)  # fmt: skip
    tampered = tampered.replace("\\Bin\\kerbauth.dll", "\\Bin\\kerbauth2.dll", 1)
    found = unknown_modules(tampered, "applicationHost.config")
    assert [(m.name, m.placement) for m in found] == [(BACKDOOR[0], OUTSIDE), ("kerbauth", INSIDE)]
    lines = tampered.splitlines()
    assert all(f'name="{m.name}"' in lines[m.line - 1] for m in found)
    assert "kerbauth2.dll instead of kerbauth.dll" in found[1].reason


def test_a_scan_of_the_benign_configuration_raises_no_module_finding(tmp_path: Path) -> None:
    result = scan(shared_path(*E19_IIS), ScanOptions(case=tmp_path / "case.duckdb"))
    assert not [f for f in result.findings if f.rule.id in MODULE_RULES]


def test_the_generated_stock_config_is_clean_and_the_planted_module_is_found_at_its_line() -> None:
    clean, none = application_host()
    assert none is None and unknown_modules(clean, "applicationHost.config") == []
    text, line = application_host(BACKDOOR)
    found = unknown_modules(text, "EXCH01/C/Windows/System32/inetsrv/config/applicationHost.config")
    assert [(m.section, m.name, m.image, m.placement, m.line) for m in found] == [
        ("globalModules", BACKDOOR[0], BACKDOOR[1], OUTSIDE, line)
    ]
    assert BACKDOOR[1] in text.split("\r\n")[line - 1]
    known = stock()
    assert all(n.lower() in known.native for n, _ in STOCK_NATIVE)
    assert all(t.split(",")[0].lower() in known.managed for _, t in STOCK_MANAGED)


def test_a_scan_reports_the_planted_native_module_and_owa_module_with_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "collection"
    host_rel = "EXCH01/C/Windows/System32/inetsrv/config/applicationHost.config"
    owa_rel = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/web.config"
    text, line = application_host(BACKDOOR)
    for rel, body in ((host_rel, text), (owa_rel, OWA_CONFIG)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body.encode())
    result = scan(root, ScanOptions(case=tmp_path / "case.duckdb"))
    hits = {(f.rule.id, f.severity, e.path, e.line) for f in result.findings for e in f.evidence}
    assert ("iis-native-module-outside-install", "high", host_rel, line) in hits
    assert ("iis-managed-module-unknown-owa-ecp", "high", owa_rel, 7) in hits
    assert not [h for h in hits if h[0] == "iis-module-not-stock"], hits  # each entry raises one rule
    assert result.verdict == "COMPROMISED"


def test_a_stock_class_name_from_a_foreign_assembly_is_not_stock() -> None:
    stock_type = "Microsoft.Exchange.HttpProxy.ProxyModule, Microsoft.Exchange.FrontEndHttpProxy"
    signed = stock_type + ", Version=15.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
    assert unknown_modules(OWA_CONFIG.replace(stock_type, signed), "owa/web.config")[0].name != "HttpProxy"
    for forged in ("Microsoft.Exchange.HttpProxy.ProxyModule, Evil.Loader",
                   signed.replace("31bf3856ad364e35", "0123456789abcdef")):  # fmt: skip
        found = unknown_modules(OWA_CONFIG.replace(stock_type, forged), "owa/web.config")
        assert [m.name for m in found] == ["HttpProxy", "ExtenderControlDesigner"], forged
        assert found[0].type == forged and "foreign" in found[0].reason


def test_an_unknown_module_outside_owa_ecp_or_inside_system32_is_medium() -> None:
    ews = OWA_CONFIG.replace("ExtenderControlDesigner.Owa", "Some.Vendor.Module")
    (entry,) = unknown_modules(ews, "C:/Exchange/V15/FrontEnd/HttpProxy/ews/web.config")
    assert (entry.web_app, entry.type) == ("", "Some.Vendor.Module")
    located = ews.replace("<system.webServer>", '<location path="Default Web Site/ecp"><system.webServer>', 1)
    (entry,) = unknown_modules(located, "C:/Windows/System32/inetsrv/config/applicationHost.config")
    assert (entry.web_app, entry.scope) == ("ecp", "Default Web Site/ecp")
    assert placement("%windir%\\System32\\inetsrv\\evil.dll") == INSIDE
    for outside in ("C:\\Windows\\Temp\\C:\\Windows\\System32\\x.dll", "C:\\Windows\\System32\\..\\..\\Users\\x.dll",
                    "\\\\10.0.0.5\\share\\x.dll", "x.dll", "C:\\ProgramData\\x.dll", ""):  # fmt: skip
        assert placement(outside) == OUTSIDE, outside


def test_hostile_configs_do_not_break_the_reader() -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE c [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + ']><configuration><system.webServer><globalModules><add name="&i;" image="C:\\Temp\\&i;.dll" />'
        "</globalModules></system.webServer></configuration>"
    )
    started = time.monotonic()
    (entry,) = unknown_modules(laughs, "applicationHost.config")
    assert entry.name == "&i;" and entry.placement == OUTSIDE  # entities are never expanded
    deep = (
        "<configuration>" + "<a>" * 200_000 + '<globalModules><add name="Deep" image="D:\\d.dll"/>' + "</a>" * 200_000
    )
    assert [m.name for m in unknown_modules(deep, "applicationHost.config")] == ["Deep"]
    many = '<add name="M" image="C:\\Temp\\m.dll" />\n' * 20_000
    huge = f"<configuration><globalModules>\n{many}</globalModules>\n<!-- {'x' * 2_000_000}"
    found = unknown_modules(huge, "applicationHost.config")
    assert len(found) == 20_000 and found[-1].line == 20_001
    truncated = '<configuration><globalModules><add name="Cut" image="C:\\Temp\\cut.dll" /><add name="Half" ima'
    assert [m.name for m in unknown_modules(truncated.encode(), "applicationHost.config")] == ["Cut"]
    assert unknown_modules(b"\xff\xfe\x00garbage<<<>>>\"'", "web.config") == []
    assert time.monotonic() - started < 20
