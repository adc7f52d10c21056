"""exhunt.synth: determinism, answer-key accuracy, benign-only, format quirks, size control."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from datetime import date
from pathlib import Path

import pytest

from exhunt.errors import UsageError
from exhunt.synth import FAMILIES, expand_families, generate
from exhunt.synth.intrusion import RULES as INTRUSION_RULES
from exhunt.synth.model import ATTACKER_IPS

RULES = {
    "proxylogon-ssrf-anchor", "proxylogon-vdir-reset", "proxylogon-ssrf-cookie", "proxylogon-ecp-js-post",
    "ssrf-machine-account-backend", "proxylogon-vdir-script-ecp", "cmdlet-vdir-script", "proxylogon-oab-file-write",
    "proxylogon-um-deserialization", "file-webshell-location", "webshell-access", "process-webserver-shell",
    "process-lsass-dump", "context-lsass-dump-file", "process-archive-staging", "context-staging-archive",
    "ews-ssrf-mailbox-access", "proxyshell-autodiscover-success", "proxyshell-autodiscover-attempt",
    "cmdlet-export-role-assignment", "cmdlet-mailbox-export", "cmdlet-remove-export-request",
    "file-webshell-pst-or-certreq", "proxynotshell-autodiscover-powershell", "owassrf-owa-powershell",
    "owassrf-rps-browser-client", "process-powercat-nishang", "process-exchange-snapin", "file-event-webshell-write",
    "log-cleared", "cmdlet-cert-request-webpath", "cmdlet-transport-agent", "cmdlet-mailbox-access-change",
    "mail-forward-external", "file-webshell-content", "webshell-dormant", "webshell-request", "webshell-probe-missing",
    "process-webworker-access",
} | INTRUSION_RULES  # fmt: skip


def physical_lines(path: Path) -> list[str]:
    """Lines as numbered by the answer key: split on LF, BOM and CR stripped."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return [ln.rstrip("\r") for ln in data.decode("utf-8").split("\n")]


def tree_digest(root: Path) -> str:
    """Paths, mtimes and bytes of the host tree, plus the answer key's bytes."""
    h = hashlib.sha256((root / "answer_key.json").read_bytes())
    for p in sorted((root / "EXCH01").rglob("*")):
        rel = p.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + str(int(p.stat().st_mtime)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("full")
    key = generate(out, seed=7, users=6, days=3, plant=frozenset({"all"}))
    return out, key


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("benign")
    key = generate(out, seed=7, users=6, days=3, benign_only=True)
    return out, key


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ka = generate(a, seed=3, users=4, days=2, plant=frozenset({"all"}))
    kb = generate(b, seed=3, users=4, days=2, plant=frozenset({"all"}))
    generate(c, seed=4, users=4, days=2, plant=frozenset({"all"}))
    assert tree_digest(a) == tree_digest(b)
    assert ka == kb
    assert tree_digest(a) != tree_digest(c)


def test_answer_key_written_and_returned(full: tuple[Path, dict]) -> None:
    out, key = full
    assert json.loads((out / "answer_key.json").read_text()) == key
    assert key["generator"]["families"] == sorted(FAMILIES)
    assert key["host"] == "EXCH01"
    for section in ("traces", "benign", "quirks"):
        for e in key[section]:
            assert "\\" not in e["path"] and not e["path"].startswith("/")


def test_every_trace_exists_with_its_marker(full: tuple[Path, dict]) -> None:
    out, key = full
    assert key["traces"]
    lines_cache: dict[str, list[str]] = {}
    t0, t1 = key["period"]["from"], key["period"]["to"]
    for tr in key["traces"]:
        assert tr["rule"] in RULES, tr
        assert tr["family"] in FAMILIES
        assert t0 <= tr["time"] < t1
        p = out / tr["path"]
        assert p.is_file(), tr
        if tr["line"] is None:
            assert tr["marker"].encode() in p.read_bytes(), tr
            continue
        lines = lines_cache.setdefault(tr["path"], physical_lines(p))
        assert 1 <= tr["line"] <= len(lines), tr
        assert tr["marker"] in lines[tr["line"] - 1], (tr, lines[tr["line"] - 1][:300])


def test_every_required_rule_is_planted(full: tuple[Path, dict]) -> None:
    _, key = full
    required = {t["rule"] for t in key["traces"] if t["required"]}
    assert required == RULES
    ids = [t["id"] for t in key["traces"]]
    assert len(ids) == len(set(ids))


def test_proxylogon_chain_details(full: tuple[Path, dict]) -> None:
    out, key = full
    by_rule: dict[str, list[dict]] = {}
    for t in key["traces"]:
        by_rule.setdefault(t["rule"], []).append(t)

    def line(t: dict) -> str:
        return physical_lines(out / t["path"])[t["line"] - 1]

    reset = line(by_rule["proxylogon-vdir-reset"][0])
    assert "X-BEResource-Cookie" in reset and ",130.255.189.21," in reset and ",200,200," in reset
    anchors = [line(t) for t in by_rule["proxylogon-ssrf-anchor"]]
    assert not any("/autodiscover/autodiscover.xml" in a for a in anchors)  # excluded by Test-ProxyLogon
    assert any(",241,241," in a and "proxyLogon.ecp" in a for a in anchors)
    be = [line(t) for t in by_rule["ssrf-machine-account-backend"] if t["required"]]
    assert any("/ecp/DDI/DDIService.svc/SetObject schema=ResetOABVirtualDirectory" in b for b in be)
    assert all(" 444 CORP\\EXCH01$ " in b for b in be)
    ews = [line(t) for t in by_rule["ews-ssrf-mailbox-access"]]
    assert {op for op in ("GetFolder", "FindItem", "GetItem") if any(f",{op}," in e for e in ews)} == {
        "GetFolder",
        "FindItem",
        "GetItem",
    }
    shell = out / next(t["path"] for t in by_rule["file-webshell-location"] if "RedirSuiteServerProxy" in t["path"])
    text = shell.read_text()
    for needle in (
        "ExternalUrl",
        "InternalAuthenticationMethods",
        "ExtendedProtectionTokenChecking",
        '<script language="JScript" runat="server">function Page_Load(){eval(Request["',
    ):
        assert needle in text
    assert (out / "EXCH01/C/root/lsass.dmp").read_bytes().startswith(b"MDMP")
    assert (out / "EXCH01/C/ProgramData/it.zip").read_bytes().startswith(b"PK\x03\x04")
    luif = out / "EXCH01/C/inetpub/wwwroot/aspnet_client/luifdecggoqmansn.aspx"
    assert luif.read_bytes().startswith(b"!BDN")
    # planted files carry their attack time
    for t in key["traces"]:
        if t["line"] is None and t["required"]:
            mtime = os.stat(out / t["path"]).st_mtime
            assert abs(mtime - _epoch(t["time"])) < 2, t


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=__import__("datetime").UTC).timestamp()


def test_benign_entries_are_clean(full: tuple[Path, dict]) -> None:
    out, key = full
    kinds = {b["kind"] for b in key["benign"]}
    for k in (
        "scanner-probe",
        "legit-anchor",
        "vendor-zip",
        "health-probe",
        "legit-vdir-change",
        "oab-download-completed",
        "w3wp-csc",
    ):
        assert k in kinds
    attack_ips = set(ATTACKER_IPS.values())
    for b in key["benign"]:
        p = out / b["path"]
        assert p.exists(), b
        if b["line"] is None:
            continue
        ln = physical_lines(p)[b["line"] - 1]
        assert not any(ip in ln for ip in attack_ips), b
        assert "<script" not in ln
    for b in key["benign"]:
        if b["kind"] == "legit-anchor":
            ln = physical_lines(out / b["path"])[b["line"] - 1]
            assert re.search(r"ServerInfo~(localhost[^,]*/|[^,]*/autodiscover)", ln), ln


def test_benign_only_has_no_traces_and_no_attack_ip(benign: tuple[Path, dict]) -> None:
    out, key = benign
    assert key["traces"] == []
    assert key["attacker_ips"] == {}
    needles = [ip.encode() for ip in ATTACKER_IPS.values()] + [
        b"RedirSuiteServerProxy",
        b"xx.aspx",
        b"python-requests",
        b"ExchangeServicesClient/0.0.0.0",
        b"X-BEResource-Cookie",
        b"powercat",
        b"lsass",
    ]
    for p in (out / "EXCH01").rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            for n in needles:
                assert n not in data, (p, n)
    assert not (out / "EXCH01/C/root").exists()
    assert not (out / "EXCH01/C/ProgramData/it.zip").exists()


def test_benign_traffic_is_the_same_with_or_without_attacks(full: tuple[Path, dict], benign: tuple[Path, dict]) -> None:
    """Planting only adds lines: a file free of traces is byte-identical to its benign-only twin."""
    out_a, key = full
    out_b, _ = benign
    touched = {t["path"] for t in key["traces"]} | set(key["mailbox_theft"]["files"])
    rel = "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Mapi"
    for p in sorted((out_a / rel).iterdir())[:10]:
        r = p.relative_to(out_a).as_posix()
        if r not in touched:
            assert p.read_bytes() == (out_b / r).read_bytes()


def _quirk(key: dict, kind: str) -> list[dict]:
    found = [q for q in key["quirks"] if q["kind"] == kind]
    assert found, kind
    return found


def test_quirks_really_exist(full: tuple[Path, dict]) -> None:
    out, key = full
    q = _quirk(key, "utf8-bom")[0]
    assert (out / q["path"]).read_bytes().startswith(b"\xef\xbb\xbf")
    q = _quirk(key, "crlf-line-endings")[0]
    data = (out / q["path"]).read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") > 5
    q = _quirk(key, "lf-line-endings")[0]
    data = (out / q["path"]).read_bytes()
    assert b"\r" not in data and data.count(b"\n") > 5
    q = _quirk(key, "bare-header-row")[0]
    lines = physical_lines(out / q["path"])
    assert lines[0].startswith("DateTime,RequestId,") and lines[1] == "#Software: Microsoft Exchange Server"
    q = _quirk(key, "no-bare-header-row")[0]
    assert physical_lines(out / q["path"])[0] == "#Software: Microsoft Exchange Server"
    for cols in (70, 74):
        q = _quirk(key, f"httpproxy-fields-{cols}")[0]
        ln = physical_lines(out / q["path"])[q["line"] - 1]
        assert ln.startswith("#Fields: ") and len(ln[9:].split(",")) == cols
    q = _quirk(key, "truncated-last-line")[0]
    p = out / q["path"]
    assert not p.read_bytes().endswith(b"\n")
    lines = physical_lines(p)
    assert q["line"] == len(lines)
    fields = next(ln for ln in lines if ln.startswith("#Fields: "))[9:].split(",")
    assert len(next(csv.reader([lines[-1]]))) < len(fields)
    q = _quirk(key, "ragged-row")[0]
    lines = physical_lines(out / q["path"])
    fields = next(ln for ln in lines if ln.startswith("#Fields: "))[9:].split(",")
    assert 1 < len(next(csv.reader([lines[q["line"] - 1]]))) < len(fields)
    assert q["line"] < len(lines)
    q = _quirk(key, "quoted-comma-doubled-quote")[0]
    row = next(csv.reader([physical_lines(out / q["path"])[q["line"] - 1]]))
    assert any("," in v and '"' in v for v in row)
    rep = _quirk(key, "iis-fields-repeated")
    chg = _quirk(key, "iis-fields-changed")
    for qq in rep + chg:
        lines = physical_lines(out / qq["path"])
        assert lines[qq["line"] - 1].startswith("#Fields: ") and qq["line"] > 4
    assert any("cs-host" in physical_lines(out / c["path"])[c["line"] - 1] for c in chg)
    q = _quirk(key, "ua-comma-stripped")[0]
    assert "(KHTML  like Gecko)" in physical_lines(out / q["path"])[q["line"] - 1]
    q = _quirk(key, "ua-plus")[0]
    assert "(KHTML,+like+Gecko)" in physical_lines(out / q["path"])[q["line"] - 1]
    q = _quirk(key, "iis-dash-empty")[0]
    assert " - " in physical_lines(out / q["path"])[q["line"] - 1]


def _hp_files(out: Path) -> list[Path]:
    return sorted((out / "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy").rglob("*.LOG"))


def test_httpproxy_rows_bind_to_their_own_fields(full: tuple[Path, dict]) -> None:
    out, key = full
    odd = {(q["path"], q["line"]) for q in key["quirks"] if q["kind"] in ("ragged-row", "truncated-last-line")}
    seen_cols = set()
    for p in _hp_files(out):
        rel = p.relative_to(out).as_posix()
        lines = physical_lines(p)
        fields = next(ln for ln in lines if ln.startswith("#Fields: "))[9:].split(",")
        seen_cols.add(len(fields))
        last = None
        for i, ln in enumerate(lines, 1):
            if not ln or ln.startswith("#") or ln.startswith("DateTime,"):
                continue
            row = next(csv.reader([ln]))
            if (rel, i) not in odd:
                assert len(row) == len(fields), (rel, i)
            assert last is None or row[0] >= last, (rel, i)
            last = row[0]
    assert seen_cols == {70, 74}


def test_iis_rows_are_time_ordered_and_correlate(full: tuple[Path, dict]) -> None:
    out, _ = full
    iis = out / "EXCH01/C/inetpub/logs/LogFiles"
    be_ids: set[str] = set()
    for p in sorted((iis / "W3SVC2").glob("u_ex*.log")):
        be_ids.update(re.findall(r"cafeReqId=([0-9a-f-]{36});", p.read_text()))
    hp_ids = set()
    for p in _hp_files(out):
        for ln in physical_lines(p):
            if ln and not ln.startswith(("#", "DateTime,")):
                hp_ids.add(ln.split(",")[1])
    checked = 0
    for p in sorted((iis / "W3SVC1").glob("u_ex*.log")):
        last = ""
        for ln in physical_lines(p):
            if not ln or ln.startswith("#"):
                continue
            parts = ln.split(" ")
            assert parts[0] + parts[1] >= last
            last = parts[0] + parts[1]
            m = re.search(r"cafeReqId=([0-9a-f-]{36});", ln)
            if m and " /mapi/emsmdb/ " in ln and " 200 " in ln:
                assert m.group(1) in be_ids and m.group(1) in hp_ids
                checked += 1
    assert checked > 50


def test_event_lines_are_winlogbeat_json(full: tuple[Path, dict]) -> None:
    out, _ = full
    for name in ("application", "msexchange-management", "security", "sysmon"):
        p = out / f"EXCH01/EventLogs/winlogbeat-{name}.ndjson"
        last_rec, last_ts = 0, ""
        for ln in p.read_text().splitlines():
            ev = json.loads(ln)
            w = ev["winlog"]
            assert ev["event"]["code"] == str(w["event_id"])
            assert w["computer_name"] == "EXCH01.corp.example"
            assert w["record_id"] > last_rec and ev["@timestamp"] >= last_ts
            last_rec, last_ts = w["record_id"], ev["@timestamp"]
            if w["channel"] == "MSExchange Management":
                assert w["provider_name"] == "MSExchange CmdletLogs" and "param1" in w["event_data"]


def test_builds_switch_with_the_march_su(tmp_path: Path) -> None:
    key = generate(tmp_path, users=3, days=2, start=date(2021, 3, 8), plant=frozenset({"webshells"}))
    assert [b["build"] for b in key["builds"]] == ["15.1.2106.2", "15.1.2106.13"]
    assert key["builds"][0]["to"] == key["builds"][1]["from"] == "2021-03-09T18:00:00.000Z"
    logs = tmp_path / "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Mapi"
    assert "#Version: 15.01.2106.002" in (logs / "HttpProxy_2021030917-1.LOG").read_text("utf-8")
    late = (logs / "HttpProxy_2021030920-1.LOG").read_text("utf-8")
    assert "#Version: 15.01.2106.013" in late and ",15,1,2106,13," in late and ",15.01.2106.013," in late
    auth = tmp_path / "EXCH01/C/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth"
    assert (auth / "15.1.2106.2").is_dir() and (auth / "15.1.2106.13").is_dir()


def test_attack_dates_follow_the_published_chain(tmp_path: Path) -> None:
    key = generate(tmp_path / "a", users=3, days=4, start=date(2021, 3, 1))
    pl = [t for t in key["traces"] if t["rule"] == "proxylogon-ssrf-anchor"]
    assert pl[0]["time"].startswith("2021-03-03T04:1")
    key = generate(tmp_path / "b", users=3, days=1, start=date(2020, 12, 1), plant=frozenset({"all"}))
    assert all(t["time"].startswith("2020-12-01") for t in key["traces"])


def test_target_mb_scales_size(tmp_path: Path) -> None:
    small = generate(tmp_path / "s", users=3, days=1, target_mb=6, benign_only=True)["stats"]["log_bytes"]
    big = generate(tmp_path / "b", users=3, days=1, target_mb=14, benign_only=True)["stats"]["log_bytes"]
    assert 5.4e6 < small < 6.6e6
    assert 12.6e6 < big < 15.4e6
    on_disk = sum(
        p.stat().st_size
        for p in (tmp_path / "b").rglob("*")  # every host: EXCH01 and the DC
        if p.is_file() and (p.suffix in (".LOG", ".log", ".ndjson"))
    )
    assert on_disk == big


def test_family_names_and_usage_errors(tmp_path: Path) -> None:
    assert expand_families({"all"}) == frozenset(FAMILIES)
    assert expand_families(["ProxyShell", " owassrf "]) == {"proxyshell", "owassrf"}
    assert expand_families("proxylogon,webshells") == {"proxylogon", "webshells"}
    with pytest.raises(UsageError):
        expand_families({"bogus"})
    generate(tmp_path, users=2, days=1, benign_only=True)
    with pytest.raises(UsageError):
        generate(tmp_path, users=2, days=1, benign_only=True)


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[int] = []
    key = generate(tmp_path, users=2, days=1, benign_only=True, progress=seen.append)
    assert seen and seen[-1] == key["stats"]["log_bytes"]
    assert seen == sorted(seen)
