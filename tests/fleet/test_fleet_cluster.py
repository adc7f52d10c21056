"""Fleet runs on real dask.distributed clusters: a LocalCluster of 2 worker processes, and a separate
`dask scheduler` + `dask worker` pair on 127.0.0.1 for the --scheduler path. Fleets are tiny synthetic
servers (3 users, 3-4 days); the 20-host fleet is generated once, inside its one test."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from exhunt.fleet.analyse import analyse
from exhunt.fleet.discover import discover
from exhunt.fleet.runner import FleetOptions, host_dir, run_fleet
from exhunt.fleet.state import listing
from exhunt.fleet.task import TEST_KILL_ENV
from exhunt.synth import generate
from exhunt.synth.fleet import generate_fleet

BIN = Path(sys.executable).parent


def _normal_result(res: dict) -> dict:
    res = copy.deepcopy(res)
    res["stats"].pop("seconds", None)
    res.pop("case", None)
    for key in ("seconds", "timings"):  # how long the analytics took
        (res.get("incident") or {}).pop(key, None)
    return res


def _normal_fleet(fleet: dict) -> dict:
    """The fleet section without what legitimately differs between runs (status reused/scanned, attempts)."""
    fleet = copy.deepcopy(fleet)
    for h in fleet["hosts"]:
        h.pop("status", None)
        h.pop("attempts", None)
    return fleet


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tcp_cluster():
    """A scheduler and one `dask worker` process with 2 single-thread workers, loopback only."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    sched = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard", "--dashboard-address", "127.0.0.1:0"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    worker = subprocess.Popen([str(BIN / "dask"), "worker", addr, "--nworkers", "2", "--nthreads", "1",
                               "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--host", "127.0.0.1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(addr, timeout="5s") as c:
                    c.wait_for_workers(2, timeout=max(1, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield addr
    finally:
        for p in (worker, sched):
            p.terminate()
        for p in (worker, sched):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def test_twenty_host_fleet_matches_its_answer_key_and_a_tcp_cluster_agrees(tmp_path: Path, tcp_cluster: str):
    root = tmp_path / "fleet"
    key = generate_fleet(root, hosts=20, tenants=3, seed=11)
    camp = key["campaign"]
    assert len(camp["hosts"]) >= 3 and len({h.split("/")[0] for h in camp["hosts"]}) >= 2

    doc = run_fleet(root, FleetOptions(out_dir=tmp_path / "out", workers=2))
    fleet = doc["fleet"]
    hosts = {h["key"]: h for h in fleet["hosts"]}
    assert len(hosts) == 20 and doc["stats"]["scanned"] == 20 and doc["stats"]["failed"] == 0
    wave = fleet["wave"]
    assert wave is not None and wave["start_hour"] == camp["start_hour"]
    assert [o["host"] for o in wave["order"]] == camp["hosts"]
    assert [o["join_hour"] for o in wave["order"]] == camp["join_hours"]
    assert wave["hosts"] == len(camp["hosts"])
    for h in key["hosts"]:
        assert hosts[h["key"]]["verdict"] == h["expected_verdict"], h["key"]
    # the daily scanner sweep (12 records at 13:00 every day on every host) raises no spike anywhere
    assert all(s["class"] != "scanning" for h in fleet["hosts"] for s in h["spikes"])
    assert sum(r["count"] for r in fleet["hourly"] if r["class"] == "scanning") >= 20 * 3 * 12
    # one campaign: exactly the hit hosts, linked by the attackers' addresses
    assert len(fleet["campaigns"]) == 1
    c1 = fleet["campaigns"][0]
    assert set(c1["hosts"]) == set(camp["hosts"])
    assert set(camp["attacker_ips"]) <= {i["value"] for i in c1["indicators"] if i["type"] == "ip"}
    ranked = [h["key"] for h in fleet["hosts"]]
    assert set(ranked[: len(camp["hosts"])]) == set(camp["hosts"])  # compromised hosts first
    assert [t["tenant"] for t in fleet["tenants"]] == key["tenants"]
    assert sum(t["compromised"] for t in fleet["tenants"]) == len(camp["hosts"])
    assert doc["exit_code"] == 1 and doc["verdict"] == "COMPROMISED"
    assert "seasonal Poisson" in fleet["method"]["name"] and fleet["method"]["alpha"] > 0
    for h in camp["hosts"][:1]:
        assert (host_dir(tmp_path / "out", h) / "case.duckdb").is_file()
        assert json.loads((host_dir(tmp_path / "out", h) / "result.json").read_text())["verdict"] == "COMPROMISED"
    con = duckdb.connect(str(tmp_path / "out" / "fleet.duckdb"), read_only=True)
    try:
        order = [r[0] for r in con.execute(
            "SELECT o.host FROM wave_order o JOIN waves w USING (wave) WHERE w.start_hour = ? ORDER BY position",
            [camp["start_hour"]]).fetchall()]  # fmt: skip
        assert order == camp["hosts"]
        assert con.execute("SELECT count(*) FROM hosts").fetchone()[0] == 20
        assert con.execute("SELECT count(*) FROM hourly WHERE class = 'exploitation'").fetchone()[0] > 0
    finally:
        con.close()

    # The same per-host tasks on a separate scheduler + worker pair: a manifest of 4 of the hosts.
    chosen = camp["hosts"][:2] + [h["key"] for h in key["hosts"] if not h["hit"]][:2]
    specs = {h.key: h for h in discover(root).hosts}
    manifest = tmp_path / "four.txt"
    manifest.write_text("".join(f"{specs[k].tenant} | {specs[k].name} | {specs[k].path}\n" for k in chosen))
    remote = run_fleet(manifest, FleetOptions(out_dir=tmp_path / "out-tcp", scheduler=tcp_cluster))
    assert remote["stats"]["scanned"] == 4 and remote["stats"]["cluster"] == tcp_cluster
    records = {}
    for k in chosen:
        local = json.loads((host_dir(tmp_path / "out", k) / "host.json").read_text())
        there = json.loads((host_dir(tmp_path / "out-tcp", k) / "host.json").read_text())
        assert _normal_result(there["result"]) == _normal_result(local["result"]), k
        assert there["hourly"] == local["hourly"] and there["fingerprint"] == local["fingerprint"]
        records[k] = local
    expected = analyse(discover(manifest), records)
    expected.pop("verdict")
    assert _normal_fleet(remote["fleet"]) == _normal_fleet(expected)


def _add_day(host: Path) -> Path:
    """One more day of front-end IIS logs: the last day's file again, dated the next day."""
    w3 = host / "C" / "inetpub" / "logs" / "LogFiles" / "W3SVC1"
    last = sorted(w3.glob("u_ex*.log"))[-1]
    new = w3 / "u_ex210227.log"
    new.write_text(last.read_text(encoding="utf-8").replace("2021-02-26", "2021-02-27"), encoding="utf-8")
    return new


def test_incremental_rescan_reads_only_changed_files_and_equals_a_full_run(tmp_path: Path):
    root = tmp_path / "fleet"
    generate_fleet(root, hosts=4, tenants=2, seed=4, hit=2)
    out = tmp_path / "out"
    first = run_fleet(root, FleetOptions(out_dir=out, workers=2))
    assert first["stats"]["scanned"] == 4
    hosts = discover(root).hosts
    changed = [h.path for h in hosts[:3]]
    touched = [_add_day(h) for h in changed]
    # one host also gets an attack line in a new log and a changed (grown) older file
    touched.append(_add_attack(changed[0]))
    touched.append(_grow(changed[0]))
    second = run_fleet(root, FleetOptions(out_dir=out, workers=2))
    assert second["stats"]["scanned"] == 3 and second["stats"]["reused"] == 1
    assert second["stats"]["incremental"] == 3
    assert second["stats"]["bytes_read"] == sum(p.stat().st_size for p in touched) < first["stats"]["bytes_read"]
    by_status = {h["key"]: h["status"] for h in second["fleet"]["hosts"]}
    assert sorted(k for k, s in by_status.items() if s == "reused") == sorted(
        h.key for h in hosts if h.path not in changed
    )
    # the full run splits every host into shard tasks (exhunt.fleet.split): the same results again
    full = run_fleet(root, FleetOptions(out_dir=tmp_path / "out-full", workers=2, full=True, split_bytes=1))
    assert full["stats"]["scanned"] == 4 and full["stats"]["incremental"] == 0
    assert full["stats"]["bytes_read"] == sum(size for h in hosts for size, _ in listing(h.path).values())
    split = [json.loads((host_dir(tmp_path / "out-full", h.key) / "host.json").read_text()) for h in hosts]
    assert [r["rescan"] for r in split] == ["split"] * 4
    assert _without_bytes(second["fleet"]) == _without_bytes(full["fleet"])
    for h in hosts:  # per host: the same findings, evidence, coverage and verdict as a full scan
        inc = json.loads((host_dir(out, h.key) / "result.json").read_text())
        ref = json.loads((host_dir(tmp_path / "out-full", h.key) / "result.json").read_text())
        assert _comparable(inc) == _comparable(ref), h.key
    attacked = json.loads((host_dir(out, hosts[0].key) / "result.json").read_text())
    assert any(e["path"].endswith("u_ex210228.log") for f in attacked["findings"] for e in f["evidence"])
    # a third run with nothing new scans nothing
    third = run_fleet(root, FleetOptions(out_dir=out, workers=2))
    assert third["stats"]["scanned"] == 0 and third["stats"]["bytes_read"] == 0


def _without_bytes(fleet: dict) -> dict:
    """The fleet section without each host's bytes read by its last scan (an incremental one reads less)."""
    fleet = _normal_fleet(fleet)
    for h in fleet["hosts"]:
        h.pop("bytes_read")
    return fleet


def _comparable(res: dict) -> dict:
    """A host result without what differs by design (bytes read this run, timings, case path)."""
    res = _normal_result(res)
    res.pop("stats")
    return res


def _add_attack(host: Path) -> Path:
    """A new front-end IIS log whose one line is a ProxyShell-style autodiscover request from outside."""
    w3 = host / "C" / "inetpub" / "logs" / "LogFiles" / "W3SVC1"
    header = "".join(line for line in (w3 / "u_ex210227.log").open(encoding="utf-8") if line.startswith("#"))
    new = w3 / "u_ex210228.log"
    new.write_text(header.replace("2021-02-27", "2021-02-28") + (
        "2021-02-28 03:14:15 10.10.1.20 GET /autodiscover/autodiscover.json "
        "@evil.example/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.example 443 - 203.0.113.66 "
        "python-requests/2.25.1 - 200 0 0 31\n"
    ), encoding="utf-8")  # fmt: skip
    return new


def _grow(host: Path) -> Path:
    """An older log that changed since the last run (its last line once more)."""
    w2 = sorted((host / "C" / "inetpub" / "logs" / "LogFiles" / "W3SVC2").glob("u_ex*.log"))[0]
    text = w2.read_text(encoding="utf-8")
    w2.write_text(text + text.splitlines(True)[-1], encoding="utf-8")
    return w2


def test_bad_hosts_are_listed_with_their_reason_and_the_fleet_finishes(tmp_path: Path):
    root = tmp_path / "fleet"
    gen = tmp_path / "gen"
    generate(gen, seed=3, users=2, days=1, benign_only=True, host="GOOD")
    (root / "acme").mkdir(parents=True)
    shutil.move(str(gen / "GOOD"), str(root / "acme" / "GOOD"))
    (root / "acme" / "NOTES").mkdir()
    (root / "acme" / "NOTES" / "readme.txt").write_text("a host folder without any Exchange artifact\n")
    (root / "acme" / "BROKEN.zip").write_bytes(b"PK\x03\x04" + os.urandom(3000))
    (root / "acme" / "KILLED").mkdir()
    (root / "acme" / "KILLED" / "x.log").write_text("#Software: Microsoft Internet Information Services 10.0\n")
    (root / "hollow").mkdir()
    env = {**os.environ, TEST_KILL_ENV: "acme/KILLED"}
    proc = subprocess.run(
        [str(BIN / "exhunt"), "fleet", str(root), "--out-dir", str(tmp_path / "out"), "--workers", "2",
         "--json", str(tmp_path / "fleet.json")],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    doc = json.loads((tmp_path / "fleet.json").read_text())
    hosts = {h["key"]: h for h in doc["fleet"]["hosts"]}
    assert set(hosts) == {"acme/GOOD", "acme/NOTES", "acme/BROKEN", "acme/KILLED"}
    assert hosts["acme/GOOD"]["verdict"] == "NO EVIDENCE FOUND"
    assert hosts["acme/NOTES"]["verdict"] == "INCOMPLETE" and "IIS or HttpProxy" in hosts["acme/NOTES"]["reason"]
    assert hosts["acme/BROKEN"]["verdict"] == "FAILED" and "zip" in hosts["acme/BROKEN"]["reason"]
    assert hosts["acme/BROKEN"]["attempts"] == 2
    killed = hosts["acme/KILLED"]
    assert killed["verdict"] == "FAILED" and "worker process died" in killed["reason"] and killed["attempts"] == 2
    hollow = next(t for t in doc["fleet"]["tenants"] if t["tenant"] == "hollow")
    assert hollow["hosts"] == 0 and "no host collection" in hollow["note"]
    assert {"tenant": "hollow", "reason": "tenant folder holds no host collection"} in doc["fleet"]["problems"]
    assert "FAILED" in proc.stdout and "worker process died" in proc.stdout  # the summary
    assert "hosts done" in proc.stderr and "2 failed" in proc.stderr  # the live progress
    # the failed hosts are not remembered as scanned: the next run tries them again
    assert json.loads((host_dir(tmp_path / "out", "acme/KILLED") / "host.json").read_text())["status"] == "failed"
