"""A transcript as the Telephony API's voice call entries (seed 002: the VoiceCall carries the
recording and its transcription; entries are timed in epoch ms within the call)."""

from __future__ import annotations

from afterbeep.domain.transcripts import (
    Segment,
    SenderType,
    Transcript,
    voice_call_messages,
)

STARTED = 1_796_600_000_000  # epoch ms when the recording began


def test_each_spoken_segment_is_an_entry_of_the_end_user_timed_within_the_call() -> None:
    transcript = Transcript(
        "Hi, it's Ada. Please call me back.",
        "en",
        (
            Segment(120, 1480, " Hi, it's Ada.", 0.9),
            Segment(1480, 1480, "   ", 0.1),  # nothing said: no entry
            Segment(1600, 3240, " Please call me back.", 0.8),
        ),
        0.85,
    )
    entries = voice_call_messages(
        transcript, message_id="msg_1", participant_id="+12025550123", recording_started_ms=STARTED
    )
    assert entries == [
        {
            "participantId": "+12025550123",
            "messageId": "msg_1-1",
            "startTime": STARTED + 120,
            "endTime": STARTED + 1480,
            "content": "Hi, it's Ada.",
            "senderType": "END_USER",
        },
        {
            "participantId": "+12025550123",
            "messageId": "msg_1-3",
            "startTime": STARTED + 1600,
            "endTime": STARTED + 3240,
            "content": "Please call me back.",
            "senderType": "END_USER",
        },
    ]
    assert len({entry["messageId"] for entry in entries}) == len(entries)


def test_an_empty_transcript_has_no_entries_and_other_senders_can_be_named() -> None:
    assert voice_call_messages(
        Transcript("", "en", ()), message_id="m", participant_id="p", recording_started_ms=0
    ) == []
    [entry] = voice_call_messages(
        Transcript("ok", "en", (Segment(0, 10, "ok"),)),
        message_id="m",
        participant_id="agent",
        recording_started_ms=5,
        sender_type=SenderType.HUMAN_AGENT,
    )
    assert entry["senderType"] == "HUMAN_AGENT" and entry["startTime"] == 5
