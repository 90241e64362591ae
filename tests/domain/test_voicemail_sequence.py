"""The sequence's pure rules: keys, bodies, transcript plans, what a failure leads to."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from afterbeep.domain.transcripts import Segment, Transcript, TranscriptionStatus
from afterbeep.domain.voicemail_sequence import (
    STEPS,
    Delivery,
    DeliveryStatus,
    Recording,
    RetryPolicy,
    Step,
    after_failure,
    create_body,
    route_body,
    route_errors,
    transcript_plan,
    transcript_ready,
    vendor_call_key,
)

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def recording(
    status: TranscriptionStatus, transcript: Transcript | None = None, **kw: object
) -> Recording:
    values: dict[str, object] = {
        "message_id": "msg_1",
        "call_id": "call-1",
        "caller": "+12025550123",
        "callee": "+12025550100",
        "duration_ms": 4250,
        "saved_at": NOW,
        "transcription_status": status,
        "transcription_reason": None,
        "transcript": transcript,
        "recording_location": "http://afterbeep.test/v1/messages/msg_1/audio",
        **kw,
    }
    return Recording(**values)  # type: ignore[arg-type]


def test_the_vendor_call_key_is_stable_per_call_and_account() -> None:
    key = vendor_call_key("acc_a", "call-1")
    assert key == vendor_call_key("acc_a", "call-1")
    assert key != vendor_call_key("acc_b", "call-1") != vendor_call_key("acc_a", "call-2")
    assert len(key) == 36 and key.count("-") == 4


def test_steps_follow_the_seed_and_resume_at_the_first_not_done() -> None:
    assert STEPS == (Step.CREATE, Step.ACTIVATE, Step.TRANSCRIPT, Step.ROUTE, Step.CLOSE)
    base = Delivery(
        "ccr_1", "acc", "msg", "vm", "q", "k", DeliveryStatus.PENDING, NOW, NOW, NOW, NOW
    )
    assert base.next_step() is Step.CREATE
    resumed = dataclasses.replace(base, steps_done=(Step.CREATE, Step.ACTIVATE))
    assert resumed.next_step() is Step.TRANSCRIPT
    assert dataclasses.replace(base, steps_done=STEPS).next_step() is None


def test_create_body_is_the_seeds_with_call_origin_and_an_anonymous_caller() -> None:
    body = create_body(
        "MyContactCenter", "key", recording(TranscriptionStatus.SKIPPED, caller=None)
    )
    assert body["from"] == "anonymous" and body["participants"] == [
        {"participantKey": "anonymous", "type": "END_USER"}
    ]
    assert body["callOrigin"] == "Voicemail" and body["initiationMethod"] == "Inbound"
    assert body["startTime"] == "2026-12-07T05:59:55.750Z"
    assert route_body(recording(TranscriptionStatus.SKIPPED), None) == {
        "dialedNumber": "+12025550100"
    }


def test_transcript_plans() -> None:
    said = Transcript(
        "Hello there",
        "en",
        (Segment(100, 900, " Hello"), Segment(900, 900, " "), Segment(1000, 1800, "there ")),
    )
    plan = transcript_plan(recording(TranscriptionStatus.DONE, said))
    assert plan.body is not None and plan.note == "sent: 2 entries"
    start = int((NOW - timedelta(milliseconds=4250)).timestamp() * 1000)
    assert [
        (e["startTime"] - start, e["endTime"] - start, e["content"]) for e in plan.body["messages"]
    ] == [
        (100, 900, "Hello"),
        (1000, 1800, "there"),
    ]
    empty = transcript_plan(recording(TranscriptionStatus.DONE, Transcript("", "en", ())))
    assert (empty.body, empty.note) == (None, "none: nothing was said")
    long = transcript_plan(recording(TranscriptionStatus.FAILED, transcription_reason="too long"))
    assert (long.body, long.note) == (None, "none: transcription failed: too long")
    pending = recording(TranscriptionStatus.PENDING)
    assert not transcript_ready(pending, NOW, NOW + timedelta(seconds=1))
    assert transcript_ready(pending, NOW, NOW)
    assert transcript_plan(pending).note == "none: the transcript was not ready in time"


def test_routing_errors_and_failures() -> None:
    assert route_errors({"agent": None, "queue": "q"}) is None
    assert route_errors({"errors": []}) is None
    assert (
        route_errors({"errors": [{"message": "no flow"}, "and no queue"]})
        == "routing refused: no flow; and no queue"
    )
    policy = RetryPolicy(max_attempts=3, base_seconds=2, cap_seconds=5)
    first = after_failure(0, "HTTP 503", retryable=True, now=NOW, policy=policy)
    assert (first.attempts, first.retry_at) == (1, NOW + timedelta(seconds=2))
    second = after_failure(1, "HTTP 503", retryable=True, now=NOW, policy=policy)
    assert second.retry_at == NOW + timedelta(seconds=4)
    assert after_failure(2, "HTTP 503", retryable=True, now=NOW, policy=policy).retry_at is None
    assert after_failure(0, "HTTP 400", retryable=False, now=NOW, policy=policy).retry_at is None
