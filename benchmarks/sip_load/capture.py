"""What the SIPp caller heard, from a packet capture of the loopback interface.

SIPp can replay RTP but cannot record what it receives. ``tcpdump -i lo`` runs beside it for
the whole SIPp run and keeps, on the wire, three kinds of packets:

* SIP to and from the target's SIP port: each call's 200 OK to the INVITE (the answer time,
  and in its SDP the address the target sends the call's RTP from), and the caller's BYE
  (the end of the call's packets: the target reuses its RTP ports for later calls);
* RTP the target sends to SIPp's media port (one port for every call: SIPp's ``[media_port]``),
  told apart by their source, the address of the call's SDP answer;
* the RTP packets the caller sends with the marker bit set (the first packet of its stream and
  the first of its speech, a BPF test on the RTP header), to show the caller itself spoke on
  time: SIPp replays each call's pcap on a thread of its own, and a late caller would flatter
  the target.

The capture is read after the run, one record at a time (a 600-call run writes a few hundred MB);
each call keeps at most ``keep_seconds`` after its answer, enough to find the beep. Times are
the kernel's capture timestamps, so a busy reader does not change them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afterbeep.audio.g711 import alaw_decode, ulaw_decode
from benchmarks.sip_load.fixed_time import Arrivals

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17
PCMU, PCMA = 0, 8

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_RTP = struct.Struct("!BBHII")
_AUDIO_PORT = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)
_CONNECTION = re.compile(rb"^c=IN IP4 (\S+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Datagram:
    time: float  # capture timestamp, seconds since the epoch
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_pcap(path: Path) -> Iterator[Datagram]:
    """The IPv4 UDP datagrams of a classic pcap file (Ethernet link type, what ``tcpdump -i lo``
    writes), one at a time; other frames are skipped."""
    with path.open("rb") as f:
        head = f.read(_GLOBAL.size)
        if len(head) < _GLOBAL.size:
            return
        magic, _, _, _, _, _, linktype = _GLOBAL.unpack(head)
        if magic not in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or linktype != LINKTYPE_ETHERNET:
            raise ValueError(f"{path}: not a little-endian Ethernet pcap")
        fraction = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
        while True:
            record = f.read(_RECORD.size)
            if len(record) < _RECORD.size:
                return
            sec, frac, incl, _ = _RECORD.unpack(record)
            frame = f.read(incl)
            if len(frame) < incl:
                return  # the capture was cut mid-record
            datagram = _udp(frame, sec + frac * fraction)
            if datagram is not None:
                yield datagram


def _udp(frame: bytes, at: float) -> Datagram | None:
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or frame[23] != IPPROTO_UDP:
        return None
    udp = 14 + ihl
    sport, dport, length = struct.unpack_from("!HHH", frame, udp)
    src = ".".join(str(b) for b in frame[26:30])
    dst = ".".join(str(b) for b in frame[30:34])
    return Datagram(at, (src, sport), (dst, dport), frame[udp + 8 : udp + length])


@dataclass(frozen=True, slots=True)
class SipMessage:
    """The parts of a SIP message the capture needs."""

    request: str | None  # the method of a request, None for a response
    status: int | None  # the code of a response
    call_id: str
    cseq_method: str
    body: bytes

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        first = lines[0].split(" ", 2)
        if first[0] == "SIP/2.0":
            request, status = None, int(first[1])
        elif len(first) == 3 and first[2] == "SIP/2.0":
            request, status = first[0], None
        else:
            raise ValueError(f"not a SIP start line: {lines[0][:40]!r}")
        call_id = cseq = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name in ("call-id", "i"):
                call_id = value.strip()
            elif name == "cseq":
                cseq = value.split()[-1] if value.split() else ""
        if not call_id:
            raise ValueError("SIP message without Call-ID")
        return cls(request, status, call_id, cseq, body)

    def sdp_audio(self) -> tuple[str, int] | None:
        """The address of the SDP's audio stream (session-level connection address)."""
        port = _AUDIO_PORT.search(self.body)
        host = _CONNECTION.search(self.body)
        if port is None or host is None:
            return None
        return host.group(1).decode(), int(port.group(1))


@dataclass(frozen=True, slots=True)
class Rtp:
    payload_type: int
    marker: bool
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> Rtp:
        if len(data) < _RTP.size or data[0] >> 6 != 2:
            raise ValueError("not RTP version 2")
        first, second, _, _, _ = _RTP.unpack_from(data)
        start = _RTP.size + 4 * (first & 0x0F)
        if first & 0x10:  # header extension
            if len(data) < start + 4:
                raise ValueError("truncated RTP extension")
            start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
        end = len(data)
        if first & 0x20:  # padding
            end -= data[-1]
        if start > end:
            raise ValueError("truncated RTP packet")
        return cls(second & 0x7F, bool(second & 0x80), data[start:end])


@dataclass
class HeardCall:
    """One call as the caller met it."""

    call_id: str
    answered: float | None = None
    media: tuple[str, int] | None = None  # where the target sends this call's RTP from
    ended: float | None = None  # the caller's BYE
    refused: bool = False  # the INVITE's final answer was 503
    times: list[float] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    payload_types: list[int] = field(default_factory=list)
    caller_marks: list[float] = field(default_factory=list)  # caller's packets with the marker

    def arrivals(self) -> Arrivals:
        """The audio packets received, decoded (PCMU or PCMA) one after another."""
        decoded = [
            ulaw_decode(p) if pt == PCMU else alaw_decode(p)
            for p, pt in zip(self.payloads, self.payload_types, strict=True)
        ]
        sizes = np.array([len(d) for d in decoded], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        pcm = np.concatenate(decoded) if decoded else np.zeros(0, dtype=np.int16)
        return Arrivals(pcm.astype(np.int16), starts, np.asarray(self.times, dtype=np.float64))

    def speech_started(self) -> float | None:
        """When the caller's speech reached the wire: its second marked packet (the first one
        opens its stream of silence)."""
        return self.caller_marks[1] if len(self.caller_marks) >= 2 else None


@dataclass
class Capture:
    calls: list[HeardCall]
    unmatched_rtp: int = 0  # RTP to the caller from an address no live call answered from
    sip_unparsed: int = 0


def calls_heard(
    datagrams: Iterator[Datagram], sip_port: int, media_port: int, keep_seconds: float
) -> Capture:
    """Sorts the captured datagrams into calls (see the module docstring)."""
    by_call_id: dict[str, HeardCall] = {}
    live: dict[tuple[str, int], HeardCall] = {}  # the target's RTP address -> its current call
    capture = Capture([])
    for d in datagrams:
        if sip_port in (d.src[1], d.dst[1]) and media_port not in (d.src[1], d.dst[1]):
            try:
                message = SipMessage.parse(d.payload)
            except ValueError:
                capture.sip_unparsed += 1
                continue
            call = by_call_id.get(message.call_id)
            if call is None:
                call = by_call_id[message.call_id] = HeardCall(message.call_id)
                capture.calls.append(call)
            if message.cseq_method == "INVITE" and message.status is not None and d.src[1] == sip_port:
                media = message.sdp_audio()
                if media is not None and 100 < message.status < 300:
                    if call.media is not None and live.get(call.media) is call:
                        del live[call.media]
                    call.media = media
                    live[media] = call
                if message.status == 200 and call.answered is None:
                    call.answered = d.time
                elif message.status == 503:
                    call.refused = True
            elif message.request == "BYE" and call.ended is None:
                call.ended = d.time
                if call.media is not None and live.get(call.media) is call:
                    del live[call.media]
        elif d.dst[1] == media_port:
            call = live.get(d.src)
            if call is None:
                capture.unmatched_rtp += 1
                continue
            try:
                rtp = Rtp.parse(d.payload)
            except ValueError:
                continue
            if rtp.payload_type not in (PCMU, PCMA):
                continue
            if call.answered is not None and d.time - call.answered > keep_seconds:
                continue
            call.times.append(d.time)
            call.payloads.append(rtp.payload)
            call.payload_types.append(rtp.payload_type)
        elif d.src[1] == media_port:
            call = live.get(d.dst)
            if call is not None:
                call.caller_marks.append(d.time)
    return capture


def capture_filter(sip_port: int, media_port: int) -> str:
    """BPF: SIP on ``sip_port``; RTP to the caller's media port; the caller's RTP packets with
    the marker bit (byte 1 of the RTP header, after the 8-byte UDP header)."""
    return (
        f"udp and (port {sip_port} or dst port {media_port}"
        f" or (src port {media_port} and udp[9] & 0x80 != 0))"
    )


@dataclass
class TcpdumpStats:
    captured: int | None = None
    dropped_by_kernel: int | None = None
    cpu_seconds: float = 0.0


@contextlib.contextmanager
def tcpdump(out: Path, sip_port: int, media_port: int, log: Path) -> Iterator[TcpdumpStats]:
    """``tcpdump -i lo`` writing ``out`` for as long as the block runs; its counters and CPU
    time once it has stopped."""
    cmd = [
        "tcpdump", "-i", "lo", "-n", "-p", "-B", "131072", "-Z", "root",
        "-w", str(out), capture_filter(sip_port, media_port),
    ]
    stats = TcpdumpStats()
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 20
        while b"listening on" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield stats
    finally:
        stats.cpu_seconds = _cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    for name, attr in (("captured", "captured"), ("dropped by kernel", "dropped_by_kernel")):
        found = re.search(rf"(\d+) packets? {name}", text)
        if found:
            setattr(stats, attr, int(found.group(1)))


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
