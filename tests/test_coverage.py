"""Coverage: what the logs span, what is missing, and which campaigns they cannot show."""

from __future__ import annotations

from pathlib import Path

from exhunt.scan import scan
from tests.conftest import INSTALL, httpproxy_log, iis_log, write


def test_logs_after_the_campaign_window_are_called_out(collection: Path):
    write(collection, f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2023011010-1.LOG",
          httpproxy_log([{"DateTime": "2023-01-10T10:00:00.000Z", "AnchorMailbox": "SMTP:a@corp.example"}]))  # fmt: skip
    result = scan(collection)
    (warning,) = result.warnings
    assert "ProxyLogon (2021-01 – 2021-03)" in warning and "2023-01-10" in warning
    assert "OWASSRF" not in warning  # rps/iis logs absent: nothing claimed about what no log covers
    cov = {c.family: c for c in result.coverage}
    assert cov["log_httpproxy"].records == 1 and cov["log_httpproxy"].first.year == 2023
    assert "no IIS logs (inetpub/logs/LogFiles/W3SVC1 and W3SVC2)" in result.missing


def test_logs_inside_the_window_give_no_warning(collection: Path):
    write(collection, f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2021030310-1.LOG",
          httpproxy_log([{"DateTime": "2021-03-03T10:00:00.000Z", "AnchorMailbox": "SMTP:a@corp.example"}]))  # fmt: skip
    write(collection, "EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log",
          iis_log(["2021-03-03 01:00:03 10.0.0.5 GET /owa/ - 443 - 10.1.1.1 Mozilla/5.0 - 200 0 0 9"]))  # fmt: skip
    warnings = scan(collection).warnings
    assert not any("ProxyLogon" in w for w in warnings)


def test_forged_dates_cannot_stretch_the_span_and_switch_the_warning_off(collection: Path):
    """Two lines dated 0001-01-01 and 9999-12-31 beside the real ones: the span and the campaign
    warning follow the bulk of the records, and the two are reported as suspicious timestamps."""
    real = [{"DateTime": f"2023-01-10T10:{m:02d}:00.000Z", "AnchorMailbox": "SMTP:a@corp.example"} for m in range(20)]
    forged = [{"DateTime": d, "AnchorMailbox": "SMTP:a@corp.example"} for d in ("0001-01-01T00:00:00.000Z", "9999-12-31T00:00:00.000Z")]  # fmt: skip
    write(collection, f"{INSTALL}/Logging/HttpProxy/Owa/HttpProxy_2023011010-1.LOG", httpproxy_log(real + forged))
    result = scan(collection)
    cov = {c.family: c for c in result.coverage}["log_httpproxy"]
    assert (cov.first.year, cov.last.year, cov.outliers) == (2023, 2023, 2)
    assert any("ProxyLogon (2021-01 – 2021-03)" in w for w in result.warnings)
    assert any("suspicious timestamps" in w for w in result.warnings)
