"""The shared pacer's serving step with time passed in: catch-up in the order frames fell due,
no drift from late wake-ups, the first frame of each job seen once (prompt lateness)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

from afterbeep.telephony.media import MediaSession
from afterbeep.telephony.media.pacer import PacedJob, Pacer
from afterbeep.telephony.media.sdp import Codec
from afterbeep.telephony.media.sender import (
    FOLLOW_WINDOW,
    AudioJob,
    PlayResult,
    Prompt,
    RtpSendStream,
)
from tests.media.helpers import engine
from tests.media.test_pacing import answer_to, listener

FRAME = 0.02


@dataclass(eq=False)
class Job:
    """Frames every 20 ms from ``due``, ``count`` of them; each frame sent is logged."""

    name: str
    due: float
    count: int
    log: list[tuple[str, float]]
    failed: list[BaseException] = field(default_factory=list)

    def tick(self, now: float) -> bool:
        while self.count and self.due <= now:
            self.log.append((self.name, self.due))
            self.due += FRAME
            self.count -= 1
        return self.count > 0

    def fail(self, exc: BaseException) -> None:
        self.failed.append(exc)


def test_a_late_wake_up_catches_up_in_the_order_frames_fell_due() -> None:
    log: list[tuple[str, float]] = []
    pacer = Pacer()
    for name, due in (("c", 1.015), ("a", 1.000), ("d", 1.030), ("b", 1.005)):
        pacer.push(Job(name, due, 3, log))
    assert pacer.serve(0.999) == 1.000 and log == []  # nothing due yet
    assert pacer.serve(1.012) == pacer.serve(1.012) == 1.015
    assert log == [("a", 1.000), ("b", 1.005)]  # each once, earliest first
    log.clear()
    # the loop was away 40 ms: every job sends the frames it has due, the job due first first
    assert pacer.serve(1.052) == pytest.approx(1.055)
    assert [name for name, _ in log] == ["c", "c", "a", "a", "b", "b", "d", "d"]
    assert pacer.max_lateness == pytest.approx(1.052 - 1.015)


def test_jobs_finish_and_discarded_ones_are_not_served() -> None:
    log: list[tuple[str, float]] = []
    pacer = Pacer()
    one, two = Job("one", 0.0, 1, log), Job("two", 0.0, 5, log)
    pacer.push(one)
    pacer.push(two)
    pacer.discard(two)
    assert pacer.serve(1.0) is None
    assert log == [("one", 0.0)] and pacer.active == 0


def test_a_broken_job_fails_alone() -> None:
    log: list[tuple[str, float]] = []

    class Broken(Job):
        def tick(self, now: float) -> bool:
            raise RuntimeError("bug")

    broken, fine = Broken("broken", 0.0, 1, log), Job("fine", 0.01, 2, log)
    pacer = Pacer()
    pacer.push(broken)
    pacer.push(fine)
    assert pacer.serve(0.02) == pytest.approx(0.03)
    assert len(broken.failed) == 1 and log == [("fine", 0.01)]
    assert pacer.serve(0.03) is None and pacer.active == 0


def test_the_first_frame_of_each_job_is_reported_once() -> None:
    seen: list[tuple[str, float]] = []

    def first(job: PacedJob, now: float) -> None:
        assert isinstance(job, Job)
        seen.append((job.name, now))

    log: list[tuple[str, float]] = []
    pacer = Pacer(on_first_frame=first)
    pacer.push(Job("a", 1.0, 3, log))
    pacer.serve(1.0)
    pacer.push(Job("b", 1.01, 3, log))
    for now in (1.02, 1.035, 1.05, 1.07):
        pacer.serve(now)
    assert seen == [("a", 1.0), ("b", 1.02)]


@dataclass
class Target:
    codec: Codec = Codec.PCMU
    payload_type: int = 0
    event_payload_type: int | None = None
    ptime: int = 20
    sending: bool = True
    now: float = 0.0
    sent: list[tuple[float, int, int]] = field(default_factory=list)  # (now, seq, ts)

    def transmit(self, packet: bytes) -> None:
        _, seq, ts = struct.unpack("!xBHI", packet[:8])
        self.sent.append((self.now, seq, ts))


def test_late_wake_ups_do_not_drift_the_schedule() -> None:
    target, results = Target(), list[PlayResult | BaseException]()
    stream = RtpSendStream(1, 0, 0)
    job = AudioJob(stream, target, np.zeros(8000, dtype=np.int16), results.append)
    job.start(10.0)
    pacer = Pacer()
    pacer.push(job)
    now = 10.0
    while pacer.active:
        target.now = now
        now = max(now + 0.013, (pacer.serve(now) or now) + 0.037)  # wake-ups up to 37 ms late
    assert len(target.sent) == 50 and results == [PlayResult(50, 8000, False)]
    assert [ts for _, _, ts in target.sent] == [160 * n for n in range(50)]
    # every frame left after its due time and within the lateness of the wake-up: no drift
    for n, (at, _, _) in enumerate(target.sent):
        assert 10.0 + n * FRAME <= at + 1e-9 < 10.0 + n * FRAME + 0.037 + 0.02 + 1e-9
    assert stream.slips == 0 and stream.due == pytest.approx(10.0 + 50 * FRAME)


def test_a_prompt_that_follows_another_is_late_from_that_ones_end() -> None:
    target, results = Target(), list[PlayResult | BaseException]()
    stream = RtpSendStream(1, 0, 0)
    first = AudioJob(stream, target, np.zeros(800, dtype=np.int16), results.append)
    first.start(5.0)
    assert first.intended == 5.0  # nothing before it: due when asked for
    first.tick(5.1)
    assert first.finished and stream.due == pytest.approx(5.1)
    beep = AudioJob(stream, target, np.zeros(800, dtype=np.int16), results.append)
    beep.start(5.17)  # the script asked for the beep 70 ms after the greeting's end
    assert beep.intended == pytest.approx(5.1)
    apart = AudioJob(stream, target, np.zeros(800, dtype=np.int16), results.append)
    later = stream.due + FOLLOW_WINDOW + 0.5
    apart.start(later)  # a play long after the last one: due when asked for
    assert apart.intended == later


async def test_the_engine_reports_each_prompts_lateness_but_not_keepalives() -> None:
    eng = engine()
    late: list[float] = []
    eng.on_prompt_late = late.append
    sock = listener()
    try:
        session: MediaSession = await eng.open_session()
        answer_to(session, sock)
        tone = Prompt(np.full(800, 1000, dtype=np.int16))
        await session.play(tone)
        await session.play(tone)
        await session.play(tone, every=5)  # a keep-alive: not a prompt
        assert len(late) == 2 and all(0.0 <= value < 10.0 for value in late)
    finally:
        sock.close()
        await eng.close()
