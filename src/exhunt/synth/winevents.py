"""Builders for the Windows events we write as Winlogbeat NDJSON.

Each builder returns a plain dict (`provider`, `id`, `level`, `message`, `event_data` ...) that
`formats.EventLog` shapes into the Winlogbeat/ECS layout. Level is the Winlogbeat text form
(`information`, `warning`, `error`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .model import DOMAIN_SID, NETBIOS, from_ms
from .model import Ids as _Ids

SYSTEM_USER = {"identifier": "S-1-5-18", "name": "SYSTEM", "domain": "NT AUTHORITY", "type": "User"}

W3WP = "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
CMD = "C:\\Windows\\System32\\cmd.exe"
POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
CSC = "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\csc.exe"


DESCRIPTIONS = {
    "powershell.exe": "Windows PowerShell",
    "cmd.exe": "Windows Command Processor",
    "makecab.exe": "Microsoft® Cabinet Maker",
    "rundll32.exe": "Windows host process (Rundll32)",
    "procdump64.exe": "Sysinternals process dump utility",
    "7z.exe": "7-Zip Console",
    "msiexec.exe": "Windows® installer",
}


def w3wp_cmdline(pool: str) -> str:
    """The command line IIS gives a worker process of `pool`."""
    if pool == "DefaultAppPool":
        return (
            f'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "{pool}" -v "v4.0" -l "webengine4.dll" '
            f'-a \\\\.\\pipe\\iisipm{_pipe(pool)} -h "C:\\inetpub\\temp\\apppools\\{pool}\\{pool}.config" '
            '-w "" -m 0 -t 20 -ta 0'
        )
    return (
        f'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "{pool}" -v "v4.0" -c "C:\\Program Files\\Microsoft\\'
        'Exchange Server\\V15\\bin\\GenericAppPoolConfigWithGCServerEnabledFalse.config" -a '
        f'\\\\.\\pipe\\iisipm{_pipe(pool)} -h "C:\\inetpub\\temp\\apppools\\{pool}\\{pool}.config" -w "" -m 0'
    )


def _pipe(pool: str) -> str:
    h = hashlib.md5(pool.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def fake_hashes(image: str) -> str:
    """Stable made-up hashes per image path (not real file hashes)."""
    b = image.lower().encode()
    return (
        f"SHA1={hashlib.sha1(b).hexdigest().upper()},MD5={hashlib.md5(b).hexdigest().upper()},"
        f"SHA256={hashlib.sha256(b).hexdigest().upper()},"
        f"IMPHASH={hashlib.md5(b + b'imp').hexdigest().upper()}"
    )


def _utc(t: int) -> str:
    return from_ms(t).strftime("%Y-%m-%d %H:%M:%S.") + f"{t % 1000:03d}"


def _pguid(ids: _Ids) -> str:
    g = ids.guid()
    return "{" + g[:8].upper() + "-5F2A-603F-" + g[19:23].upper() + "-" + g[24:].upper() + "}"


def _msg(title: str, data: dict[str, str]) -> str:
    return title + "\n" + "\n".join(f"{k}: {v}" for k, v in data.items())


def sysmon_process(
    t: int,
    ids: _Ids,
    *,
    image: str,
    cmd: str,
    parent_image: str,
    parent_cmd: str,
    pid: int,
    ppid: int,
    user: str = "NT AUTHORITY\\SYSTEM",
    cwd: str = "C:\\Windows\\system32\\",
    integrity: str = "System",
    description: str = "",
    product: str = "Microsoft® Windows® Operating System",
    company: str = "Microsoft Corporation",
    file_version: str = "",
) -> dict[str, Any]:
    """Sysmon event 1 (process creation)."""
    name = image.rsplit("\\", 1)[-1]
    data = {
        "RuleName": "-",
        "UtcTime": _utc(t),
        "ProcessGuid": _pguid(ids),
        "ProcessId": str(pid),
        "Image": image,
        "FileVersion": file_version
        or ("10.0.14393.0 (rs1_release.160715-1616)" if company.startswith("Microsoft") else "-"),
        "Description": description or DESCRIPTIONS.get(name.lower(), name),
        "Product": product,
        "Company": company,
        "OriginalFileName": name,
        "CommandLine": cmd,
        "CurrentDirectory": cwd,
        "User": user,
        "LogonGuid": "{7E8A2F1C-5F2A-603F-E703-000000000000}",
        "LogonId": "0x3e7",
        "TerminalSessionId": "0",
        "IntegrityLevel": integrity,
        "Hashes": fake_hashes(image),
        "ParentProcessGuid": _pguid(ids),
        "ParentProcessId": str(ppid),
        "ParentImage": parent_image,
        "ParentCommandLine": parent_cmd,
    }
    return {
        "provider": "Microsoft-Windows-Sysmon",
        "id": 1,
        "task": "Process Create (rule: ProcessCreate)",
        "action": "Process Create (rule: ProcessCreate)",
        "event_data": data,
        "message": _msg("Process Create:", data),
        "user": SYSTEM_USER,
        "pid": 2236,
        "tid": 3964,
    }


def sysmon_file(t: int, ids: _Ids, *, image: str, pid: int, target: str) -> dict[str, Any]:
    """Sysmon event 11 (file created)."""
    data = {
        "RuleName": "-",
        "UtcTime": _utc(t),
        "ProcessGuid": _pguid(ids),
        "ProcessId": str(pid),
        "Image": image,
        "TargetFilename": target,
        "CreationUtcTime": _utc(t),
    }
    return {
        "provider": "Microsoft-Windows-Sysmon",
        "id": 11,
        "task": "File created (rule: FileCreate)",
        "action": "File created (rule: FileCreate)",
        "event_data": data,
        "message": _msg("File created:", data),
        "user": SYSTEM_USER,
        "pid": 2236,
        "tid": 3964,
    }


def sysmon_remote_thread(
    t: int, ids: _Ids, *, source: str, source_pid: int, target: str, target_pid: int, start: str
) -> dict[str, Any]:
    """Sysmon event 8 (CreateRemoteThread)."""
    data = {
        "RuleName": "-",
        "UtcTime": _utc(t),
        "SourceProcessGuid": _pguid(ids),
        "SourceProcessId": str(source_pid),
        "SourceImage": source,
        "TargetProcessGuid": _pguid(ids),
        "TargetProcessId": str(target_pid),
        "TargetImage": target,
        "NewThreadId": str(4000 + target_pid % 997),
        "StartAddress": start,
        "StartModule": "-",
        "StartFunction": "-",
    }
    return {
        "provider": "Microsoft-Windows-Sysmon",
        "id": 8,
        "task": "CreateRemoteThread detected (rule: CreateRemoteThread)",
        "action": "CreateRemoteThread detected (rule: CreateRemoteThread)",
        "event_data": data,
        "message": _msg("CreateRemoteThread detected:", data),
        "user": SYSTEM_USER,
        "pid": 2236,
        "tid": 3964,
    }


def sysmon_access(
    t: int, ids: _Ids, *, source: str, source_pid: int, target: str, target_pid: int, access: str
) -> dict[str, Any]:
    """Sysmon event 10 (ProcessAccess)."""
    data = {
        "RuleName": "-",
        "UtcTime": _utc(t),
        "SourceProcessGUID": _pguid(ids),
        "SourceProcessId": str(source_pid),
        "SourceThreadId": str(5000 + source_pid % 991),
        "SourceImage": source,
        "TargetProcessGUID": _pguid(ids),
        "TargetProcessId": str(target_pid),
        "TargetImage": target,
        "GrantedAccess": access,
        "CallTrace": "C:\\Windows\\SYSTEM32\\ntdll.dll+9d4c4|C:\\Windows\\System32\\KERNELBASE.dll+2bfd1",
    }
    return {
        "provider": "Microsoft-Windows-Sysmon",
        "id": 10,
        "task": "Process accessed (rule: ProcessAccess)",
        "action": "Process accessed (rule: ProcessAccess)",
        "event_data": data,
        "message": _msg("Process accessed:", data),
        "user": SYSTEM_USER,
        "pid": 2236,
        "tid": 3964,
    }


def security_4688(
    t: int,
    *,
    image: str,
    cmd: str,
    parent_image: str,
    pid: int,
    ppid: int,
    host: str,
    user: str = "",
    domain: str = NETBIOS,
) -> dict[str, Any]:
    """Security 4688 (a new process has been created)."""
    subject = user or f"{host}$"
    data = {
        "SubjectUserSid": "S-1-5-18",
        "SubjectUserName": subject,
        "SubjectDomainName": domain,
        "SubjectLogonId": "0x3e7",
        "NewProcessId": hex(pid),
        "NewProcessName": image,
        "TokenElevationType": "%%1936",
        "ProcessId": hex(ppid),
        "CommandLine": cmd,
        "TargetUserSid": "S-1-0-0",
        "TargetUserName": "-",
        "TargetDomainName": "-",
        "TargetLogonId": "0x0",
        "ParentProcessName": parent_image,
        "MandatoryLabel": "S-1-16-16384",
    }
    msg = (
        "A new process has been created.\n\nCreator Subject:\n\tSecurity ID:\t\tS-1-5-18\n"
        f"\tAccount Name:\t\t{subject}\n\tAccount Domain:\t\t{domain}\n\tLogon ID:\t\t0x3E7\n\n"
        f"Process Information:\n\tNew Process ID:\t\t{hex(pid)}\n\tNew Process Name:\t{image}\n"
        f"\tCreator Process ID:\t{hex(ppid)}\n\tCreator Process Name:\t{parent_image}\n"
        f"\tProcess Command Line:\t{cmd}"
    )
    return {
        "provider": "Microsoft-Windows-Security-Auditing",
        "id": 4688,
        "task": "Process Creation",
        "action": "created-process",
        "event_data": data,
        "message": msg,
        "pid": 636,
        "tid": 4020,
    }


def security_4624(t: int, *, user: str, domain: str, sid: str, ip: str, logon_type: int, host: str) -> dict[str, Any]:
    """Security 4624 (an account was successfully logged on)."""
    data = {
        "SubjectUserSid": "S-1-0-0",
        "SubjectUserName": "-",
        "SubjectDomainName": "-",
        "SubjectLogonId": "0x0",
        "TargetUserSid": sid,
        "TargetUserName": user,
        "TargetDomainName": domain,
        "TargetLogonId": hex(0x1A2B000 + t % 0xFFFFF),
        "LogonType": str(logon_type),
        "LogonProcessName": "Kerberos" if logon_type == 3 else "User32",
        "AuthenticationPackageName": "Kerberos" if logon_type == 3 else "Negotiate",
        "WorkstationName": "-" if logon_type == 3 else host,
        "LogonGuid": "{00000000-0000-0000-0000-000000000000}",
        "TransmittedServices": "-",
        "LmPackageName": "-",
        "KeyLength": "0",
        "ProcessId": "0x0",
        "ProcessName": "-",
        "IpAddress": ip,
        "IpPort": "0" if logon_type == 3 else "52113",
        "ImpersonationLevel": "%%1833",
    }
    msg = (
        "An account was successfully logged on.\n\nLogon Information:\n"
        f"\tLogon Type:\t\t{logon_type}\n\nNew Logon:\n\tSecurity ID:\t\t{sid}\n"
        f"\tAccount Name:\t\t{user}\n\tAccount Domain:\t\t{domain}\n\n"
        f"Network Information:\n\tSource Network Address:\t{ip}"
    )
    return {
        "provider": "Microsoft-Windows-Security-Auditing",
        "id": 4624,
        "task": "Logon",
        "action": "logged-in",
        "event_data": data,
        "message": msg,
        "pid": 636,
        "tid": 2764,
    }


def security_1102(t: int, *, user: str, rid: int) -> dict[str, Any]:
    """Security 1102 (the audit log was cleared); Winlogbeat puts its data under user_data."""
    sid = f"{DOMAIN_SID}-{rid}"
    return {
        "provider": "Microsoft-Windows-Eventlog",
        "id": 1102,
        "task": "Log clear",
        "action": "audit-log-cleared",
        "user_data": {
            "xml_name": "LogFileCleared",
            "SubjectUserSid": sid,
            "SubjectUserName": user,
            "SubjectDomainName": NETBIOS,
            "SubjectLogonId": "0x5b3d1f2",
        },
        "message": (
            f"The audit log was cleared.\nSubject:\n\tSecurity ID:\t{sid}\n\tAccount Name:\t{user}\n"
            f"\tDomain Name:\t{NETBIOS}\n\tLogon ID:\t0x5B3D1F2"
        ),
        "pid": 1212,
        "tid": 5216,
    }


def cmdlet(
    t: int, *, name: str, params: str, caller: str, caller_sid: str, app: str, pid: int, ok: bool = True
) -> dict[str, Any]:
    """MSExchange Management event 1 (cmdlet succeeded) or 6 (failed), provider MSExchange CmdletLogs."""
    duration = 40 + (t % 3700)
    data = {
        "param1": name,
        "param2": params,
        "param3": caller,
        "param4": caller_sid,
        "param5": caller_sid,
        "param6": app,
        "param7": f"{pid} w3wp#MSExchangePowerShellAppPool" if app.startswith("ServerRemoteHost") else str(pid),
        "param8": "",
        "param9": "1",
        "param10": f"00:00:{duration // 1000:02d}.{duration % 1000:03d}0000",
        "param11": "View Entire Forest: 'False', Default Scope: 'corp.example', Configuration Domain Controller: "
        "'dc01.corp.example', Preferred Global Catalog: 'dc01.corp.example', Preferred Domain Controllers: "
        "'{ dc01.corp.example }'",
        "param12": "",
    }
    status = "succeeded" if ok else "failed"
    return {
        "provider": "MSExchange CmdletLogs",
        "id": 1 if ok else 6,
        "task": "General",
        "level": "information" if ok else "error",
        "event_data": data,
        "message": f"Cmdlet {status}. Cmdlet {name}, parameters {params}.",
        "pid": 5120,
        "tid": 6244,
    }


def app_event(provider: str, event_id: int, level: str, message: str, *data: str, task: str = "") -> dict[str, Any]:
    """A classic Application log event with positional data."""
    return {
        "provider": provider,
        "id": event_id,
        "level": level,
        "task": task or "General",
        "event_data": {f"param{i + 1}": d for i, d in enumerate(data)},
        "message": message,
        "pid": 3104,
        "tid": 5532,
    }
