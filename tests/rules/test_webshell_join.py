"""Web shell <-> request join: use through IIS and HttpProxy, custom virtual directories, dormant shells
and 2xx probes for scripts that are not on disk."""

from __future__ import annotations

from pathlib import Path

from exhunt.scan import ScanOptions, scan
from tests.conftest import INSTALL, httpproxy_log, iis_log, shared_path, write
from tests.rules.test_webshell_content import SHELLS, fill

W3 = "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
HP = f"EXCH01/{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2021030301-1.LOG"
OWA_AUTH = f"EXCH01/{INSTALL}/FrontEnd/HttpProxy/owa/auth"
APPHOST = "EXCH01/C/Windows/System32/inetsrv/config/applicationHost.config"
V15 = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"


def iis(stem: str, status: str = "200", ip: str = "139.162.202.236", port: str = "443") -> str:
    return f"2021-03-03 01:00:00 10.10.1.20 POST {stem} - {port} - {ip} Mozilla/5.0 - {status} 0 0 15"


def shell(name: str = "cmd.aspx") -> bytes:
    return fill(SHELLS[name][0])


def found(root: Path) -> dict[str, list[tuple[str, int | None]]]:
    out: dict[str, list[tuple[str, int | None]]] = {}
    for f in scan(root, ScanOptions(all_evidence=True)).findings:
        out.setdefault(f.rule.id, []).extend((e.path, e.line) for e in f.evidence)
    return out


def standard_pages(root: Path) -> None:
    for name in ("logon.aspx", "logoff.aspx", "errorFE.aspx"):
        write(root, f"{OWA_AUTH}/{name}", '<%@ Page language="c#" Inherits="Microsoft.Exchange.HttpProxy.Logon" %>')


def test_default_mapping_use_dormant_and_probe(collection: Path):
    standard_pages(collection)
    write(collection, f"{OWA_AUTH}/used.aspx", shell())
    write(collection, "EXCH01/C/inetpub/wwwroot/aspnet_client/system_web/idle.aspx", shell("behinder.aspx"))
    write(collection, "EXCH01/C/inetpub/wwwroot/help/page.aspx", shell("chopper.aspx"))  # outside the listed folders
    write(collection, W3, iis_log([
        iis("/owa/auth/used.aspx"),           # 5: use
        iis("/help/page.aspx"),               # 6: use, outside the web-shell folders
        iis("/owa/auth/gone.aspx"),           # 7: 2xx, not on disk, folder collected -> probe
        iis("/owa/auth/logon.aspx"),          # 8: exists
        iis("/owa/auth/gone2.aspx", "404"),   # 9: refused -> no probe
        iis("/ecp/default.aspx"),             # 10: proxied to the back end -> not judged
        iis("/aspnet_client/nothere.aspx"),   # 11: folder holds no file -> not covered
    ]))  # fmt: skip
    got = found(collection)
    assert sorted(got["webshell-request"]) == [(W3, 5), (W3, 6)]
    assert got["webshell-dormant"] == [("EXCH01/C/inetpub/wwwroot/aspnet_client/system_web/idle.aspx", None)]
    assert got["webshell-probe-missing"] == [(W3, 7)]
    assert "webshell-request-httpproxy" not in got


def test_httpproxy_alone_shows_use_and_the_shell_is_not_dormant(collection: Path):
    write(collection, f"{OWA_AUTH}/used.aspx", shell("godzilla.ashx"))
    row = {"DateTime": "2021-03-03T01:00:00.000Z", "UrlStem": "/owa/auth/used.aspx", "HttpStatus": "200",
           "ClientIpAddress": "139.162.202.236", "Protocol": "Owa", "Method": "POST"}  # fmt: skip
    write(collection, HP, httpproxy_log([row]))
    got = found(collection)
    assert got["webshell-request-httpproxy"] == [(HP, 7)]
    assert "webshell-dormant" not in got and "webshell-request" not in got


def test_no_web_logs_no_dormant_claim(collection: Path):
    write(collection, f"{OWA_AUTH}/idle.aspx", shell())
    got = found(collection)
    assert "file-webshell-content" in got and "webshell-dormant" not in got


def _apphost(extra: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.applicationHost>
    <sites>
      <site name="Default Web Site" id="1">
        <application path="/" applicationPool="MSExchangeOWAAppPool">
          <virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" />
        </application>
        <application path="/owa" applicationPool="MSExchangeOWAAppPool">
          <virtualDirectory path="/" physicalPath="{V15}\\FrontEnd\\HttpProxy\\owa" />
        </application>
        {extra}
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def test_collected_virtual_directories_map_requests(collection: Path):
    extra = '<application path="/who"><virtualDirectory path="/" physicalPath="C:\\ProgramData\\COM" /></application>'
    write(collection, APPHOST, _apphost(extra))
    write(collection, "EXCH01/C/ProgramData/COM/x.aspx", shell("tunnel.aspx"))
    write(collection, "EXCH01/C/ProgramData/COM/readme.txt", "notes")
    write(collection, W3, iis_log([iis("/who/x.aspx"), iis("/who/missing.aspx"), iis("/WHO/X.aspx", "404")]))
    got = found(collection)
    assert sorted(got["webshell-request"]) == [(W3, 5), (W3, 7)]
    assert got["webshell-probe-missing"] == [(W3, 6)]
    assert "webshell-dormant" not in got
    assert "config-vdir-suspicious-path" in got


def test_a_collected_config_replaces_the_default_layout(collection: Path):
    """With applicationHost.config collected, /owa maps where the config says, not to the default folder."""
    moved = "D:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa"
    write(collection, APPHOST, _apphost("").replace(f"{V15}\\FrontEnd\\HttpProxy\\owa", moved))
    write(
        collection, "EXCH01/D/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth/s.aspx", shell()
    )
    write(collection, f"{OWA_AUTH}/t.aspx", shell())
    write(collection, W3, iis_log([iis("/owa/auth/s.aspx"), iis("/owa/auth/t.aspx")]))
    got = found(collection)
    assert got["webshell-request"] == [(W3, 5)]
    assert got["webshell-dormant"] == [(f"{OWA_AUTH}/t.aspx", None)]


def test_the_real_exchange_application_host_maps_front_and_back_end(collection: Path):
    """Exchange 2019's own applicationHost.config (CSS-Exchange HealthChecker fixture): /owa on the front
    end maps to FrontEnd\\HttpProxy\\owa, /ecp on the back end (port 444) to ClientAccess\\ecp."""
    real = shared_path("data", "exchange-config", "Diagnostics", "HealthChecker", "Tests", "DataCollection", "E19",
                       "Exchange", "IIS", "applicationHost.config").read_text(encoding="utf-8-sig")  # fmt: skip
    write(collection, APPHOST, real, crlf=False)
    write(collection, f"{OWA_AUTH}/fe.aspx", shell())
    write(collection, f"EXCH01/{INSTALL}/ClientAccess/ecp/be.aspx", shell("ant.aspx"))
    write(collection, f"EXCH01/{INSTALL}/ClientAccess/ecp/idle.aspx", shell("cc.aspx"))
    write(collection, W3, iis_log([iis("/owa/auth/fe.aspx"), iis("/ecp/be.aspx", port="444")]))
    got = found(collection)
    assert sorted(got["webshell-request"]) == [(W3, 5), (W3, 6)]
    assert got["webshell-dormant"] == [(f"EXCH01/{INSTALL}/ClientAccess/ecp/idle.aspx", None)]
