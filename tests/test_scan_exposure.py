"""Exposure inside a scan: builds seen in the logs become windows; IIS config yields mitigations and
suspicious virtual directories."""

from __future__ import annotations

from pathlib import Path

from exhunt.scan import ScanOptions, scan
from tests.conftest import INSTALL, httpproxy_log, shared_path, write

APPHOST = "EXCH01/C/Windows/System32/inetsrv/config/applicationHost.config"


def test_builds_in_logs_become_exposure_windows(collection: Path):
    before = [{"DateTime": f"2021-03-0{d}T10:00:00.000Z", "MajorVersion": "15", "MinorVersion": "1",
               "BuildVersion": "2106", "RevisionVersion": "2"} for d in (1, 2, 3)]  # fmt: skip
    after = [{"DateTime": "2021-03-10T10:00:00.000Z", "MajorVersion": "15", "MinorVersion": "1",
              "BuildVersion": "2106", "RevisionVersion": "13"}]  # fmt: skip
    write(
        collection,
        f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2021030110-1.LOG",
        httpproxy_log(before, version="15.01.2106.002"),
    )
    write(
        collection,
        f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2021031010-1.LOG",
        httpproxy_log(after, version="15.01.2106.013"),
    )
    windows = scan(collection).exposure.windows
    assert [w["build"] for w in windows] == ["15.1.2106.2", "15.1.2106.13"]
    first, second = windows
    assert first["first_seen"].startswith("2021-03-01") and first["last_seen"].startswith("2021-03-03")
    assert "proxylogon" in first["vulnerable"] and "proxylogon" not in second["vulnerable"]
    assert "proxyshell" in second["vulnerable"]


def test_config_mitigation_and_programdata_vdir(collection: Path):
    original = shared_path("data", "exchange-config", "Diagnostics", "HealthChecker", "Tests", "DataCollection", "E19",
                           "Exchange", "IIS", "applicationHost.config").read_text(encoding="utf-8-sig")  # fmt: skip
    write(collection, APPHOST, original, crlf=False)
    clean = scan(collection)
    assert clean.exposure.mitigations == []
    assert not [f for f in clean.findings if f.rule.id == "config-vdir-suspicious-path"]
    rule = (
        '<rule name="X-BEResource Abort - inbound" stopProcessing="true"><match url=".*" />'
        '<conditions><add input="{HTTP_COOKIE}" pattern="(.*)X-BEResource=(.+)/(.+)~(.+)" /></conditions>'
        '<action type="AbortRequest" /></rule>'
    )
    vdir = '<virtualDirectory path="/zing" physicalPath="C:\\ProgramData\\ZING" />'
    head, tail = original.rsplit("</system.webServer>", 1)  # the last one: earlier ones sit in XML comments
    tampered = f"{head}<rewrite><rules>{rule}</rules></rewrite></system.webServer>{tail}"
    tampered = tampered.replace(
        '<application path="/owa"', f'<application path="/zing">{vdir}</application><application path="/owa"', 1
    )
    write(collection, APPHOST, tampered, crlf=False)
    result = scan(collection, ScanOptions(all_evidence=True))
    mitigations = result.exposure.mitigations
    assert [(m["family"], m["status"]) for m in mitigations] == [("proxylogon", "mitigated, not patched")]
    (finding,) = [f for f in result.findings if f.rule.id == "config-vdir-suspicious-path"]
    assert finding.evidence[0].path == APPHOST and "ZING" in finding.evidence[0].raw
