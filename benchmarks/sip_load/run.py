"""SIPp load against the afterbeep SIP service on 127.0.0.1, then every recording checked.

``--mode core``: a Runtime whose router answers, records until the caller hangs up and writes
the recording (benchmarks.sip_load.core_server). ``--mode deposit``: the real ``afterbeep
serve`` (SQLite, local storage, uvloop) with a number routed to a mailbox; every call is a full
deposit (greeting, instructions, beep, recording, spool, storage, message row, email through
an aiosmtpd server run here). ``--mode flow``: the same, but the number leads to a 4-node flow
(entry → timeCondition on an always-open schedule → menu → voicemail): the caller hears the
menu prompt, presses 1 (RFC 4733), then leaves the message as in deposit mode.

SIPp is the caller (``-r`` rate, ``-l`` concurrency, ``-m`` calls) and replays a pcap of
speech-like G.711 audio after the answer (deposit: after the beep), then hangs up. Measured:
peak concurrent calls and failed calls (SIPp statistics), CPU seconds of the service process
(/proc/<pid>/stat), INVITE-to-200 latency (SIPp ``rtd``, from the first INVITE sent to the 200
received), and each recording or stored message compared with the G.711 round trip of the
audio sent (SNR >= 30 dB, at most 20 ms missing at either end).

``--caller fixed-time`` (deposit mode): the caller does not wait for the beep. It sends RTP from
the answer, as a phone does (silence, then its speech), and starts speaking at a fixed time
after the 200 OK: the nominal length of the prompts the target plays before recording
(greeting, instructions, beep) plus 0.3 s (`benchmarks.sip_load.fixed_time`). A packet capture
of the loopback interface (`benchmarks.sip_load.capture`, ``tcpdump``) keeps what the caller
received; after the run each call's beep is found in it by cross-correlation and its arrival
compared with the time it was due (answer + nominal greeting and instructions). Reported
besides the figures above: the beep's lateness (p50/p99/max), the share of messages missing
any of the caller's first second, and how late the caller itself started speaking.

A 503 (the target's admission refusing a call) is ACKed and ends that call: SIPp's second
response-time timer counts them (``refused``; fixed-time runs also count them on the wire,
and afterbeep's refusals by reason are read from its /metrics). Beeps and messages are those
of the admitted calls; a run passes when every admitted call's message is stored and exact.
Fixed-time runs add two verdicts: ``admitted_whole`` (besides, every admitted beep within
``BEEP_LATE_LIMIT_MS`` and no message missing any of the first second: nothing lost) and
``clean`` (the same with every call admitted). Series of runs (ABBA, the highest clean level,
the overload run): `benchmarks.sip_load.series`.

``--target asterisk --asterisk-prefix DIR``: the same fixed-time caller against Asterisk 20's
app_voicemail (`benchmarks.sip_load.asterisk`), its CPU read from its process and its messages
from its spool, checked as afterbeep's are. ``--no-email``: afterbeep's mailbox has no
notify_email (Asterisk's ``attach = no``); ``--no-transcribe``: no transcript either
(``AFTERBEEP_TRANSCRIBE=off``; Asterisk makes none). ``--quiet-check`` (on by default): before the
calls start, wait until the 1-minute load average is under ``--quiet-load``, at most
``--quiet-timeout`` seconds; the wait and the load are reported, and a run that started on a
busy machine says so.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from tests.fixtures.rtp_pcap import RtpStreamBuilder, g711_roundtrip, write_pcap
from tests.fixtures.smtp import SmtpServer, smtp_server

from afterbeep.audio.compare import compare
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.media import Codec
from afterbeep.telephony.media.sender import ANCHOR_WINDOW
from afterbeep.telephony.prompts import beep, prompt
from benchmarks.affinity import pin, process_tree
from benchmarks.sip_load import asterisk
from benchmarks.sip_load.capture import calls_heard, read_pcap, tcpdump
from benchmarks.sip_load.fixed_time import (
    FRAME_SAMPLES,
    Nominal,
    beep_lateness,
    first_second_missing_ms,
    percentiles_ms,
)
from benchmarks.sip_load.quiet import load_average, wait_quiet

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NUMBER = "+12025550100"
MIN_SNR_DB = 30.0
MAX_MISSING_MS = 20.0
LEAD_MS = 800  # deposit: the caller starts speaking this long after the beep should have ended
KEEP_AFTER_SPEECH_S = 10.0  # fixed-time: what the capture keeps of a call past its speech time
TAIL_MS = 400  # the caller hangs up this long after its last packet
BEEP_LATE_LIMIT_MS = 60.0  # issue 24: no admitted call's beep later than this
MENU_PROMPT_MS = 1500  # flow: the menu's prompt
DIGIT_AFTER_MS = 300  # flow: the caller presses 1 this long after the menu prompt ends

Pcm = npt.NDArray[np.int16]

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="afterbeep sip_load caller">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:+12025550123@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="503" optional="true" rtd="2" next="refused"/>
  <recv response="200" rtd="1"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:+12025550123@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  {wait}
  <nop><action><exec play_pcap_audio="speech.pcap"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:+12025550123@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true" next="done"/>
  <label id="refused"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "Load" <sip:+12025550123@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <label id="done"/>
</scenario>
"""


@dataclass
class Result:
    mode: str
    calls: int
    concurrency: int
    rate: float
    hold_seconds: float
    sipp_exit: int = -1
    created: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    peak_concurrent: int = 0
    concurrent_avg: float = 0.0  # SIPp's calls up, sampled every second of its run
    wall_seconds: float = 0.0
    cpu_seconds_during_calls: float = 0.0
    cpu_seconds_total: float = 0.0
    # Of which the service's child processes (afterbeep's post-call worker).
    children_cpu_seconds_during_calls: float = 0.0
    children_cpu_seconds_total: float = 0.0
    cores_avg: float = 0.0
    cores_peak_5s: float = 0.0
    sipp_cpu_seconds: float = 0.0
    machine_busy_cores_avg: float = 0.0
    machine_cores: int = 0
    udp_receive_drops: int = 0
    sip_drops_service: int = 0
    sip_drops_sipp: int = 0
    cpu_ms_per_call: float = 0.0
    invite_to_200_ms: dict[str, float] = field(default_factory=dict)
    recordings: int = 0
    recordings_exact: int = 0
    mismatches: int = 0
    worst_snr_db: float | None = None
    worst_missing_tail_ms: float | None = None
    worst_missing_head_ms: float | None = None
    emails: int | None = None
    loop_thread_on_cpu_s: float = 0.0
    loop_thread_waiting_s: float = 0.0
    messages_stored_after_s: float | None = None
    emails_received_after_s: float | None = None
    target: str = "afterbeep"
    caller: str = "beep-wait"
    email: bool = True
    transcribe: bool = True
    quiet: dict[str, Any] = field(default_factory=dict)
    speak_at_ms: int | None = None
    beep_due_ms: float | None = None
    beep_late_ms: dict[str, float] = field(default_factory=dict)
    beeps_heard: int | None = None
    calls_answered_in_capture: int | None = None
    caller_speech_late_ms: dict[str, float] = field(default_factory=dict)
    # the target's first audio on the wire after its 200: when its prompts reached the pacer
    # (afterbeep skips what fell due before, within 1 s of the 200; past that they start late)
    first_audio_ms: dict[str, float] = field(default_factory=dict)
    beeps_late: int | None = None  # beeps past BEEP_LATE_LIMIT_MS ...
    beeps_late_handed_over_late: int | None = None  # ... of calls whose first audio came late
    first_second_incomplete: int = 0
    worst_first_second_missing_ms: float | None = None
    capture_packets: int | None = None
    capture_dropped: int | None = None
    capture_unmatched_rtp: int | None = None
    tcpdump_cpu_seconds: float | None = None
    refused: int = 0  # INVITEs answered 503 (SIPp's second response-time timer)
    refused_in_capture: int | None = None  # the same, counted on the wire (fixed-time)
    refused_by_reason: dict[str, int] = field(default_factory=dict)  # afterbeep's /metrics
    notes: list[str] = field(default_factory=list)

    @property
    def admitted(self) -> int:
        """Calls the target took (created and not refused with 503)."""
        return self.created - self.refused

    @property
    def beeps_on_time(self) -> bool | None:
        """Fixed-time: a beep heard on every admitted call, none later than BEEP_LATE_LIMIT_MS."""
        if self.caller != "fixed-time":
            return None
        late = self.beep_late_ms
        return (
            self.beeps_heard == self.admitted
            and (self.admitted == 0 or late.get("max", float("inf")) <= BEEP_LATE_LIMIT_MS)
        )

    @property
    def admitted_whole(self) -> bool:
        """Nothing lost: the run passed (every admitted call's message stored and exact), no
        message misses any of the caller's first second, every admitted beep on time."""
        return self.passed and self.first_second_incomplete == 0 and self.beeps_on_time is not False

    @property
    def clean(self) -> bool:
        """A clean level: every call admitted, on time and whole."""
        return self.admitted_whole and self.refused == 0 and self.created == self.calls

    @property
    def cores_per_100_calls(self) -> dict[str, float] | None:
        """Cores per 100 concurrent calls: during the calls (CPU while SIPp ran over the calls
        up on average), and with everything the calls cost (total CPU, post-call work after
        the last call included, over the call-seconds)."""
        if not self.concurrent_avg or not self.wall_seconds:
            return None
        call_seconds = self.concurrent_avg * self.wall_seconds
        return {
            "during_calls": 100 * self.cores_avg / self.concurrent_avg,
            "total": 100 * self.cpu_seconds_total / call_seconds,
        }

    @property
    def first_second_incomplete_share(self) -> float | None:
        return self.first_second_incomplete / self.recordings if self.recordings else None

    @property
    def passed(self) -> bool:
        return (
            self.sipp_exit == 0
            and self.failed == 0
            and self.successful == self.calls
            and self.recordings == self.admitted
            and self.mismatches == 0
        )


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads) and of the processes it started (the
    post-call worker of `afterbeep serve`)."""
    total = 0
    for process in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def children_cpu_seconds(pid: int) -> float:
    """`cpu_seconds(pid)` less the process's own: its children's (the post-call worker)."""
    own = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return cpu_seconds(pid) - (int(own[11]) + int(own[12])) / CLK_TCK


def loop_thread_schedstat(pid: int) -> tuple[float, float]:
    """Seconds the service's main (event loop) thread ran, and waited runnable for a CPU."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def socket_drops(ports: tuple[int, ...]) -> dict[int, int]:
    """The ``drops`` column of /proc/net/udp for the sockets bound to ``ports`` on 127.0.0.1."""
    found: dict[int, int] = {}
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        port = int(cols[1].split(":")[1], 16)
        if port in ports:
            found[port] = found.get(port, 0) + int(cols[-1])
    return found


class CpuSampler:
    """Samples a process's CPU time every second (for the busiest 5-second window) and the
    receive drops of the SIP sockets (the largest count seen: a socket's counter dies with it)."""

    def __init__(self, pid: int, ports: tuple[int, ...] = ()) -> None:
        self.pid = pid
        self.ports = ports
        self.drops: dict[int, int] = {}
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), cpu_seconds(self.pid)))
                for port, count in socket_drops(self.ports).items():
                    self.drops[port] = max(self.drops.get(port, 0), count)
            self._stop.wait(1.0)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_cores(self, window: int = 5) -> float:
        best = 0.0
        for i in range(len(self.samples) - window):
            (t0, c0), (t1, c1) = self.samples[i], self.samples[i + window]
            best = max(best, (c1 - c0) / (t1 - t0))
        return best


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent running (user, nice, system, irq, softirq in /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:7]) - fields[3] - fields[4]) / CLK_TCK


def udp_receive_drops() -> int:
    """Datagrams the kernel dropped for full socket receive buffers, machine-wide (/proc/net/snmp)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    counters = dict(zip(lines[0][1:], lines[1][1:], strict=True))
    return int(counters.get("RcvbufErrors", 0))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def wait_ready(process: subprocess.Popen[bytes], log: Path, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            raise RuntimeError(f"the service exited: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not come up: {log.read_text()[-3000:]}")
        time.sleep(0.1)


def service_env(data_dir: Path, sip_port: int, max_calls: int, extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "AFTERBEEP_DATA_DIR": str(data_dir),
        "AFTERBEEP_SIP_ADDR": f"127.0.0.1:{sip_port}",
        "AFTERBEEP_MAX_CALLS": str(max_calls),
        "AFTERBEEP_LOG_LEVEL": "WARNING",
        "AFTERBEEP_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
        **extra,
    }


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path.cwd())
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class DepositApi:
    """The account, mailbox and number of deposit mode, through the CLI and the HTTP API."""

    def __init__(
        self, url: str, env: dict[str, str], menu_prompt: bytes | None = None, email: bool = True
    ) -> None:
        created = subprocess.run(
            [str(BIN / "afterbeep"), "account", "create", "sip-load", "--json"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )
        key = json.loads(created.stdout)["api_key"]
        self.http = httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        mailbox = self.http.post(
            "/mailboxes",
            json={
                "name": "sip-load",
                **({"notify_email": "owner@example.com"} if email else {}),
                "quota_mb": 100_000,
                "max_messages": 10_000,
                "min_message_seconds": 1,
            },
        )
        if mailbox.status_code != 201:
            raise RuntimeError(f"mailbox: {mailbox.status_code} {mailbox.text}")
        self.mailbox_id: str = mailbox.json()["id"]
        if menu_prompt is None:
            destination = {"dest_kind": "voicemail", "dest_id": self.mailbox_id}
        else:
            destination = {"dest_kind": "flow", "dest_id": self._menu_flow(menu_prompt)}
        self.http.post("/numbers", json={"e164": NUMBER, **destination}).raise_for_status()

    def _menu_flow(self, menu_prompt: bytes) -> str:
        """entry → timeCondition (open all week) → menu (digit 1) → voicemail; the flow's id."""
        always = [
            {"kind": "weekly", "dow": dow, "start_time": "00:00", "end_time": "24:00"}
            for dow in range(7)
        ]
        schedule = self.http.post("/schedules", json={"name": "always", "rules": always})
        schedule.raise_for_status()
        media = self.http.post(
            "/media", files={"file": ("menu.wav", menu_prompt, "audio/wav")}, data={"name": "menu"}
        )
        media.raise_for_status()
        nodes = [
            {"id": "entry", "type": "entry", "data": {"kind": "entry", "trigger": "inbound"}},
            {
                "id": "hours",
                "type": "timeCondition",
                "data": {"kind": "timeCondition", "scheduleId": schedule.json()["id"]},
            },
            {
                "id": "menu",
                "type": "menu",
                "data": {"kind": "menu", "promptAudioId": media.json()["id"], "timeoutSec": 5},
            },
            {"id": "box", "type": "voicemail", "data": {"kind": "voicemail", "mailboxId": self.mailbox_id}},
        ]
        edges = [
            {"id": "e1", "source": "entry", "sourceHandle": "default", "target": "hours"},
            {"id": "e2", "source": "hours", "sourceHandle": "in_hours", "target": "menu"},
            {"id": "e3", "source": "menu", "sourceHandle": "digit:1", "target": "box"},
        ]
        flow = self.http.post("/flows", json={"name": "sip-load menu", "nodes": nodes, "edges": edges})
        if flow.status_code != 201:
            raise RuntimeError(f"flow: {flow.status_code} {flow.text}")
        return str(flow.json()["id"])

    def messages(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = self.http.get(f"/mailboxes/{self.mailbox_id}/messages", params=params)
            page.raise_for_status()
            body = page.json()
            items += body["items"]
            cursor = body.get("next_cursor")
            if not cursor:
                return items

    def audio(self, message_id: str) -> bytes:
        response = self.http.get(f"/messages/{message_id}/audio")
        response.raise_for_status()
        return response.content


def wav_bytes(pcm: Pcm) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()


def read_wav(data: bytes) -> Pcm:
    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getframerate() != 8000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError("not 8 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def read_wav_or_empty(data: bytes) -> Pcm:
    """A message's audio; no samples when the file is not a readable 8 kHz WAV (Asterisk
    leaves empty files when it loses a message)."""
    try:
        return read_wav(data)
    except (ValueError, EOFError, wave.Error):
        return np.zeros(0, dtype=np.int16)


def check_recordings(result: Result, reference: Pcm, recordings: Iterator[Pcm]) -> None:
    snrs: list[float] = []
    tails: list[float] = []
    heads: list[float] = []
    first_second: list[float] = []
    for pcm in recordings:
        result.recordings += 1
        c = compare(reference, pcm, max_lag_ms=5000)
        snrs.append(c.snr_db)
        tails.append(c.missing_tail_ms)
        heads.append(c.missing_head_ms)
        first_second.append(first_second_missing_ms(reference, pcm, c.lag))
        if c.snr_db >= MIN_SNR_DB and c.missing_tail_ms <= MAX_MISSING_MS and c.missing_head_ms <= MAX_MISSING_MS:
            result.recordings_exact += 1
    result.mismatches = result.recordings - result.recordings_exact
    result.first_second_incomplete = sum(1 for ms in first_second if ms > 0)
    if snrs:
        result.worst_snr_db = min(snrs)
        result.worst_missing_tail_ms = max(tails)
        result.worst_missing_head_ms = max(heads)
        result.worst_first_second_missing_ms = max(first_second)


def quiet_check(args: argparse.Namespace, result: Result) -> None:
    """Waits for a quiet machine (``--quiet-check``) and records what it found."""
    if not args.quiet_check:
        result.quiet = {"checked": False, "load_1min": load_average()}
        return
    found = wait_quiet(args.quiet_load, args.quiet_timeout)
    result.quiet = {"checked": True, "limit": args.quiet_load, **asdict(found)}
    result.quiet["waited_s"] = round(found.waited_s, 1)
    if not found.quiet:
        result.notes.append(
            f"NOT QUIET: load average {found.load_1min:.2f} >= {args.quiet_load} after {args.quiet_timeout:g} s; the run went ahead"
        )


def run_sipp(
    args: argparse.Namespace, work: Path, sip_port: int, result: Result, pid: int, media_port: int
) -> CpuSampler:
    sipp = shutil.which("sipp")
    sipp_port = free_port()
    if sipp is None:
        raise SystemExit("sipp not found: apt-get install sip-tester")
    cmd = [
        sipp, f"127.0.0.1:{sip_port}",
        "-sf", str(work / "caller.xml"),
        "-s", NUMBER,
        "-i", "127.0.0.1", "-t", "u1",
        "-mp", str(media_port),
        "-p", str(sipp_port),
        "-r", str(args.rate), "-l", str(args.concurrency), "-m", str(args.calls),
        "-timeout", f"{args.time_limit}s", "-timeout_error",
        "-recv_timeout", "30000",
        "-nostdin",
        "-trace_stat", "-stf", str(work / "stat.csv"), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", str(work / "sipp_errors.log"),
    ]
    result.notes.append("sipp " + " ".join(cmd[1:]))
    capturing = args.caller == "fixed-time"
    with (
        tcpdump(work / "heard.pcap", sip_port, media_port, work / "tcpdump.log")
        if capturing
        else contextlib.nullcontext(None)
    ) as captured:
        before = cpu_seconds(pid)
        children_cpu_before = children_cpu_seconds(pid)
        sched_before = loop_thread_schedstat(pid)
        machine_before = machine_busy_seconds()
        drops_before = udp_receive_drops()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        with CpuSampler(pid, (sip_port, sipp_port)) as sampler, (work / "sipp.out").open("wb") as out:
            proc = subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, timeout=args.time_limit + 30, check=False)
        result.wall_seconds = time.monotonic() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result.machine_busy_cores_avg = (machine_busy_seconds() - machine_before) / result.wall_seconds
        result.udp_receive_drops = udp_receive_drops() - drops_before
        result.cpu_seconds_during_calls = cpu_seconds(pid) - before
        result.children_cpu_seconds_during_calls = children_cpu_seconds(pid) - children_cpu_before
        sched_after = loop_thread_schedstat(pid)
    if captured is not None:
        result.capture_packets = captured.captured
        result.capture_dropped = captured.dropped_by_kernel
        result.tcpdump_cpu_seconds = captured.cpu_seconds
    result.sipp_cpu_seconds = (children.ru_utime + children.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    result.machine_cores = os.cpu_count() or 0
    result.loop_thread_on_cpu_s = sched_after[0] - sched_before[0]
    result.loop_thread_waiting_s = sched_after[1] - sched_before[1]
    result.sipp_exit = proc.returncode
    result.cores_avg = result.cpu_seconds_during_calls / result.wall_seconds
    result.cores_peak_5s = sampler.peak_cores()
    result.sip_drops_service = sampler.drops.get(sip_port, 0)
    result.sip_drops_sipp = sampler.drops.get(sipp_port, 0)
    read_sipp_stats(work, result)
    return sampler


def read_sipp_stats(work: Path, result: Result) -> None:
    stat = work / "stat.csv"
    if stat.exists():
        rows = list(csv.DictReader(stat.read_text().splitlines(), delimiter=";"))
        if rows:
            last = rows[-1]
            result.created = int(last["TotalCallCreated"])
            result.successful = int(last["SuccessfulCall(C)"])
            result.failed = int(last["FailedCall(C)"])
            result.retransmissions = int(last["Retransmissions(C)"])
            result.peak_concurrent = max(int(r["CurrentCall"]) for r in rows)
            result.concurrent_avg = sum(int(r["CurrentCall"]) for r in rows) / len(rows)
    rtts: list[float] = []
    refused = 0
    for path in work.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2 and parts[1].strip():
                if len(parts) >= 3 and parts[2].strip() == "2":  # the 503's timer
                    refused += 1
                else:
                    rtts.append(float(parts[1]))
    result.refused = refused
    if rtts:
        result.invite_to_200_ms = {
            "n": len(rtts), "p50": percentile(rtts, 50), "p99": percentile(rtts, 99), "max": max(rtts)
        }


def run_core(
    args: argparse.Namespace, work: Path, reference: Pcm, result: Result, sip_port: int, media_port: int
) -> None:
    recordings = work / "recordings"
    env = service_env(work / "var", sip_port, args.max_calls, {})
    cmd = [sys.executable, "-m", "benchmarks.sip_load.core_server", "--out", str(recordings)]
    log = work / "service.log"
    with process(cmd, env, log) as proc:
        wait_ready(proc, log, lambda: "READY" in log.read_text())
        if args.service_cpu is not None:
            pin(proc.pid, args.service_cpu)
        quiet_check(args, result)
        start_cpu = cpu_seconds(proc.pid)
        run_sipp(args, work, sip_port, result, proc.pid, media_port)
        time.sleep(1.0)  # the last recordings are written when their scripts end
        result.cpu_seconds_total = cpu_seconds(proc.pid) - start_cpu
    lines = log.read_text().splitlines()
    for prefix, label in (
        ("LOOPLAG ", "service event loop lag ms: "),
        ("INVITE200 ", "service-side INVITE->200 ms: "),
        ("PREBOUND misses=", "INVITEs that found no pre-bound RTP pair: "),
        ("ROUTED ", "service-side INVITE->route known ms: "),
    ):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            result.notes.append(label + found[-1].removeprefix(prefix))
    files = sorted(recordings.glob("*.wav"))
    check_recordings(result, reference, (read_wav(f.read_bytes()) for f in files))


def run_deposit(
    args: argparse.Namespace,
    work: Path,
    reference: Pcm,
    result: Result,
    sip_port: int,
    media_port: int,
    menu_prompt: bytes | None = None,
) -> None:
    http_port = free_port(socket.SOCK_STREAM)
    url = f"http://127.0.0.1:{http_port}"
    with smtp_server() as smtp:
        env = service_env(
            work / "var",
            sip_port,
            args.max_calls,
            {
                "AFTERBEEP_HTTP_ADDR": f"127.0.0.1:{http_port}",
                "AFTERBEEP_SMTP_URL": smtp.url(),
                **({"AFTERBEEP_TRANSCRIBE": "off"} if args.no_transcribe else {}),
            },
        )
        log = work / "service.log"
        with process([str(BIN / "afterbeep"), "serve"], env, log) as proc:
            wait_ready(proc, log, lambda: _healthy(url))
            if args.service_cpu is not None:
                pin(proc.pid, args.service_cpu)
            api = DepositApi(url, env, menu_prompt, email=not args.no_email)
            quiet_check(args, result)
            start_cpu = cpu_seconds(proc.pid)
            start_children_cpu = children_cpu_seconds(proc.pid)
            run_sipp(args, work, sip_port, result, proc.pid, media_port)
            calls_ended = time.monotonic()
            messages = wait_for(lambda: api.messages(), lambda m: len(m) >= result.admitted, args.drain_seconds)
            result.messages_stored_after_s = time.monotonic() - calls_ended
            if not args.no_email:
                emails = wait_for(lambda: _emails(smtp), lambda n: n >= len(messages), args.drain_seconds)
                result.emails_received_after_s = time.monotonic() - calls_ended
                result.emails = emails
            result.cpu_seconds_total = cpu_seconds(proc.pid) - start_cpu
            result.children_cpu_seconds_total = children_cpu_seconds(proc.pid) - start_children_cpu
            if len({m["call_id"] for m in messages}) != len(messages):
                result.notes.append("duplicate call_id among messages")
            check_recordings(result, reference, (read_wav(api.audio(m["id"])) for m in messages))
            result.notes.append("service-side INVITE->200 ms: " + scraped_invite_to_200(url))
            routed = scraped_invite_to_200(url, "afterbeep_sip_invite_routed_seconds")
            result.notes.append("service-side INVITE->route known ms: " + routed)
            late = scraped_invite_to_200(url, "afterbeep_prompt_late_seconds")
            result.notes.append("service-side prompt first frame late ms: " + late)
            skipped = scraped_invite_to_200(url, "afterbeep_prompt_skipped_seconds")
            result.notes.append("service-side greeting start skipped (200 OK to the pacer) ms: " + skipped)
            result.notes.append(f"service-side prompt stalls (pacer behind by > 5 frames): {scraped_stalls(url)}")
            started = scraped_invite_to_200(url, "afterbeep_recording_start_late_seconds")
            overflow = scraped_stalls(url, "afterbeep_recording_preroll_overflow_total")
            result.notes.append(f"service-side recording set up after the beep's end ms: {started}; past the pre-roll: {overflow}")
            result.refused_by_reason, limit = scraped_admission(url)
            if limit is not None:
                result.notes.append(f"admission: call limit at the end {limit:g}")


def run_asterisk(
    args: argparse.Namespace, work: Path, reference: Pcm, result: Result, sip_port: int, media_port: int
) -> None:
    install = asterisk.Install(args.asterisk_prefix)
    home = work / "asterisk"
    with asterisk.running(install, home, sip_port, work / "service.log") as proc:
        if args.service_cpu is not None:
            pin(proc.pid, args.service_cpu)
        quiet_check(args, result)
        errors = home / "log" / "messages.log"
        at_start = len(errors.read_text().splitlines()) if errors.is_file() else 0
        start_cpu = cpu_seconds(proc.pid)
        run_sipp(args, work, sip_port, result, proc.pid, media_port)
        calls_ended = time.monotonic()
        files = asterisk.wait_messages(home, result.admitted, args.drain_seconds)
        result.messages_stored_after_s = time.monotonic() - calls_ended
        result.cpu_seconds_total = cpu_seconds(proc.pid) - start_cpu
    result.loop_thread_on_cpu_s = result.loop_thread_waiting_s = 0.0  # afterbeep's event loop only
    logged = errors.read_text().splitlines()[at_start:] if errors.is_file() else []
    if logged:
        result.notes.append(f"Asterisk logged {len(logged)} warnings/errors during the calls ({errors}), last: {logged[-1][:200]}")
    check_recordings(result, reference, (read_wav_or_empty(f.read_bytes()) for f in files))


def heard(
    work: Path, result: Result, sip_port: int, media_port: int, nominal: Nominal, beep_sent: Pcm
) -> None:
    """The beep's lateness and the caller's own timing, from the capture of what it heard."""
    capture = calls_heard(
        read_pcap(work / "heard.pcap"), sip_port, media_port, nominal.speak_at + KEEP_AFTER_SPEECH_S
    )
    answered = [c for c in capture.calls if c.answered is not None]
    late: list[float] = []
    speech: list[float] = []
    first: list[float] = []
    result.beeps_late = result.beeps_late_handed_over_late = 0
    for call in answered:
        assert call.answered is not None
        if call.times:
            first.append(call.times[0] - call.answered)
        lateness = beep_lateness(call.arrivals(), call.answered, nominal, beep_sent)
        if lateness is not None:
            late.append(lateness)
            if lateness * 1000 > BEEP_LATE_LIMIT_MS:
                result.beeps_late += 1
                if call.times and call.times[0] - call.answered > ANCHOR_WINDOW:
                    result.beeps_late_handed_over_late += 1
        spoke = call.speech_started()
        if spoke is not None:
            speech.append(spoke - call.answered - nominal.speak_at_ms / 1000)
    result.calls_answered_in_capture = len(answered)
    result.refused_in_capture = sum(1 for c in capture.calls if c.refused)
    result.beeps_heard = len(late)
    result.beep_late_ms = percentiles_ms(late)
    result.caller_speech_late_ms = percentiles_ms(speech)
    result.first_audio_ms = percentiles_ms(first)
    result.capture_unmatched_rtp = capture.unmatched_rtp
    if capture.sip_unparsed:
        result.notes.append(f"capture: {capture.sip_unparsed} SIP datagrams not parsed")


def scraped_invite_to_200(url: str, name: str = "afterbeep_sip_invite_to_200_seconds") -> str:
    """p50/p99 of one of the service's histograms from /metrics (bucket upper bounds, summed
    over label sets)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    counts: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            bound = float(line.split('le="')[1].split('"')[0])
            counts[bound] = counts.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    buckets = sorted(counts.items())
    total = buckets[-1][1] if buckets else 0.0
    parts = []
    for q in (0.5, 0.99):
        edge = next((b for b, n in buckets if total and n >= q * total), None)
        parts.append(f"p{round(q * 100)}<={edge * 1000:g}" if edge is not None else f"p{round(q * 100)}=n/a")
    return " ".join(parts)


def scraped_stalls(url: str, name: str = "afterbeep_prompt_stalls_total") -> str:
    """``afterbeep_prompt_stalls_total`` (or another counter) from /metrics (n/a: a version
    without it)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return f"{float(line.rsplit(' ', 1)[1]):g}"
    return "n/a"


def scraped_admission(url: str) -> tuple[dict[str, int], float | None]:
    """afterbeep's refusals by reason (``afterbeep_calls_refused_total``) and its call limit
    (``afterbeep_admission_call_limit``) from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    by_reason: dict[str, int] = {}
    limit: float | None = None
    for line in text.splitlines():
        if line.startswith("afterbeep_calls_refused_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            count = int(float(line.rsplit(" ", 1)[1]))
            if count:
                by_reason[reason] = count
        elif line.startswith("afterbeep_admission_call_limit "):
            limit = float(line.rsplit(" ", 1)[1])
    return by_reason, limit


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _emails(smtp: SmtpServer) -> int:
    return sum(1 for m in smtp.messages() if any(p.get_content_type() == "audio/wav" or p.get_filename() for p in m.message.iter_attachments()))


def wait_for(get: Any, done: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=["core", "deposit", "flow"], default="core")
    parser.add_argument("--calls", type=int, default=200, help="total calls (SIPp -m)")
    parser.add_argument("--concurrency", type=int, default=100, help="concurrent calls (SIPp -l)")
    parser.add_argument("--rate", type=float, default=20, help="new calls per second (SIPp -r)")
    parser.add_argument("--hold-seconds", type=float, default=3.0, help="seconds of speech per call")
    parser.add_argument("--max-calls", type=int, default=0, help="AFTERBEEP_MAX_CALLS (default: concurrency + 200)")
    parser.add_argument("--time-limit", type=int, default=170, help="SIPp -timeout, seconds")
    parser.add_argument("--drain-seconds", type=float, default=90, help="deposit: wait for messages and emails")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (a run that fails always keeps it)")
    parser.add_argument("--service-cpu", type=int, default=None, help="pin the service to this CPU, SIPp to the others")
    parser.add_argument(
        "--caller", choices=["beep-wait", "fixed-time"], default="beep-wait",
        help="deposit: wait for the beep plus 0.8 s (beep-wait), or speak at the prompts' nominal end plus 0.3 s after the answer and measure the beep on the audio received (fixed-time)",
    )
    parser.add_argument("--target", choices=["afterbeep", "asterisk"], default="afterbeep")
    parser.add_argument("--asterisk-prefix", type=Path, default=None, help="Asterisk's install prefix (--target asterisk)")
    parser.add_argument("--no-email", action="store_true", help="deposit: the mailbox has no notify_email")
    parser.add_argument(
        "--no-transcribe", action="store_true",
        help="deposit: AFTERBEEP_TRANSCRIBE=off (Asterisk transcribes nothing either)",
    )
    parser.add_argument(
        "--quiet-check", action=argparse.BooleanOptionalAction, default=True,
        help="wait for a 1-minute load average under --quiet-load before the calls start",
    )
    parser.add_argument("--quiet-load", type=float, default=0.5)
    parser.add_argument("--quiet-timeout", type=float, default=600, help="seconds; then the run goes ahead, marked not quiet")
    args = parser.parse_args(argv)
    if args.calls > 5000 or args.concurrency > 2000 or args.time_limit > 900:
        parser.error("bounded: at most 5000 calls, 2000 concurrent, 900 s")
    if args.caller == "fixed-time" and args.mode != "deposit":
        parser.error("--caller fixed-time needs --mode deposit")
    if args.target == "asterisk":
        if args.mode != "deposit" or args.caller != "fixed-time" or args.asterisk_prefix is None:
            parser.error("--target asterisk needs --mode deposit --caller fixed-time --asterisk-prefix DIR")
        asterisk.Install(args.asterisk_prefix).check()
    if args.caller == "fixed-time" and shutil.which("tcpdump") is None:
        parser.error("--caller fixed-time needs tcpdump (scripts/install-system-deps.sh)")
    args.max_calls = args.max_calls or args.concurrency + 200

    work = Path(tempfile.mkdtemp(prefix=f"sip_load_{args.mode}_"))
    hold_ms = round(args.hold_seconds * 1000 / 20) * 20
    speech = speech_like(hold_ms, seed=11)
    reference = g711_roundtrip(Codec.PCMU, speech)
    stream = RtpStreamBuilder(Codec.PCMU, 20, 101)
    prompts_ms = (len(prompt("vm-greeting")) + len(prompt("vm-instructions")) + len(beep())) // 8
    menu_prompt: bytes | None = None
    wait = ""
    nominal: Nominal | None = None
    beep_sent: Pcm | None = None
    if args.caller == "fixed-time":
        if args.target == "asterisk":
            install = asterisk.Install(args.asterisk_prefix)
            nominal = install.nominal()
            beep_sent = g711_roundtrip(Codec.PCMU, install.sound(asterisk.BEEP))
        else:
            nominal = Nominal.of(
                [len(prompt("vm-greeting")), len(prompt("vm-instructions"))], len(beep()), FRAME_SAMPLES
            )
            beep_sent = g711_roundtrip(Codec.PCMU, beep())
        # a phone sends RTP from the answer: silence until the caller speaks (the marker bit
        # on the first speech packet lets the capture see when it did)
        stream.audio(np.zeros(nominal.speak_at_ms * 8, dtype=np.int16)).pause(0)
    elif args.mode == "deposit":
        wait = f'<pause milliseconds="{prompts_ms + LEAD_MS}"/>'
    elif args.mode == "flow":
        menu = speech_like(MENU_PROMPT_MS, seed=5)
        menu_prompt = wav_bytes(menu)
        # silence while the menu plays, "1" after it, silence through the mailbox's prompts
        stream.audio(np.zeros((MENU_PROMPT_MS + DIGIT_AFTER_MS) * 8, dtype=np.int16)).digit("1", gap_ms=0)
        stream.audio(np.zeros((prompts_ms + LEAD_MS) * 8, dtype=np.int16))
    stream.audio(speech)
    played_ms = round(stream.duration * 1000)
    write_pcap(work / "speech.pcap", stream.take())
    (work / "caller.xml").write_text(SCENARIO.replace("{wait}", wait).replace("{hold_ms}", str(played_ms + TAIL_MS)))

    result = Result(args.mode, args.calls, args.concurrency, args.rate, hold_ms / 1000)
    result.target, result.caller = args.target, args.caller
    result.email = not args.no_email and args.target == "afterbeep"
    result.transcribe = not args.no_transcribe and args.target == "afterbeep"
    if args.no_transcribe and os.environ.get("AFTERBEEP_TRANSCRIBE") not in (None, "off"):
        parser.error("--no-transcribe with AFTERBEEP_TRANSCRIBE set otherwise")
    if not args.no_transcribe and os.environ.get("AFTERBEEP_TRANSCRIBE") == "off":
        result.transcribe = False
    if nominal is not None:
        result.speak_at_ms = nominal.speak_at_ms
        result.beep_due_ms = round(nominal.beep_start * 1000, 1)
    sip_port, media_port = free_port(), free_port()
    try:
        if args.target == "asterisk":
            run_asterisk(args, work, reference, result, sip_port, media_port)
        elif args.mode == "core":
            run_core(args, work, reference, result, sip_port, media_port)
        else:
            run_deposit(args, work, reference, result, sip_port, media_port, menu_prompt)
        if nominal is not None and beep_sent is not None:
            heard(work, result, sip_port, media_port, nominal, beep_sent)
    finally:
        if result.created:
            result.cpu_ms_per_call = 1000 * result.cpu_seconds_total / result.created
        report(result, work)
        if args.json is not None:
            args.json.write_text(
                json.dumps(
                    {
                        **asdict(result),
                        "first_second_incomplete_share": result.first_second_incomplete_share,
                        "cores_per_100_calls": result.cores_per_100_calls,
                        "passed": result.passed,
                        "admitted": result.admitted,
                        "beeps_on_time": result.beeps_on_time,
                        "admitted_whole": result.admitted_whole,
                        "clean": result.clean,
                        "work": str(work),
                    },
                    indent=2,
                )
            )
        if not args.keep and result.passed:  # a failed run keeps its evidence
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if result.passed else 1)


def report(r: Result, work: Path) -> None:
    lat = r.invite_to_200_ms
    per = r.cores_per_100_calls
    rows = [
        (
            "mode / target / caller",
            f"{r.mode} / {r.target} / {r.caller}"
            + ("" if r.target != "afterbeep" or r.email else " / no email")
            + ("" if r.target != "afterbeep" or r.transcribe else " / no transcription"),
        ),
        ("calls created / successful / failed", f"{r.created} / {r.successful} / {r.failed}"),
        (
            "calls admitted / refused with 503",
            f"{r.admitted} / {r.refused}"
            + (f" (on the wire: {r.refused_in_capture})" if r.refused_in_capture is not None else "")
            + (" by " + ", ".join(f"{k} {v}" for k, v in sorted(r.refused_by_reason.items())) if r.refused_by_reason else ""),
        ),
        ("SIPp -l / peak / mean concurrent", f"{r.concurrency} / {r.peak_concurrent} / {r.concurrent_avg:.1f}"),
        ("SIPp exit / retransmissions", f"{r.sipp_exit} / {r.retransmissions}"),
        ("wall seconds (SIPp run)", f"{r.wall_seconds:.1f}"),
        ("service CPU s during calls / total", f"{r.cpu_seconds_during_calls:.1f} / {r.cpu_seconds_total:.1f}"),
        (
            "of which post-call child CPU s during calls / total",
            f"{r.children_cpu_seconds_during_calls:.1f} / {r.children_cpu_seconds_total:.1f}",
        ),
        ("cores used avg / peak 5 s", f"{r.cores_avg:.2f} / {r.cores_peak_5s:.2f}"),
        ("CPU ms per call", f"{r.cpu_ms_per_call:.1f}"),
        (
            "cores per 100 concurrent calls: during calls / total",
            "n/a" if per is None else f"{per['during_calls']:.3f} / {per['total']:.3f}",
        ),
        ("loop thread s on a CPU / waiting for one", f"{r.loop_thread_on_cpu_s:.1f} / {r.loop_thread_waiting_s:.1f}"),
        ("SIPp CPU s / machine busy cores (of n)", f"{r.sipp_cpu_seconds:.1f} / {r.machine_busy_cores_avg:.2f} ({r.machine_cores})"),
        ("UDP drops: all / service SIP / SIPp SIP", f"{r.udp_receive_drops} / {r.sip_drops_service} / {r.sip_drops_sipp}"),
        (
            "INVITE->200 ms p50 / p99 / max",
            f"{lat.get('p50', float('nan')):.1f} / {lat.get('p99', float('nan')):.1f} / {lat.get('max', float('nan')):.1f}",
        ),
        ("recordings / exact / mismatches", f"{r.recordings} / {r.recordings_exact} / {r.mismatches}"),
        (
            "worst SNR dB / tail ms / head ms",
            f"{r.worst_snr_db} / {r.worst_missing_tail_ms} / {r.worst_missing_head_ms}",
        ),
    ]
    if r.quiet:
        quiet = r.quiet
        if quiet.get("checked"):
            state = "quiet" if quiet["quiet"] else "NOT QUIET"
            text = f"{state}: {quiet['load_1min']:.2f} (first look {quiet['load_at_first_look']:.2f}, waited {quiet['waited_s']:.0f} s)"
        else:
            text = f"not checked: {quiet['load_1min']:.2f}"
        rows.insert(1, ("load average before the calls", text))
    if r.caller == "fixed-time":
        late, spoke = r.beep_late_ms, r.caller_speech_late_ms
        share = r.first_second_incomplete_share
        rows += [
            ("caller speaks at / beep due, ms after the 200", f"{r.speak_at_ms} / {r.beep_due_ms}"),
            ("beeps heard / calls answered (capture)", f"{r.beeps_heard} / {r.calls_answered_in_capture}"),
            ("beep late ms p50 / p99 / max (admitted calls)", _p50_p99_max(late)),
            ("caller's speech late ms p50 / p99 / max", _p50_p99_max(spoke)),
            ("target's first audio after its 200 ms p50 / p99 / max", _p50_p99_max(r.first_audio_ms)),
            (
                f"beeps > {BEEP_LATE_LIMIT_MS:g} ms late / of them first audio > {ANCHOR_WINDOW:g} s after the 200",
                f"{r.beeps_late} / {r.beeps_late_handed_over_late}",
            ),
            (
                "messages missing some of the first second",
                f"{r.first_second_incomplete} / {r.recordings}"
                + (f" ({100 * share:.1f} %), worst {r.worst_first_second_missing_ms:.0f} ms" if share is not None and r.worst_first_second_missing_ms is not None else ""),
            ),
            (
                "capture packets / dropped / unmatched RTP; tcpdump CPU s",
                f"{r.capture_packets} / {r.capture_dropped} / {r.capture_unmatched_rtp}; {r.tcpdump_cpu_seconds or 0:.1f}",
            ),
        ]
    if r.emails is not None:
        rows.append(("emails with WAV received", str(r.emails)))
    if r.messages_stored_after_s is not None and r.emails_received_after_s is not None:
        rows.append(
            (
                "s after the last call: all stored / emailed",
                f"{r.messages_stored_after_s:.1f} / {r.emails_received_after_s:.1f}",
            )
        )
    elif r.messages_stored_after_s is not None:
        rows.append(("s after the last call: all stored", f"{r.messages_stored_after_s:.1f}"))
    rows.append(("PASSED (every admitted call's message stored and exact)", str(r.passed)))
    if r.caller == "fixed-time":
        rows.append((f"admitted calls whole, beeps <= {BEEP_LATE_LIMIT_MS:g} ms late", str(r.admitted_whole)))
        rows.append(("CLEAN (all admitted, on time, whole)", str(r.clean)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for note in r.notes:
        print("note:", note)
    print("work dir:", work)


def _p50_p99_max(figures: dict[str, float]) -> str:
    if not figures.get("n"):
        return "n/a"
    return f"{figures['p50']:.1f} / {figures['p99']:.1f} / {figures['max']:.1f}"


if __name__ == "__main__":
    main()
