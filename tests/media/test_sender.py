"""The send side without sockets or timers: absolute schedule, numbering, talkspurts, DTMF."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

from afterbeep.telephony.media.sdp import Codec
from afterbeep.telephony.media.sender import (
    MAX_BURST,
    AudioJob,
    DtmfJob,
    PlayResult,
    Prompt,
    RtpSendStream,
)

Outcomes = list[PlayResult | BaseException]


@dataclass
class Sent:
    at: float
    marker: bool
    pt: int
    seq: int
    ts: int
    payload: bytes


@dataclass
class Target:
    codec: Codec = Codec.PCMU
    payload_type: int = 0
    event_payload_type: int | None = 101
    ptime: int = 20
    sending: bool = True
    now: float = 0.0
    sent: list[Sent] = field(default_factory=list)

    def transmit(self, packet: bytes) -> None:
        b1, seq, ts = struct.unpack("!xBHI", packet[:8])
        self.sent.append(Sent(self.now, bool(b1 & 0x80), b1 & 0x7F, seq, ts, packet[12:]))


def run(job: AudioJob | DtmfJob, target: Target, start: float, step: float = 0.01) -> float:
    """Tick the job like the pacer would, with jittery wake-ups; return the end time."""
    rng = random.Random(5)
    now = start
    job.start(now)
    while not job.finished:
        now += step * rng.uniform(0.5, 1.5)
        target.now = now
        if job.due <= now:
            job.tick(now)
    return now


def audio_job(
    stream: RtpSendStream,
    target: Target,
    seconds: float,
    results: Outcomes,
    interrupted: bool = False,
) -> AudioJob:
    pcm = np.zeros(int(8000 * seconds), dtype=np.int16)
    return AudioJob(stream, target, pcm, results.append, lambda: interrupted)


def test_sixty_seconds_without_drift() -> None:
    stream, target, results = RtpSendStream(1, 65000, 2**32 - 8000), Target(), Outcomes()
    t0 = 1000.0
    run(audio_job(stream, target, 60, results), target, t0)
    assert results == [PlayResult(3000, 480000, False)]
    assert len(target.sent) == 3000
    for n, s in enumerate(target.sent):
        due = t0 + n * 0.02
        assert due <= s.at <= due + 0.015 + 1e-9  # late by at most one wake-up, never drifting
        assert s.seq == (65000 + n) % 65536
        assert s.ts == (2**32 - 8000 + n * 160) % 2**32
        assert s.marker == (n == 0)


def test_back_to_back_plays_continue_numbering_without_marker() -> None:
    stream, target, results = RtpSendStream(1, 10, 1000), Target(), Outcomes()
    end = run(audio_job(stream, target, 0.2, results), target, 0.0)
    run(audio_job(stream, target, 0.2, results), target, end)
    seqs = [s.seq for s in target.sent]
    tss = [s.ts for s in target.sent]
    assert seqs == list(range(10, 30))
    assert tss == [1000 + 160 * i for i in range(20)]
    assert [s.marker for s in target.sent] == [True] + [False] * 19


def test_after_a_pause_timestamps_jump_by_the_pause_and_marker_is_set() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    end = run(audio_job(stream, target, 0.1, results), target, 0.0)
    run(audio_job(stream, target, 0.1, results), target, end + 1.0)
    second = target.sent[5]
    assert second.seq == 5 and second.marker
    skipped_frames = second.ts // 160 - 5
    assert 49 <= skipped_frames <= 51  # about 1 s of frames, on the 160-sample grid
    assert second.ts % 160 == 0


def test_pcma_30ms_frames() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(Codec.PCMA, 8, ptime=30), Outcomes()
    run(audio_job(stream, target, 0.3, results), target, 0.0)
    assert [len(s.payload) for s in target.sent] == [240] * 10
    assert {s.pt for s in target.sent} == {8}
    assert all(b == 0xD5 for b in target.sent[0].payload)  # A-law silence


def test_short_last_frame_is_padded_with_silence() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    job = AudioJob(stream, target, np.zeros(200, dtype=np.int16), results.append)
    run(job, target, 0.0)
    assert [len(s.payload) for s in target.sent] == [160, 160]
    assert results == [PlayResult(2, 200, False)]


def test_hold_withholds_frames_but_keeps_time() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(sending=False), Outcomes()
    run(audio_job(stream, target, 0.2, results), target, 0.0)
    assert target.sent == [] and results == [PlayResult(10, 1600, False)]
    assert stream.frames_withheld == 10
    target.sending = True
    run(audio_job(stream, target, 0.02, results), target, 0.2)
    assert target.sent[0].seq == 0 and target.sent[0].marker and target.sent[0].ts == 1600


def test_a_keepalive_sends_one_frame_in_every_and_keeps_time() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    job = AudioJob(stream, target, np.zeros(8000, dtype=np.int16), results.append, every=10)
    run(job, target, 0.0)
    assert results == [PlayResult(50, 8000, False)]  # a second of time, five packets
    assert [s.seq for s in target.sent] == [0, 1, 2, 3, 4]
    assert [s.ts for s in target.sent] == [0, 1600, 3200, 4800, 6400]
    assert all(s.marker for s in target.sent)  # each starts a talkspurt after the unsent frames
    assert stream.frames_withheld == 0  # not a hold
    run(audio_job(stream, target, 0.04, results), target, target.now)  # a prompt goes on at once
    assert [s.seq for s in target.sent[5:]] == [5, 6] and target.sent[5].ts == 8000


def test_a_keepalive_sees_an_interrupt_within_one_frame() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    stop = False
    job = AudioJob(stream, target, np.zeros(8000, dtype=np.int16), results.append, lambda: stop, every=10)
    job.start(0.0)
    job.tick(0.0)
    stop = True
    job.tick(0.021)
    assert job.finished and results == [PlayResult(1, 160, True)] and len(target.sent) == 1


def test_interrupt_stops_before_the_next_frame() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    run(audio_job(stream, target, 5, results, interrupted=True), target, 0.0)
    assert target.sent == [] and results == [PlayResult(0, 0, True)]


def test_stall_is_caught_up_in_bounded_bursts() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    job = audio_job(stream, target, 2, results)
    job.start(0.0)
    target.now = 1.0  # the loop was blocked for a second
    job.tick(1.0)
    assert len(target.sent) == MAX_BURST and stream.slips == 1
    assert job.due == 1.0  # the rest follows from now, timestamps still contiguous
    run_rest = [s.ts for s in target.sent]
    assert run_rest == [160 * i for i in range(MAX_BURST)]


def test_dtmf_event_packets_share_timestamp_then_audio_resumes() -> None:
    stream, target, results = RtpSendStream(9, 100, 8000), Target(), Outcomes()
    end = run(audio_job(stream, target, 0.04, results), target, 0.0)
    end = run(DtmfJob(stream, target, "7", 100, results.append), target, end)
    run(audio_job(stream, target, 0.04, results), target, end)
    events = [s for s in target.sent if s.pt == 101]
    assert len(events) == 4 + 3
    assert {s.ts for s in events} == {8320}
    assert [s.marker for s in events] == [True] + [False] * 6
    assert [s.payload[1] & 0x80 for s in events][-3:] == [0x80] * 3
    after = [s for s in target.sent if s.pt == 0][2]
    assert after.marker and after.ts == 8320 + 7 * 160
    assert [s.seq for s in target.sent] == list(range(100, 100 + len(target.sent)))


def test_a_prompt_is_encoded_once_per_codec_and_shared() -> None:
    prompt = Prompt(np.arange(-800, 800, dtype=np.int16))
    assert prompt.encoded(Codec.PCMU) is prompt.encoded(Codec.PCMU)
    first, second = Target(), Target()
    results = Outcomes()
    run(AudioJob(RtpSendStream(1, 0, 0), first, prompt, results.append), first, 0.0)
    run(AudioJob(RtpSendStream(2, 0, 0), second, prompt, results.append), second, 0.0)
    assert b"".join(s.payload for s in first.sent) == prompt.encoded(Codec.PCMU)
    assert [s.payload for s in first.sent] == [s.payload for s in second.sent]


def test_codec_change_mid_play_switches_encoding_at_the_same_sample() -> None:
    prompt = Prompt(np.arange(-1600, 1600, dtype=np.int16))
    target, results = Target(), Outcomes()
    stream = RtpSendStream(1, 0, 0)
    job = AudioJob(stream, target, prompt, results.append)
    job.start(0.0)
    target.now = 0.05
    job.tick(0.05)  # frames 0, 1, 2
    target.codec, target.payload_type = Codec.PCMA, 8
    run_rest = run(job, target, 0.05)
    assert run_rest > 0.05
    assert [s.pt for s in target.sent] == [0] * 3 + [8] * 17
    assert target.sent[3].payload == prompt.encoded(Codec.PCMA)[480:640]


def test_a_keepalive_is_due_only_at_its_frames_to_send() -> None:
    """The pacer wakes for a keep-alive once per frame sent, not once per frame's time."""
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    job = AudioJob(stream, target, np.zeros(8000, dtype=np.int16), results.append, every=10)
    job.start(0.0)
    ticks = 0
    now = 0.0
    while not job.finished:
        now = job.due  # a pacer that wakes exactly when the job is due
        target.now = now
        job.tick(now)
        ticks += 1
    assert ticks == 6 and results == [PlayResult(50, 8000, False)]  # five sent, then the end
    assert [s.at for s in target.sent] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [s.ts for s in target.sent] == [0, 1600, 3200, 4800, 6400]
    assert stream.due == pytest.approx(1.0) and stream.timestamp == 8000


def test_a_keepalive_woken_early_lets_pass_only_the_frames_already_due() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    job = AudioJob(stream, target, np.zeros(8000, dtype=np.int16), results.append, every=10)
    job.start(0.0)
    job.tick(0.0)  # frame 0 sent; the next one to send is frame 10, at 0.2
    assert job.due == pytest.approx(0.2)
    job.tick(0.065)  # frames 1-3 are due (not sent), the rest not yet
    assert stream.due == pytest.approx(0.08) and len(target.sent) == 1
    assert job.due == pytest.approx(0.2)
    job.tick(0.2)
    assert len(target.sent) == 2 and target.sent[1].ts == 1600 and target.sent[1].marker


def test_a_keepalive_ending_between_frames_to_send_is_due_at_its_end() -> None:
    stream, target, results = RtpSendStream(1, 0, 0), Target(), Outcomes()
    job = AudioJob(stream, target, np.zeros(800, dtype=np.int16), results.append, every=10)
    job.start(0.0)
    job.tick(0.0)
    assert job.due == pytest.approx(0.1)  # five frames in all: four left, none of them sent
    job.tick(0.1)
    assert results == [PlayResult(5, 800, False)] and len(target.sent) == 1
