"""The send side of one call, without sockets or timers: RTP numbering and paced jobs.

:class:`RtpSendStream` owns the sequence number, the timestamp and the *schedule*:
``due`` is the monotonic time at which the next frame is to be sent. Frames are
sent at ``t0 + n * ptime``, never at "previous + sleep(ptime)", so a 60 s prompt
does not drift. Back-to-back plays continue the same schedule and timestamps
(no marker bit); after a pause the timestamp jumps by the pause, rounded to whole
frames, and the first packet carries the marker bit (RFC 3551 section 4.1).

A job (:class:`AudioJob`, :class:`DtmfJob`) is one ``play()`` or ``send_dtmf()``;
the shared pacer calls :meth:`tick` on it whenever its stream is due.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from afterbeep.audio.g711 import ALAW_SILENCE, ULAW_SILENCE, alaw_encode, ulaw_encode
from afterbeep.telephony.media.dtmf import dtmf_payloads
from afterbeep.telephony.media.rtp import SEQ_MOD, TS_MOD, build_rtp
from afterbeep.telephony.media.sdp import CLOCK_RATE, Codec

__all__ = [
    "ANCHOR_WINDOW",
    "FOLLOW_WINDOW",
    "MAX_BURST",
    "SILENCE_OCTET",
    "Anchored",
    "AudioJob",
    "DtmfJob",
    "PlayResult",
    "Prompt",
    "PromptCache",
    "RtpSendStream",
    "SendTarget",
    "anchor",
    "encode",
]

MAX_BURST = 5  # frames sent at once to catch up after a stall; beyond that the schedule slips
# A play begun this soon after the previous one's schedule ended was meant to follow it at once:
# its first frame is reported late by how late it left after that end (see `_Job.intended`).
FOLLOW_WINDOW = 0.25
# A sequence played from the answer (`anchor`) that reaches the pacer later than this after the
# 200 OK starts late rather than without that much of its beginning.
ANCHOR_WINDOW = 1.0

_ENCODERS: dict[Codec, Callable[[npt.NDArray[np.int16]], bytes]] = {
    Codec.PCMU: ulaw_encode,
    Codec.PCMA: alaw_encode,
}
_SILENCE = {Codec.PCMU: bytes([ULAW_SILENCE]), Codec.PCMA: bytes([ALAW_SILENCE])}
SILENCE_OCTET = {Codec.PCMU: ULAW_SILENCE, Codec.PCMA: ALAW_SILENCE}
_HEADER = struct.Struct("!BBHII")  # RFC 3550 5.1, as rtp.build_rtp: V=2, no CSRC or extension
_FIRST_OCTET = 0x80
_MARKER = 0x80


def encode(codec: Codec, pcm: npt.NDArray[np.int16]) -> bytes:
    return _ENCODERS[codec](pcm)


@dataclass(frozen=True, slots=True)
class PlayResult:
    """How a play() ended: ``frames`` sent (or due while on hold), ``interrupted`` early."""

    frames: int
    samples: int
    interrupted: bool
    skipped: int = 0  # samples not sent at the start: they were due before the play began


@dataclass(frozen=True, slots=True)
class Anchored:
    """Where a sequence that should have started at its anchor begins, handed over at ``now``:
    ``dropped`` whole prompts and ``offset`` samples (whole frames) of the next one are already
    past; its first frame is due at ``due`` (within a frame before ``now``, or ``now``), which
    is ``intended`` on the anchored schedule (``intended`` < ``due``: it starts late)."""

    dropped: int
    offset: int
    skipped: int
    due: float
    intended: float


def anchor(
    lengths: Sequence[int],
    frame_samples: int,
    frame_seconds: float,
    start_at: float,
    now: float,
    window: float = ANCHOR_WINDOW,
) -> Anchored:
    """Skip the frames of prompts of ``lengths`` samples (each one's last frame padded) that fell
    due between ``start_at`` and ``now``, so that what follows them (a beep) leaves at its time
    on the anchored schedule however late the sequence was handed over. The sequence's last part
    (what ``lengths`` leaves out) is never cut: past it, or past ``window``, it starts ``now``."""
    late = now - start_at
    if late <= 0:
        return Anchored(0, 0, 0, start_at, start_at)
    if late > window:
        return Anchored(0, 0, 0, now, start_at)
    due_frames = int(late // frame_seconds)
    frames = due_frames
    dropped = 0
    for length in lengths:
        count = math.ceil(length / frame_samples)
        if frames < count:
            slot = start_at + due_frames * frame_seconds
            return Anchored(dropped, frames * frame_samples, due_frames * frame_samples, slot, slot)
        frames -= count
        dropped += 1
    whole = due_frames - frames  # every cuttable frame was due: the rest starts late
    if frames == 0:
        slot = start_at + whole * frame_seconds
        return Anchored(dropped, 0, whole * frame_samples, slot, slot)
    return Anchored(dropped, 0, whole * frame_samples, now, start_at + whole * frame_seconds)


class SendTarget(Protocol):
    """What a job needs from its session, read at every frame (a re-INVITE may change it)."""

    @property
    def codec(self) -> Codec: ...
    @property
    def payload_type(self) -> int: ...
    @property
    def event_payload_type(self) -> int | None: ...
    @property
    def ptime(self) -> int: ...
    @property
    def sending(self) -> bool: ...
    def transmit(self, packet: bytes) -> None: ...


class RtpSendStream:
    def __init__(self, ssrc: int, sequence: int, timestamp: int) -> None:
        self.ssrc = ssrc
        self.sequence = sequence % SEQ_MOD
        self.timestamp = timestamp % TS_MOD  # of the next frame
        self.due = 0.0  # monotonic time the next frame is due (once a job began)
        self._begun = False
        self._marker = True
        self.packets_sent = 0
        self.octets_sent = 0
        self.frames_withheld = 0
        self.slips = 0

    @property
    def begun(self) -> bool:
        return self._begun

    def begin(self, now: float, frame_seconds: float, frame_samples: int) -> None:
        """A job starts at ``now``: continue the schedule, or open a new talkspurt."""
        if not self._begun:
            self._begun = True
            self.due = now
            self._marker = True
            return
        late = now - self.due
        if late <= frame_seconds:
            return  # back-to-back: same schedule, contiguous timestamps
        frames = int(late // frame_seconds)
        self.due += frames * frame_seconds
        self.timestamp = (self.timestamp + frames * frame_samples) % TS_MOD
        self._marker = True

    def slip(self, now: float) -> None:
        """After a stall longer than MAX_BURST frames: resume from now, timestamps contiguous."""
        self.due = now
        self.slips += 1

    def audio(self, pt: int, payload: bytes, frame_seconds: float) -> bytes:
        sequence, timestamp = self.sequence, self.timestamp
        if self._marker:
            packet = _HEADER.pack(_FIRST_OCTET, pt | _MARKER, sequence, timestamp, self.ssrc)
            self._marker = False
        else:
            packet = _HEADER.pack(_FIRST_OCTET, pt, sequence, timestamp, self.ssrc)
        packet += payload
        octets = len(payload)
        self.sequence = (sequence + 1) & 0xFFFF
        self.timestamp = (timestamp + octets) & 0xFFFFFFFF  # G.711: one byte per sample
        self.due += frame_seconds
        self.packets_sent += 1
        self.octets_sent += octets
        return packet

    def event(
        self,
        pt: int,
        payload: bytes,
        event_ts: int,
        first: bool,
        frame_seconds: float,
        frame_samples: int,
    ) -> bytes:
        packet = build_rtp(pt, first, self.sequence, event_ts, self.ssrc, payload)
        self._sent(frame_samples, len(payload), frame_seconds)
        self._marker = True  # audio after an event starts a new talkspurt
        return packet

    def skip(self, frame_seconds: float, frame_samples: int, count: int = 1) -> None:
        """``count`` frames' time passes unsent (as in silence suppression): the next one is
        marked."""
        self.timestamp = (self.timestamp + count * frame_samples) % TS_MOD
        self.due += count * frame_seconds
        self._marker = True

    def withhold(self, frame_seconds: float, frame_samples: int) -> None:
        """A frame falls due while we must not send (hold): time passes, nothing is numbered."""
        self.skip(frame_seconds, frame_samples)
        self.frames_withheld += 1

    def resume(
        self,
        state: tuple[int, int, float, bool],
        packets: int,
        octets: int,
        withheld: int,
        slips: int,
    ) -> None:
        """Frames were sent elsewhere (the native pacer): take up its numbering and schedule."""
        self.sequence, self.timestamp, self.due, self._marker = state
        self._begun = True
        self.packets_sent += packets
        self.octets_sent += octets
        self.frames_withheld += withheld
        self.slips += slips

    @property
    def marker(self) -> bool:
        """The next packet opens a talkspurt."""
        return self._marker

    def rtp_time(self, now: float) -> int:
        """The RTP timestamp that corresponds to ``now`` (for sender reports)."""
        if not self._begun:
            return self.timestamp
        return (self.timestamp + round((now - self.due) * CLOCK_RATE)) % TS_MOD

    def _sent(self, samples: int, octets: int, frame_seconds: float) -> None:
        self.sequence = (self.sequence + 1) % SEQ_MOD
        self.timestamp = (self.timestamp + samples) % TS_MOD
        self.due += frame_seconds
        self.packets_sent += 1
        self.octets_sent += octets


class _Job:
    """Common part of a paced job: the stream schedule, the end callback, the burst limit."""

    def __init__(
        self,
        stream: RtpSendStream,
        target: SendTarget,
        done: Callable[[PlayResult | BaseException], None],
        interrupted: Callable[[], bool] | None,
    ) -> None:
        self.stream = stream
        self.target = target
        self._done = done
        self._interrupted = interrupted
        self.frames = 0
        self.samples = 0
        self.finished = False
        self.intended = 0.0  # when the first frame should leave: set by start()
        self._now = 0.0  # of the tick under way

    @property
    def due(self) -> float:
        return self.stream.due

    def start(self, now: float, anchored: tuple[float, float] | None = None) -> None:
        """Begin at ``now``; ``anchored`` (due, intended): a stream's first job, due then."""
        ptime = self.target.ptime
        stream = self.stream
        if anchored is not None and not stream.begun:
            self.intended = anchored[1]
            stream.begin(anchored[0], ptime / 1000, CLOCK_RATE * ptime // 1000)
            return
        follows = stream.begun and now - stream.due < FOLLOW_WINDOW
        self.intended = stream.due if follows else now
        stream.begin(now, ptime / 1000, CLOCK_RATE * ptime // 1000)

    def tick(self, now: float) -> bool:
        """Send every frame due by ``now``; False once the job is over."""
        stream = self.stream
        interrupted = self._interrupted
        burst = 0
        self._now = now
        while not self.finished and stream.due <= now:
            if burst == MAX_BURST:
                stream.slip(now)
                break
            if interrupted is not None and interrupted():
                self.finish(interrupted=True)
                break
            if self._frame():
                burst += 1
        return not self.finished

    def finish(self, interrupted: bool = False) -> None:
        if not self.finished:
            self.finished = True
            self._done(PlayResult(self.frames, self.samples, interrupted))

    def fail(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self._done(exc)

    def _frame(self) -> bool:
        """Send (or withhold) the frame due; False when it only let unsent frames' time pass."""
        raise NotImplementedError


class Prompt:
    """8 kHz int16 PCM to play, with its G.711 encodings made once and shared.

    Encoding a 60 s prompt takes milliseconds of the event loop; a greeting or beep
    played on every call should be a Prompt built once, not an array passed each time.
    """

    def __init__(self, pcm: npt.NDArray[np.int16]) -> None:
        self.pcm = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)
        self.pcm.setflags(write=False)
        self._encoded: dict[Codec, bytes] = {}
        self._frames: dict[tuple[Codec, int], tuple[bytes, ...]] = {}

    def __len__(self) -> int:
        return len(self.pcm)

    def after(self, samples: int) -> Prompt:
        """The prompt without its first ``samples``, sharing the encodings made so far (and the
        frames of any frame size ``samples`` is a multiple of)."""
        rest = Prompt(self.pcm[samples:])
        for codec, data in self._encoded.items():
            rest._encoded[codec] = data[samples:]
        for (codec, size), frames in self._frames.items():
            if samples % size == 0:
                rest._frames[codec, size] = frames[samples // size :]
        return rest

    @property
    def seconds(self) -> float:
        return len(self.pcm) / CLOCK_RATE

    def encoded(self, codec: Codec) -> bytes:
        data = self._encoded.get(codec)
        if data is None:
            data = self._encoded[codec] = encode(codec, self.pcm)
        return data

    def frames(self, codec: Codec, samples: int) -> tuple[bytes, ...]:
        """The encoding cut into payloads of ``samples`` (the last one padded with silence),
        made once per codec and frame size and shared by every call playing the prompt."""
        key = (codec, samples)
        frames = self._frames.get(key)
        if frames is None:
            data = self.encoded(codec)
            data += _SILENCE[codec] * (-len(data) % samples)
            frames = tuple(data[i : i + samples] for i in range(0, len(data), samples))
            self._frames[key] = frames
        return frames


class PromptCache:
    """The shared :class:`Prompt` of each array played again and again (a system prompt, a
    cached greeting), so that its G.711 encoding is made once rather than at every play.

    Only read-only arrays that own their data are taken: their samples cannot change under the
    cached encoding. Each is held (so its ``id`` stays its own) until the least recently played
    ones go past ``max_samples`` in all; any other array gets a Prompt of its own.
    """

    def __init__(self, max_samples: int = 8_000 * 600) -> None:
        self.max_samples = max_samples
        self._prompts: OrderedDict[int, tuple[npt.NDArray[np.int16], Prompt]] = OrderedDict()
        self._samples = 0

    def __len__(self) -> int:
        return len(self._prompts)

    def get(self, audio: Prompt | npt.NDArray[np.int16]) -> Prompt:
        if isinstance(audio, Prompt):
            return audio
        if audio.flags.writeable or not audio.flags.owndata or len(audio) > self.max_samples:
            return Prompt(audio)
        key = id(audio)
        entry = self._prompts.get(key)
        if entry is not None:
            self._prompts.move_to_end(key)
            return entry[1]
        prompt = Prompt(audio)
        self._prompts[key] = (audio, prompt)
        self._samples += len(prompt)
        while self._samples > self.max_samples:
            _, (_, old) = self._prompts.popitem(last=False)
            self._samples -= len(old)
        return prompt


class AudioJob(_Job):
    """Plays a prompt, one frame of the negotiated ptime per tick.

    With ``every`` > 1 only one frame in ``every`` is sent and the others' time passes unsent
    (a keep-alive: silence that keeps a NAT binding and the far end's media timers alive at a
    fraction of the packets). Its job is due only when a frame is to be sent (`due`): the unsent
    frames between pass in one step, so the pacer wakes for it ``every`` times less; an
    interrupt is seen at its next frame sent, or at once through `finish` (`MediaSession` does).
    """

    def __init__(
        self,
        stream: RtpSendStream,
        target: SendTarget,
        audio: Prompt | npt.NDArray[np.int16],
        done: Callable[[PlayResult | BaseException], None],
        interrupted: Callable[[], bool] | None = None,
        every: int = 1,
    ) -> None:
        super().__init__(stream, target, done, interrupted)
        self._every = max(1, every)
        self._prompt = audio if isinstance(audio, Prompt) else Prompt(audio)
        self._total = len(self._prompt)
        self._codec = target.codec
        self._encoded = self._prompt.encoded(self._codec)
        self._frames: tuple[bytes, ...] | None = None
        self._ptime = 0
        self._frame_samples = 0
        self._frame_seconds = 0.0

    @property
    def is_prompt(self) -> bool:
        """Audio a caller listens to (a keep-alive's silence is not)."""
        return self._every == 1

    @property
    def due(self) -> float:
        """The next frame to send (a keep-alive's unsent frames are not waited for)."""
        every = self._every
        wait = -self.frames % every if every > 1 else 0
        if not wait:
            return self.stream.due
        count = CLOCK_RATE * self.target.ptime // 1000
        wait = min(wait, -(-(self._total - self.samples) // count))
        return self.stream.due + wait * count / CLOCK_RATE

    def _frame(self) -> bool:
        target = self.target
        if target.ptime != self._ptime or target.codec is not self._codec:
            self._configure(target.ptime, target.codec)
        count = self._frame_samples
        position = self.samples
        sent = True
        if self._every > 1 and self.frames % self._every:
            stream = self.stream
            run = min(
                self._every - self.frames % self._every,  # up to the next frame sent
                -(-(self._total - position) // count),  # or the end
                int((self._now - stream.due) / self._frame_seconds) + 1,  # of those due
            )
            stream.skip(self._frame_seconds, count, run)
            self.frames += run - 1
            position += (run - 1) * count
            sent = False
        elif target.sending:
            frames = self._frames
            if frames is not None:
                payload = frames[position // count]
            else:  # a ptime change mid-play left the position between two frames
                payload = self._encoded[position : position + count]
                if len(payload) < count:
                    payload += _SILENCE[self._codec] * (count - len(payload))
            target.transmit(self.stream.audio(target.payload_type, payload, self._frame_seconds))
        else:
            self.stream.withhold(self._frame_seconds, count)
        self.frames += 1
        position += count
        if position >= self._total:
            self.samples = self._total
            self.finish()
        else:
            self.samples = position
        return sent

    def _configure(self, ptime: int, codec: Codec) -> None:
        """At the first frame, and when a re-INVITE changed the ptime or codec mid-play."""
        self._ptime = ptime
        self._frame_samples = count = CLOCK_RATE * ptime // 1000
        self._frame_seconds = ptime / 1000
        self._codec = codec
        self._encoded = self._prompt.encoded(codec)
        aligned = self.samples % count == 0
        self._frames = self._prompt.frames(codec, count) if aligned else None


class DtmfJob(_Job):
    """One RFC 4733 event: progress packets every ptime, then three end packets."""

    def __init__(
        self,
        stream: RtpSendStream,
        target: SendTarget,
        digit: str,
        duration_ms: int,
        done: Callable[[PlayResult | BaseException], None],
    ) -> None:
        super().__init__(stream, target, done, None)
        frame_samples = CLOCK_RATE * target.ptime // 1000
        self._payloads = dtmf_payloads(digit, CLOCK_RATE * duration_ms // 1000, frame_samples)
        self._event_ts: int | None = None

    def _frame(self) -> bool:
        target = self.target
        pt = target.event_payload_type
        ptime = target.ptime
        frame_samples = CLOCK_RATE * ptime // 1000
        if self._event_ts is None:
            self._event_ts = self.stream.timestamp
        payload, _ = self._payloads[self.frames]
        if target.sending and pt is not None:
            packet = self.stream.event(
                pt, payload, self._event_ts, self.frames == 0, ptime / 1000, frame_samples
            )
            target.transmit(packet)
        else:
            self.stream.withhold(ptime / 1000, frame_samples)
        self.frames += 1
        self.samples += frame_samples
        if self.frames == len(self._payloads):
            self.finish()
        return True
