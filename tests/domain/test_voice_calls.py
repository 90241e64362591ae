"""Voice calls and call centers without I/O: the update rules (an update not saying
`isActiveCall: true` completes the conversation), times in ISO 8601 or epoch ms, transcript
entries inside the call, and the routing configuration's look-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from afterbeep.domain.call_centers import CallCenter, Flow, Route, check_routes
from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.voice_calls import (
    CallOrigin,
    InitiationMethod,
    VoiceCall,
    apply_update,
    check_call_attributes,
    epoch_ms,
    parse_messages,
    parse_time_ms,
    parse_update,
)

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = START + timedelta(minutes=3)


def call(**changes: object) -> VoiceCall:
    base = VoiceCall(
        id="vc_01jg8asp59ps9rtt7azhrhvcre",
        account_id="acc_x",
        call_center_id="cc_x",
        vendor_call_key="k",
        to_number="+14155550100",
        from_number="+14155550123",
        initiation_method=InitiationMethod.INBOUND,
        start_time=START,
        created_at=START,
        updated_at=START,
    )
    return VoiceCall(**{**{f: getattr(base, f) for f in VoiceCall.__dataclass_fields__}, **changes})  # type: ignore[arg-type]


def test_an_update_without_is_active_call_true_completes_the_conversation() -> None:
    kept = apply_update(
        call(), parse_update({"isActiveCall": True, "callOrigin": "voicemail"}), NOW
    )
    assert (
        kept.is_active_call and kept.call_origin is CallOrigin.VOICEMAIL and kept.end_time is None
    )
    assert kept.duration is None
    final = apply_update(
        kept, parse_update({"recordingLocation": "s3://b/k", "totalRecordingDuration": 12}), NOW
    )
    assert not final.is_active_call and final.end_time == NOW and final.duration == 180.0
    assert final.call_origin is CallOrigin.VOICEMAIL and final.total_recording_duration == 12.0
    ended = apply_update(
        kept, parse_update({"isActiveCall": False, "endTime": epoch_ms(START) + 2500}), NOW
    )
    assert ended.duration == 2.5
    # an end before the start is refused; an explicit null clears a field
    with pytest.raises(InvalidInput, match="endTime"):
        apply_update(kept, parse_update({"endTime": "2026-03-01T11:00:00Z"}), NOW)
    cleared = apply_update(
        final, parse_update({"isActiveCall": True, "recordingLocation": None}), NOW
    )
    assert cleared.recording_location is None and cleared.is_active_call


def test_update_fields_and_their_errors() -> None:
    update = parse_update(
        {
            "isActiveCall": "true",
            "disconnectReason": {"value": "CALLBACK", "isError": False},
            "numberOfHolds": 2,
            "totalHoldDuration": 30,
            "acceptTime": "2026-03-01T12:01:00+01:00",
            "unknownVendorField": "ignored",
        }
    )
    updated = apply_update(call(), update, NOW)
    assert updated.is_active_call and updated.disconnect_reason == "CALLBACK"
    assert updated.disconnect_is_error is False and updated.number_of_holds == 2
    assert updated.accept_time == datetime(2026, 3, 1, 11, 1, tzinfo=UTC)
    for body, field in [
        ({"isActiveCall": "maybe"}, "isActiveCall"),
        ({"startTime": None}, "startTime"),
        ({"totalRecordingDuration": -1}, "totalRecordingDuration"),
        ({"numberOfHolds": 1.5}, "numberOfHolds"),
        ({"callOrigin": "Fax"}, "callOrigin"),
        ({"callAttributes": "[1]"}, "callAttributes"),
        ({"disconnectReason": {"value": "x", "isError": "no"}}, "disconnectReason.isError"),
    ]:
        with pytest.raises(InvalidInput) as err:
            parse_update(body)
        assert err.value.field == field, body


def test_times_are_iso_or_epoch_milliseconds() -> None:
    ms = epoch_ms(START)
    assert parse_time_ms("2026-03-01T12:00:00Z", "t") == ms
    assert parse_time_ms("2026-03-01T12:00:00", "t") == ms  # no zone: UTC
    assert parse_time_ms("2026-03-01T13:00:00+01:00", "t") == ms
    assert parse_time_ms(ms, "t") == ms and parse_time_ms(str(ms), "t") == ms
    assert parse_time_ms(ms // 1000, "t") == ms  # epoch seconds (the demo connector)
    assert parse_time_ms(ms / 1000 + 0.25, "t") == ms + 250
    for bad in ("soon", True, None, 12, -5, float("nan"), 10**20, "0001-01-01T00:00:00Z", [1]):
        with pytest.raises(InvalidInput):
            parse_time_ms(bad, "t")


def test_call_attributes_are_a_string_holding_a_json_object() -> None:
    assert check_call_attributes('{"a": [1, 2]}') == '{"a": [1, 2]}'
    for bad in ("{", "[]", "1", {"a": 1}, "[" * 100_000):
        with pytest.raises(InvalidInput, match="callAttributes"):
            check_call_attributes(bad)


def test_transcript_entries_inside_the_call() -> None:
    ms = epoch_ms(START)
    entry = {"participantId": "p", "messageId": "m", "startTime": ms + 1000, "endTime": ms + 2000,
             "content": "hi", "senderType": "end_user"}  # fmt: skip
    [message] = parse_messages(call(), [entry])
    assert (message.start_ms, message.end_ms, message.sender_type.value) == (
        ms + 1000,
        ms + 2000,
        "END_USER",
    )
    ended = call(end_time=START + timedelta(seconds=10))
    with pytest.raises(InvalidInput, match=r"messages\[0\].startTime"):
        parse_messages(ended, [{**entry, "startTime": ms + 60_000, "endTime": ms + 61_000}])
    with pytest.raises(InvalidInput, match=r"messages\[0\].startTime"):
        parse_messages(call(), [{**entry, "startTime": ms - 60_000}])
    with pytest.raises(InvalidInput, match=r"messages\[1\].messageId"):
        parse_messages(call(), [entry, entry])
    with pytest.raises(InvalidInput, match="messages"):
        parse_messages(call(), [])


def test_routes_and_flows_of_a_call_center() -> None:
    routes = check_routes([Route("(415) 555-0100", "q_01jg8asp59ps9rtt7azhrhvcre", None)])
    assert routes[0].dialed_number == "+14155550100"
    center = CallCenter(
        "cc_x", "acc_x", "C", "o", "pem", START, START, routes,
        (Flow("F", None, "q_01jg8asp59ps9rtt7azhrhvcrf"),),
    )  # fmt: skip
    for dialed in ("+14155550100", "4155550100", "1 (415) 555-0100", "14155550100"):
        assert center.route_for(dialed) == routes[0], dialed
    assert center.route_for("999999999") is None
    assert routes[0].queue_for(voicemail=True) is None
    flow = center.flow_named("F")
    assert flow is not None and flow.queue_for(voicemail=True) == "q_01jg8asp59ps9rtt7azhrhvcrf"
    assert center.flow_named("G") is None
