"""Web-folder file creation by any writer, worker children against an allow-list, and process
access or thread injection from a web worker."""

from __future__ import annotations

from pathlib import Path

from tests.rules.test_detections import events_file, hits

SYSMON = {"channel": "Microsoft-Windows-Sysmon/Operational", "provider_name": "Microsoft-Windows-Sysmon"}
W3WP = "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
V15 = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"
FRAMEWORK = "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319"


def created(image: str, target: str, event_id: int = 11) -> dict:
    return {**SYSMON, "event_id": event_id, "event_data": {"Image": image, "TargetFilename": target}}


def child(image: str, parent: str = W3WP) -> dict:
    return {**SYSMON, "event_id": 1, "event_data": {"Image": image, "ParentImage": parent, "CommandLine": image}}


def test_script_creation_is_judged_by_place_and_extension_not_writer(collection: Path):
    rel = events_file(collection, [
        created("System", "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\s.aspx"),              # 1 admin share
        created("C:\\Windows\\explorer.exe", f"{V15}\\FrontEnd\\HttpProxy\\owa\\auth\\x.asmx"),       # 2
        created("C:\\Windows\\System32\\msiexec.exe", f"{V15}\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx"),  # 3 update
        created("System", f"{V15}\\FrontEnd\\HttpProxy\\owa\\auth\\Current\\themes\\a.ashx", 15),    # 4
        {"channel": "Security", "provider_name": "Microsoft-Windows-Security-Auditing", "event_id": 4663,
         "event_data": {"ObjectName": f"{V15}\\FrontEnd\\HttpProxy\\ecp\\auth\\g.aspx", "AccessMask": "0x2",
                        "ProcessName": "C:\\Windows\\System32\\svchost.exe"}},                        # 5
        created("System", f"{V15}\\ClientAccess\\ecp\\help.aspx"),                                    # 6 elsewhere
        created("C:\\Windows\\System32\\msiexec.exe", f"{V15}\\ClientAccess\\ecp\\default.aspx"),     # 7 installer
        created("System", "C:\\inetpub\\wwwroot\\aspnet_client\\notes.txt"),                          # 8 not a script
    ])  # fmt: skip
    assert sorted(hits(collection, "file-event-webshell-write")) == [(rel, 1), (rel, 2), (rel, 4), (rel, 5)]
    assert hits(collection, "file-event-script-web-folder") == [(rel, 6)]


def test_worker_children_against_the_allow_list(collection: Path):
    rel = events_file(collection, [
        child(f"{FRAMEWORK}\\csc.exe"),                                          # 1 compiler
        child(f"{FRAMEWORK}\\cvtres.exe"),                                       # 2
        child("C:\\Windows\\System32\\conhost.exe"),                             # 3
        child("C:\\Windows\\System32\\WerFault.exe"),                            # 4
        child("C:\\Windows\\System32\\notepad.exe"),                             # 5 migration target
        child("C:\\Users\\Public\\csc.exe"),                                     # 6 renamed tool
        child("C:\\ProgramData\\x\\agent.exe", f"{V15}\\Bin\\UMWorkerProcess.exe"),  # 7 unknown binary
        child(f"{V15}\\Bin\\UMWorkerProcess.exe", f"{V15}\\Bin\\UMService.exe"),     # 8 UMService's own worker
        child("C:\\Windows\\System32\\cmd.exe", f"{V15}\\Bin\\UMService.exe"),       # 9
        {"channel": "Security", "provider_name": "Microsoft-Windows-Security-Auditing", "event_id": 4688,
         "event_data": {"NewProcessName": "C:\\Windows\\System32\\mspaint.exe", "ParentProcessName": W3WP}},  # 10
        child("C:\\Windows\\System32\\notepad.exe", "C:\\Windows\\explorer.exe"),  # 11 not a worker's child
    ])  # fmt: skip
    assert sorted(hits(collection, "process-webserver-shell")) == [(rel, n) for n in (5, 6, 7, 9, 10)]


def test_access_and_injection_from_a_web_worker(collection: Path):
    def access(event_id: int, target: str, source: str = W3WP) -> dict:
        return {**SYSMON, "event_id": event_id, "event_data": {"SourceImage": source, "TargetImage": target}}

    rel = events_file(collection, [
        access(8, "C:\\Windows\\System32\\notepad.exe"),                 # 1 remote thread
        access(10, "C:\\Windows\\System32\\lsass.exe"),                  # 2 lsass read
        access(10, f"{FRAMEWORK}\\csc.exe"),                             # 3 its own compiler
        access(10, "C:\\Windows\\System32\\conhost.exe"),                # 4
        access(8, f"{FRAMEWORK}\\csc.exe"),                              # 5 a thread even in csc
        access(10, "C:\\Windows\\System32\\lsass.exe", "C:\\Windows\\System32\\svchost.exe"),  # 6 not a worker
    ])  # fmt: skip
    assert sorted(hits(collection, "process-webworker-access")) == [(rel, 1), (rel, 2), (rel, 5)]
