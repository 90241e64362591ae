"""The pure parts of the call layer: the interface contract, caller identity, key merging, takes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from afterbeep.audio.levels import SilenceDetector
from afterbeep.audio.tones import speech_like, tone
from afterbeep.telephony.call import (
    DigitMerger,
    RecordingTake,
    SipCall,
    caller_identity,
    display_name,
    uri_user,
)
from afterbeep.telephony.fake import FakeCall
from afterbeep.telephony.interface import Audio, Call, EndedBy
from afterbeep.telephony.media import Codec
from afterbeep.telephony.media.rtp import parse_rtp
from tests.fixtures.rtp_pcap import PcapFile, RtpStreamBuilder, pcap_of

FRAME = 160

PROTOCOL_METHODS = [
    name
    for name, member in inspect.getmembers(Call)
    if not name.startswith("_") and inspect.isfunction(member)
]
PROTOCOL_ATTRIBUTES = sorted(Call.__annotations__)


def test_the_protocol_has_what_the_scripts_use() -> None:
    assert sorted(PROTOCOL_METHODS) == [
        "answer",
        "collect_digits",
        "hangup",
        "play",
        "record",
    ]
    assert PROTOCOL_ATTRIBUTES == ["call_id", "callee", "caller", "caller_name"]


@pytest.mark.parametrize("implementation", [SipCall, FakeCall], ids=["SipCall", "FakeCall"])
@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_implementations_have_the_protocol_signatures(implementation: type, name: str) -> None:
    expected = inspect.signature(getattr(Call, name))
    actual = inspect.signature(getattr(implementation, name))
    assert actual == expected
    assert inspect.iscoroutinefunction(getattr(implementation, name))


@pytest.mark.parametrize("implementation", [SipCall, FakeCall], ids=["SipCall", "FakeCall"])
def test_implementations_have_the_protocol_attributes(implementation: type) -> None:
    annotations: dict[str, object] = {}
    for klass in reversed(implementation.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    for name in PROTOCOL_ATTRIBUTES:
        assert annotations.get(name) == Call.__annotations__[name], name


@pytest.mark.parametrize(
    ("uri", "user"),
    [
        ("sip:+12025550123@example.com", "+12025550123"),
        ("sip:+12025550123;npdi;rn=+12025559999@example.com;user=phone", "+12025550123"),
        ("sips:alice:secret@example.com:5061", "alice"),
        ("sip:%2B4930123456@example.com", "+4930123456"),
        ("tel:+4930123456;phone-context=example.com", "+4930123456"),
        ("sip:example.com", None),
        ("mailto:a@b", None),
        ("garbage", None),
    ],
)
def test_uri_user(uri: str, user: str | None) -> None:
    assert uri_user(uri) == user


def test_display_names() -> None:
    assert display_name('"Alice \\"Al\\" Smith" <sip:a@b>;tag=1') == 'Alice "Al" Smith'
    assert display_name("Bob <sip:b@c>") == "Bob"
    assert display_name("<sip:b@c>") is None
    assert display_name("sip:b@c") is None


def test_caller_prefers_p_asserted_identity_and_normalises_numbers() -> None:
    frm = '"Front Desk" <sip:2025550123@pbx.example>;tag=x'
    assert caller_identity(frm, None, "US") == ("+12025550123", "Front Desk")
    pai = '"Alice" <sip:+442079460000@carrier.example;user=phone>'
    assert caller_identity(frm, pai, "US") == ("+442079460000", "Alice")
    assert caller_identity(frm, "<tel:+442079460000>", "US") == ("+442079460000", "Front Desk")
    anonymous = '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=y'
    assert caller_identity(anonymous, None, "US") == (
        "sip:anonymous@anonymous.invalid",
        "Anonymous",
    )


def test_one_press_sent_both_ways_counts_once() -> None:
    merger = DigitMerger(window=0.5)
    assert merger.accept("5", "rfc4733", 10.0)
    assert not merger.accept("5", "info", 10.1)  # the same press, by INFO
    assert merger.accept("5", "rfc4733", 10.3)  # a second press
    assert not merger.accept("5", "info", 10.35)
    assert merger.accept("5", "info", 11.0)  # outside the window: a new press
    assert merger.accept("1", "rfc4733", 12.0)
    assert merger.accept("1", "rfc4733", 12.1)  # one source never merges with itself
    assert merger.duplicates == 2


class ListSink:
    def __init__(self) -> None:
        self.blocks: list[Audio] = []

    def write(self, pcm: Audio) -> None:
        self.blocks.append(pcm)

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self.blocks)


async def test_take_stops_exactly_at_the_maximum_length() -> None:
    sink = ListSink()
    take = RecordingTake(sink, limit=8000, silence_ms=5000, threshold=200, finish_on="#")
    speech = speech_like(3000, seed=2)
    for start in range(0, len(speech), 1600):
        take.feed(speech[start : start + 1600], 0.0)
    assert take.ended_by is EndedBy.MAX_LENGTH
    assert sink.samples == take.samples == 8000


async def test_take_stops_after_the_silence_and_keeps_it() -> None:
    sink = ListSink()
    take = RecordingTake(sink, limit=80000, silence_ms=1000, threshold=200, finish_on="#")
    audio = np.concatenate([tone(440, 1000), np.zeros(16000, np.int16)])
    take.feed(audio, 0.0)
    assert take.ended_by is EndedBy.SILENCE
    assert sink.samples == 8000 + 8000  # the sound, then exactly the silence that ended it


async def test_take_surfaces_a_failing_sink() -> None:
    class Full:
        def write(self, pcm: Audio) -> None:
            raise OSError("disk full")

    take = RecordingTake(Full(), limit=8000, silence_ms=1000, threshold=200, finish_on="#")
    take.feed(speech_like(100, seed=4), 0.0)
    assert take.ended_by is EndedBy.HANGUP
    assert isinstance(take.error, OSError)


@pytest.mark.parametrize("block", [1600, 1680, 77, 8000])
async def test_take_silence_does_not_depend_on_how_audio_is_delivered(block: int) -> None:
    audio = np.concatenate(
        [tone(440, 700), np.zeros(4000, np.int16), tone(440, 300), np.zeros(12000, np.int16)]
    )
    reference = SilenceDetector(200, 1000)
    expected = next(
        start + FRAME
        for start in range(0, len(audio), FRAME)
        if reference.feed(audio[start : start + FRAME]) >= 1000
    )
    sink = ListSink()
    take = RecordingTake(sink, limit=80000, silence_ms=1000, threshold=200, finish_on="#")
    for start in range(0, len(audio), block):
        take.feed(audio[start : start + block], 0.0)
    assert take.ended_by is EndedBy.SILENCE
    assert sink.samples == take.samples == expected


def test_pcap_round_trip_keeps_rtp_and_timing() -> None:
    builder = RtpStreamBuilder(Codec.PCMA, 30, 96, ssrc=0x1234, sequence=65534, timestamp=5)
    packets = builder.audio(speech_like(120, seed=1)).digit("7").take()
    parsed = PcapFile.parse(bytes(pcap_of(packets)))
    assert [(round(r.time, 6), r.frame.payload) for r in parsed.records] == [
        (round(t, 6), p) for t, p in packets
    ]
    rtp = [parse_rtp(r.frame.payload) for r in parsed.records]
    assert [p.payload_type for p in rtp] == [8] * 4 + [96] * 6  # 3 progress + 3 end packets
    assert [p.sequence for p in rtp[:3]] == [65534, 65535, 0]
    assert rtp[0].marker and rtp[4].marker and not rtp[5].marker
    assert {p.timestamp for p in rtp[4:]} == {5 + 4 * 240}
    assert parsed.records[0].frame.dst == ("127.0.0.1", 6000)


# --- FakeCall.collect_digits: terminators and the inter-digit timeout --------------------------


async def test_fake_inter_digit_timeout_ends_the_entry_after_a_pause() -> None:
    keys = [(100, "1"), (600, "2"), (3000, "3")]
    call = FakeCall(keys=list(keys))
    assert await call.collect_digits(10, timeout=5, terminator="", inter_digit_timeout=1) == "12"
    assert call.now_ms == 1600  # one second after the "2"
    assert await call.collect_digits(10, timeout=5, terminator="") == "3"

    without = FakeCall(keys=list(keys))
    assert await without.collect_digits(10, timeout=5, terminator="") == "123"


async def test_fake_first_key_is_awaited_the_whole_timeout() -> None:
    call = FakeCall(keys=[(4000, "7"), (4500, "8")])
    assert await call.collect_digits(10, timeout=5, terminator="", inter_digit_timeout=1) == "78"
    assert call.now_ms == 5500
    nothing = FakeCall(keys=[(6000, "7")])
    assert await nothing.collect_digits(10, timeout=5, inter_digit_timeout=1) == ""
    assert nothing.now_ms == 5000


async def test_fake_typed_ahead_keys_start_the_inter_digit_wait() -> None:
    call = FakeCall(keys=[(100, "4"), (200, "5"), (2500, "6")])
    await call.play(tone(440, 1000))  # the keys come during it: typed ahead
    assert await call.collect_digits(10, timeout=5, terminator="", inter_digit_timeout=1) == "45"
    assert call.now_ms == 2000  # the play ended at 1000 ms, then one second for the next key


async def test_fake_any_terminator_key_ends_the_entry() -> None:
    call = FakeCall(keys=[(100, "1"), (200, "*"), (300, "2"), (400, "#")])
    assert await call.collect_digits(10, timeout=5, terminator="*#") == "1"
    assert await call.collect_digits(10, timeout=5, terminator="*#") == "2"


async def test_fake_keys_typed_ahead_past_max_digits_stay_typed_ahead() -> None:
    call = FakeCall(keys=[(100, "1"), (200, "2"), (300, "3")])
    await call.play(tone(440, 500))
    assert await call.collect_digits(1, timeout=0, terminator="") == "1"
    assert await call.collect_digits(5, timeout=0, terminator="") == "23"
