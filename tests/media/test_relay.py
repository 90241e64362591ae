"""The relay's packet rewriting, without sockets or an event loop: numbering, payload types,
A-law <-> µ-law transcoding, RFC 4733 events, source changes."""

from __future__ import annotations

import numpy as np
from aiortp.dtmf import DtmfEvent

from afterbeep.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from afterbeep.audio.tones import speech_like
from afterbeep.telephony.media.relay import ALAW_TO_ULAW, ULAW_TO_ALAW, RelayRoute, RelayStream
from afterbeep.telephony.media.rtp import build_rtp, parse_rtp
from afterbeep.telephony.media.sdp import Codec
from afterbeep.telephony.media.sender import RtpSendStream
from tests.media.helpers import snr_db

OUT_SSRC = 0x0BADCAFE


def route(codec_in: Codec, codec_out: Codec, *, event_in: int = 101, event_out: int | None = 96):
    return RelayRoute(
        audio_in={codec_in.value: codec_in},
        events_in=frozenset({event_in}),
        codec_out=codec_out,
        payload_type_out=codec_out.value,
        event_payload_type_out=event_out,
    )


def stream(sequence: int = 5000, timestamp: int = 80_000) -> RtpSendStream:
    return RtpSendStream(OUT_SSRC, sequence, timestamp)


def test_same_codec_passes_the_payload_through_renumbered_on_our_stream() -> None:
    out = stream()
    relay = RelayStream(out, route(Codec.PCMU, Codec.PCMU))
    payload = bytes(range(160))
    first = parse_rtp(relay.rewrite(build_rtp(0, False, 65535, 4_000_000_000, 77, payload)) or b"")
    second = parse_rtp(relay.rewrite(build_rtp(0, False, 0, 4_000_000_160, 77, payload)) or b"")
    assert (first.ssrc, first.sequence, first.timestamp, first.marker) == (
        OUT_SSRC,
        5000,
        80_000,
        True,
    )
    assert (second.sequence, second.timestamp, second.marker) == (5001, 80_160, False)
    assert first.payload == payload and second.payload == payload
    assert relay.stats.transcoded == 0 and relay.stats.relayed == 2
    assert (out.sequence, out.timestamp, out.packets_sent) == (5002, 80_320, 2)


def test_losses_and_reordering_keep_their_place() -> None:
    relay = RelayStream(stream(), route(Codec.PCMU, Codec.PCMU))
    packets = {n: build_rtp(0, False, 100 + n, 160 * n, 9, b"\xff" * 160) for n in range(5)}
    out = [parse_rtp(relay.rewrite(packets[n]) or b"") for n in (0, 2, 1, 4)]
    assert [p.sequence - 5000 for p in out] == [0, 2, 1, 4]
    assert [(p.timestamp - 80_000) // 160 for p in out] == [0, 2, 1, 4]


def test_alaw_to_ulaw_is_one_table_and_keeps_the_signal() -> None:
    speech = speech_like(1000, seed=2)
    alaw = alaw_encode(speech)
    relay = RelayStream(stream(), route(Codec.PCMA, Codec.PCMU))
    heard = bytearray()
    for n in range(0, len(alaw), 160):
        packet = parse_rtp(
            relay.rewrite(build_rtp(8, False, n // 160, n, 3, alaw[n : n + 160])) or b""
        )
        assert packet.payload_type == 0
        heard += packet.payload
    assert bytes(heard) == ulaw_encode(alaw_decode(alaw))
    assert snr_db(speech, ulaw_decode(bytes(heard))) >= 30
    assert relay.stats.transcoded == len(alaw) // 160


def test_the_tables_agree_with_decode_then_encode() -> None:
    codes = bytes(range(256))
    assert codes.translate(ALAW_TO_ULAW) == ulaw_encode(alaw_decode(codes))
    assert codes.translate(ULAW_TO_ALAW) == alaw_encode(ulaw_decode(codes))
    # µ-law -> A-law -> µ-law: every µ-law code comes back within one quantisation step
    back = np.frombuffer(codes.translate(ULAW_TO_ALAW).translate(ALAW_TO_ULAW), np.uint8)
    original = ulaw_decode(codes).astype(np.int32)
    assert np.all(np.abs(ulaw_decode(back.tobytes()).astype(np.int32) - original) <= 1024)


def test_events_take_the_other_sides_payload_type_and_keep_one_timestamp() -> None:
    relay = RelayStream(stream(), route(Codec.PCMU, Codec.PCMA, event_in=101, event_out=96))
    relay.rewrite(build_rtp(0, False, 10, 1600, 4, b"\xff" * 160))
    payloads = [DtmfEvent(5, n >= 3, 10, 160 * (n + 1)).serialize() for n in range(6)]
    out = [
        parse_rtp(relay.rewrite(build_rtp(101, n == 0, 11 + n, 1760, 4, p)) or b"")
        for n, p in enumerate(payloads)
    ]
    assert {p.payload_type for p in out} == {96}
    assert {p.timestamp for p in out} == {80_160}
    assert [p.payload for p in out] == payloads  # events are never transcoded
    assert out[0].marker and not out[1].marker
    assert relay.stats.events == 6


def test_events_are_dropped_when_the_other_side_has_no_telephone_event() -> None:
    relay = RelayStream(stream(), route(Codec.PCMU, Codec.PCMU, event_out=None))
    assert (
        relay.rewrite(build_rtp(101, True, 1, 0, 4, DtmfEvent(1, False, 10, 160).serialize()))
        is None
    )
    assert relay.rewrite(build_rtp(13, False, 2, 0, 4, b"\x00" * 10)) is None  # comfort noise
    assert relay.stats.dropped == 2 and relay.stats.relayed == 0


def test_a_new_source_continues_our_stream_as_a_new_talkspurt() -> None:
    relay = RelayStream(stream(), route(Codec.PCMU, Codec.PCMU))
    relay.rewrite(build_rtp(0, False, 100, 0, 1, b"\xff" * 160))
    relay.rewrite(build_rtp(0, False, 101, 160, 1, b"\xff" * 160))
    moved = parse_rtp(relay.rewrite(build_rtp(0, False, 9000, 555_555, 2, b"\xff" * 160)) or b"")
    assert (moved.sequence, moved.timestamp, moved.marker, moved.ssrc) == (
        5002,
        80_320,
        True,
        OUT_SSRC,
    )


def test_a_new_negotiation_changes_the_mapping() -> None:
    relay = RelayStream(stream(), route(Codec.PCMU, Codec.PCMU))
    relay.configure(route(Codec.PCMU, Codec.PCMA))
    packet = parse_rtp(relay.rewrite(build_rtp(0, False, 1, 0, 1, b"\xff" * 160)) or b"")
    assert packet.payload_type == 8 and packet.payload == b"\xff".translate(ULAW_TO_ALAW) * 160


def test_packets_with_csrcs_or_padding_are_relayed_plain_and_garbage_is_counted() -> None:
    relay = RelayStream(stream(), route(Codec.PCMU, Codec.PCMU))
    plain = build_rtp(0, False, 1, 0, 1, b"\x7f" * 160)
    with_csrc = bytes([plain[0] | 1]) + plain[1:12] + b"\0\0\0\x01" + plain[12:] + b"\0\0\x03"
    with_csrc = bytes([with_csrc[0] | 0x20]) + with_csrc[1:]
    packet = parse_rtp(relay.rewrite(with_csrc) or b"")
    assert packet.payload == b"\x7f" * 160
    assert relay.rewrite(b"\x80\x00") is None and relay.stats.malformed == 1
