"""Fast checks of the fleet's pieces: host discovery and manifests, the spike test, indicators, campaigns."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from exhunt.errors import UsageError
from exhunt.fleet.campaigns import campaigns, host_indicators, shared_indicators
from exhunt.fleet.discover import discover
from exhunt.fleet.spikes import host_spikes, poisson_tail, waves
from exhunt.fleet.state import changed_files, changes_between, fingerprint


def test_poisson_tail_matches_the_closed_form():
    lam = 0.5
    exact = 1 - sum(math.exp(-lam) * lam**i / math.factorial(i) for i in range(5))
    assert poisson_tail(5, lam) == pytest.approx(exact, rel=1e-9)
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(2, 12.0) == pytest.approx(1 - math.exp(-12) * 13, rel=1e-9)
    assert 0 < poisson_tail(400, 0.5) < 1e-300 or poisson_tail(400, 0.5) == 0.0


def _hours(day_counts: dict[int, dict[int, int]], cls: str) -> list[dict]:
    rows = []
    for day, hours in day_counts.items():
        for h in range(24):
            rows.append({"hour": f"2021-02-{24 + day:02d}T{h:02d}:00:00Z", "class": "requests", "count": 100})
            if hours.get(h):
                rows.append({"hour": f"2021-02-{24 + day:02d}T{h:02d}:00:00Z", "class": cls, "count": hours[h]})
    return rows


def test_a_scan_every_day_at_the_same_hour_is_no_spike_but_a_new_burst_is():
    daily = {d: {13: 12} for d in range(3)}
    assert host_spikes(_hours(daily, "scanning")) == []
    daily[1][4] = 20  # the same host, 20 scanning records at 04:00 once
    spikes = host_spikes(_hours(daily, "scanning"))
    assert [(s["hour"], s["class"]) for s in spikes] == [("2021-02-25T04:00:00Z", "scanning")]
    assert spikes[0]["expected"] == 0.5 or spikes[0]["expected"] > 0.5


def test_few_records_never_make_a_spike():
    assert host_spikes(_hours({0: {}, 1: {3: 4}, 2: {}}, "exploitation")) == []


def test_waves_chain_join_times_and_keep_their_order():
    joins = {
        "b": ("2021-02-25T03:00:00Z", "2021-02-25T03:10:00.000Z"),
        "a": ("2021-02-25T01:00:00Z", "2021-02-25T01:05:00.000Z"),
        "z": ("2021-03-20T01:00:00Z", "2021-03-20T01:05:00.000Z"),
    }
    out = waves(joins, {})
    assert [w["hosts"] for w in out] == [2, 1]
    assert [o["host"] for o in out[0]["order"]] == ["a", "b"]
    assert out[0]["start_hour"] == "2021-02-25T01:00:00Z"
    assert out[1]["fleet_wide"] is False


def _finding(rule, kind, group, evidence=(), first="2021-02-25T01:05:00Z"):
    return {"rule": rule, "kind": kind, "group": group, "first_seen": first,
            "evidence": [{"record": r} for r in evidence]}  # fmt: skip


def test_indicators_skip_scanners_and_internal_addresses_and_campaigns_link_hosts():
    shell = _finding("file-webshell-content", "webshell", {"win_path": "C:\\inetpub\\wwwroot\\aspnet_client\\xx.aspx"},
                     [{"sha256": "AB" * 32}])  # fmt: skip
    r1 = {"findings": [
        _finding("proxylogon-ecp-js-post", "exploitation", {"c-ip": "130.255.189.21"},
                 [{"c-ip": "130.255.189.21", "cs(User-Agent)": "python-requests/2.25.1"}]),
        _finding("ssrf-machine-account-backend", "exploitation", {"c-ip": "fe80::5d1c:7a2e:3b9f:c14%12"}),
        _finding("scanner-probe", "scanning", {"c-ip": "198.51.100.250"}), shell,
    ]}  # fmt: skip
    r2 = {"findings": [_finding("webshell-access", "webshell", {"c-ip": "10.1.1.1", "cs-uri-stem": "/aspnet_client/xx.aspx"}),
                       _finding("scanner-probe", "scanning", {"c-ip": "198.51.100.250"})]}  # fmt: skip
    r3 = {"findings": [_finding("proxylogon-ssrf-anchor", "exploitation", {"ClientIpAddress": "130.255.189.21"})]}
    per = {"h1": host_indicators(r1), "h2": host_indicators(r2), "h3": host_indicators(r3)}
    values = {(i["type"], i["value"]) for i in per["h1"]}
    assert ("ip", "130.255.189.21") in values and ("sha256", "ab" * 32) in values
    assert ("webshell", "xx.aspx") in values and ("user_agent", "python-requests/2.25.1") in values
    assert not any(
        v.startswith(("198.51.100", "fe80", "10.")) for _, v in values | {(i["type"], i["value"]) for i in per["h2"]}
    )
    shared = shared_indicators(per)
    camps = campaigns(
        shared, {"h1": "t1", "h2": "t2", "h3": "t1"}, {"h1": "2021-02-25T01:05:00Z", "h2": None, "h3": None}
    )
    assert len(camps) == 1 and set(camps[0]["hosts"]) == {"h1", "h2", "h3"} and camps[0]["tenants"] == ["t1", "t2"]


def test_discover_folders_tenants_zips_and_manifest(tmp_path: Path):
    root = tmp_path / "root"
    (root / "LOOSE" / "C").mkdir(parents=True)
    (root / "acme" / "EX1" / "C").mkdir(parents=True)
    (root / "acme" / "EX2.zip").write_bytes(b"PK")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a host")
    d = discover(root)
    assert [(h.key, h.tenant) for h in d.hosts] == [("LOOSE", ""), ("acme/EX1", "acme"), ("acme/EX2", "acme")]
    assert d.problems == [{"tenant": "empty", "reason": "tenant folder holds no host collection"}]
    manifest = tmp_path / "fleet.txt"
    manifest.write_text("# hosts\nroot/LOOSE\nbeta | root/acme/EX1\nbeta | EXCH9 | /nowhere/x.zip  # gone\n")
    m = discover(manifest)
    assert [(h.key, h.tenant, h.name) for h in m.hosts] == [("LOOSE", "", "LOOSE"), ("beta/EX1", "beta", "EX1"),
                                                            ("beta/EXCH9", "beta", "EXCH9")]  # fmt: skip
    assert m.hosts[0].path == tmp_path / "root" / "LOOSE"
    manifest.write_text("a | b | c | d\n")
    with pytest.raises(UsageError):
        discover(manifest)


def test_fingerprint_sees_new_grown_and_copied_files(tmp_path: Path):
    (tmp_path / "a.log").write_text("x" * 100)
    fp = fingerprint(tmp_path)
    assert changed_files(tmp_path, fp) == []
    import os

    os.utime(tmp_path / "a.log", ns=(1, 1))  # a copy with a new mtime, same bytes: unchanged
    assert changed_files(tmp_path, fp) == []
    (tmp_path / "a.log").write_text("y" * 100)  # same size, new head
    assert changed_files(tmp_path, fp) == ["a.log"]
    (tmp_path / "b.log").write_text("new")
    assert "b.log" in changed_files(tmp_path, fp)
    # the task's own answer, from the fingerprint it stores: the same
    assert changes_between(fp, fingerprint(tmp_path, fp)) == changed_files(tmp_path, fp) == ["a.log", "b.log"]
    (tmp_path / "a.log").unlink()
    assert changes_between(fp, fingerprint(tmp_path, fp)) == changed_files(tmp_path, fp) == ["-a.log", "b.log"]
    os.utime(tmp_path / "b.log", ns=(1, 1))
    assert changes_between({"b.log": [3, 2, None]}, fingerprint(tmp_path)) == ["b.log"]  # new mtime, no hash kept


def test_cli_refuses_an_empty_fleet_and_bad_synth_fleet_arguments(tmp_path: Path):
    from typer.testing import CliRunner

    from exhunt.cli import app

    (tmp_path / "root" / "hollow").mkdir(parents=True)
    r = CliRunner().invoke(app, ["fleet", str(tmp_path / "root"), "-q"])
    assert r.exit_code == 2 and "no host collections" in r.output
    r = CliRunner().invoke(app, ["fleet", str(tmp_path / "root"), "--out-dir", str(tmp_path / "root" / "x"), "-q"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["synth-fleet", str(tmp_path / "f"), "--hosts", "2", "--tenants", "3"])
    assert r.exit_code == 2 and "at least one host per tenant" in r.output


def test_out_dir_inside_the_evidence_is_refused(tmp_path: Path):
    from exhunt.fleet.runner import FleetOptions, run_fleet

    (tmp_path / "root" / "EX1" / "C").mkdir(parents=True)
    with pytest.raises(UsageError, match="outside the evidence"):
        run_fleet(tmp_path / "root", FleetOptions(out_dir=tmp_path / "root" / "EX1" / "out"))
    assert not (tmp_path / "root" / "EX1" / "out").exists()
