"""Dialog state: route sets, in-dialog requests, CSeq ordering, response building."""

from __future__ import annotations

from aiosipua.message import SipRequest, SipResponse

from afterbeep.telephony.sip.dialog import DialogState, hop_of, request_dialog_id
from afterbeep.telephony.sip.message import build_response, parse_message

INVITE = (
    b"INVITE sip:vm@10.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP p2.example:5060;branch=z9hG4bK-p2\r\n"
    b"Via: SIP/2.0/UDP caller.example:5060;branch=z9hG4bK-c\r\n"
    b"Record-Route: <sip:p2.example;lr>\r\n"
    b"Record-Route: <sip:p1.example;lr>\r\n"
    b'From: "Alice" <sip:alice@caller.example>;tag=a1\r\n'
    b"To: <sip:vm@10.0.0.1>\r\n"
    b"Call-ID: c1@caller\r\n"
    b"CSeq: 10 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.5:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _invite() -> SipRequest:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    return msg


def test_uas_dialog_routes_in_record_route_order_to_the_contact() -> None:
    state = DialogState.for_uas(_invite(), "our-tag")
    assert state.id == ("c1@caller", "our-tag", "a1")
    bye = state.create_request("BYE", via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx")
    assert bye.uri == "sip:alice@192.0.2.5:5062"
    assert bye.headers.get("route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert bye.headers.get_first("from") == "<sip:vm@10.0.0.1>;tag=our-tag"
    assert bye.headers.get_first("to") == '"Alice" <sip:alice@caller.example>;tag=a1'
    assert bye.headers.get_first("cseq") == "1 BYE"
    assert hop_of(state.next_hop_uri()).host == "p2.example"
    incoming_bye = parse_message(
        INVITE.replace(b"INVITE sip", b"BYE sip")
        .replace(b"CSeq: 10 INVITE", b"CSeq: 11 BYE")
        .replace(b"To: <sip:vm@10.0.0.1>", b"To: <sip:vm@10.0.0.1>;tag=our-tag")
    )
    assert isinstance(incoming_bye, SipRequest)
    assert request_dialog_id(incoming_bye) == state.id


def test_uac_dialog_reverses_record_route_and_strict_routing() -> None:
    invite = _invite()
    raw = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP me;branch=z9hG4bK1\r\n"
        b"Record-Route: <sip:p2.example>\r\nRecord-Route: <sip:p1.example;lr>\r\n"
        b"From: <sip:me@h>;tag=mine\r\nTo: <sip:you@h>;tag=yours\r\nCall-ID: c2\r\n"
        b"CSeq: 4 INVITE\r\nContact: <sip:you@192.0.2.9>\r\nContent-Length: 0\r\n\r\n"
    )
    resp = parse_message(raw)
    assert isinstance(resp, SipResponse)
    state = DialogState.for_uac(invite, resp)
    assert state.route_set == ["<sip:p1.example;lr>", "<sip:p2.example>"]
    assert state.local_seq == 10
    ack = state.create_request("ACK", via="v", cseq=10)
    assert ack.headers.get_first("cseq") == "10 ACK"
    assert ack.uri == "sip:you@192.0.2.9"  # first route is loose
    state.route_set = ["<sip:p2.example>", "<sip:p1.example;lr>"]
    bye = state.create_request("BYE", via="v")
    assert bye.uri == "sip:p2.example"  # strict: first route becomes the Request-URI
    assert bye.headers.get("route") == ["<sip:p1.example;lr>", "<sip:you@192.0.2.9>"]
    assert bye.headers.get_first("cseq") == "11 BYE"


def test_remote_cseq_must_not_go_backwards() -> None:
    state = DialogState.for_uas(_invite(), "t")
    raw = INVITE.replace(b"CSeq: 10 INVITE", b"CSeq: 9 BYE").replace(b"INVITE sip", b"BYE sip")
    older = parse_message(raw)
    assert isinstance(older, SipRequest)
    assert not state.accept_remote_cseq(older)
    newer = parse_message(raw.replace(b"CSeq: 9 BYE", b"CSeq: 11 BYE"))
    assert isinstance(newer, SipRequest)
    assert state.accept_remote_cseq(newer)


def test_response_copies_record_route_and_tags_once() -> None:
    invite = _invite()
    resp = build_response(invite, 180, to_tag="x", copy_record_route=True)
    assert resp.headers.get("record-route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert resp.headers.get("via") == invite.headers.get("via")
    assert resp.headers.get_first("to") == "<sip:vm@10.0.0.1>;tag=x"
    trying = build_response(invite, 100, to_tag="x")
    assert trying.headers.get_first("to") == "<sip:vm@10.0.0.1>"
    tagged = parse_message(INVITE.replace(b"To: <sip:vm@10.0.0.1>", b"To: <sip:vm@h>;tag=old"))
    assert isinstance(tagged, SipRequest)
    again = build_response(tagged, 200, to_tag="new")
    assert again.headers.get_first("to") == "<sip:vm@h>;tag=old"
