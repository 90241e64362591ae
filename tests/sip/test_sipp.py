"""Signalling against real SIPp on 127.0.0.1: retransmissions, CANCEL, auth, OPTIONS, TCP."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from afterbeep.telephony.sip.auth import Credentials
from afterbeep.telephony.sip.ua import (
    Answered,
    Cancelled,
    Dialog,
    HangUp,
    IncomingInvite,
    UserAgent,
)

from .conftest import (
    CANNED_SDP,
    CannedUas,
    free_udp_port,
    make_config,
    received_count,
    run_sipp,
    wait_udp_bound,
)


async def _dialog_events(dialog: Dialog) -> list[str]:
    """Names of the dialog's events up to and including its HangUp."""
    names: list[str] = []
    async with asyncio.timeout(5):
        while not names or names[-1] != "HangUp":
            names.append(type(await dialog.next_event()).__name__)
    return names


async def test_invite_retransmitted_before_and_after_final_makes_one_call(
    sipp_bin: str, uas: CannedUas, tmp_path: Path
) -> None:
    uas.answer_delay = 0.3
    result = await run_sipp(
        sipp_bin,
        "uac_invite_retransmit.xml",
        tmp_path,
        remote=f"127.0.0.1:{uas.ua.udp_port}",
        extra=("-nr",),
    )
    assert result.returncode == 0, result.output
    assert len(uas.invites) == 1
    assert len(uas.dialogs) == 1
    assert len(result.to_tags()) == 1, result.to_tags()
    assert received_count(result.messages, "SIP/2.0 200", "INVITE") == 2
    assert await _dialog_events(uas.dialogs[0]) == ["DialogAck", "HangUp"]
    assert uas.ua.dialog_count == 0


async def test_bye_retransmitted_gets_the_same_200(
    sipp_bin: str, uas: CannedUas, tmp_path: Path
) -> None:
    result = await run_sipp(
        sipp_bin,
        "uac_bye_retransmit.xml",
        tmp_path,
        remote=f"127.0.0.1:{uas.ua.udp_port}",
        extra=("-nr",),
    )
    assert result.returncode == 0, result.output
    assert received_count(result.messages, "SIP/2.0 200", "BYE") == 2
    assert received_count(result.messages, "SIP/2.0 481", "BYE") == 0
    assert len(result.to_tags()) == 1
    assert not re.search(r"^To:.*tag=.*tag=", result.messages, flags=re.M)
    assert len(uas.invites) == 1


async def test_cancel_before_answer_gives_487_and_never_200(
    sipp_bin: str, uas: CannedUas, tmp_path: Path
) -> None:
    uas.answer_delay = None
    accepts_after_cancel: list[object] = []

    def on_invite(invite: IncomingInvite) -> None:
        uas.on_invite(invite)

        def on_event(event: Cancelled) -> None:
            accepts_after_cancel.append(invite.accept(CANNED_SDP))  # at once
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, lambda: accepts_after_cancel.append(invite.accept(CANNED_SDP)))

        invite.listener = on_event

    uas.ua.on_invite = on_invite
    result = await run_sipp(
        sipp_bin, "uac_cancel.xml", tmp_path, remote=f"127.0.0.1:{uas.ua.udp_port}", extra=("-nr",)
    )
    assert result.returncode == 0, result.output
    assert accepts_after_cancel == [None, None]
    assert received_count(result.messages, "SIP/2.0 487", "INVITE") == 1
    assert received_count(result.messages, "SIP/2.0 200", "CANCEL") == 1
    assert received_count(result.messages, "SIP/2.0 200", "INVITE") == 0
    assert uas.ua.dialog_count == 0


async def test_options_200_and_unknown_method_405(
    sipp_bin: str, uas: CannedUas, tmp_path: Path
) -> None:
    result = await run_sipp(
        sipp_bin, "uac_options_unknown.xml", tmp_path, remote=f"127.0.0.1:{uas.ua.udp_port}"
    )
    assert result.returncode == 0, result.output
    assert received_count(result.messages, "SIP/2.0 200", "OPTIONS") == 1
    assert received_count(result.messages, "SIP/2.0 405", "FROBNICATE") == 1
    assert re.search(r"^Allow:.*INVITE.*BYE", result.messages, flags=re.M)


async def test_call_over_tcp(sipp_bin: str, uas: CannedUas, tmp_path: Path) -> None:
    result = await run_sipp(
        sipp_bin,
        "uac_basic.xml",
        tmp_path,
        remote=f"127.0.0.1:{uas.ua.tcp_port}",
        transport="t1",
    )
    assert result.returncode == 0, result.output
    assert len(uas.invites) == 1 and uas.invites[0].transport == "TCP"
    assert len(uas.dialogs) == 1
    assert await _dialog_events(uas.dialogs[0]) == ["DialogAck", "HangUp"]
    assert uas.ua.dialog_count == 0
    assert "transport=tcp" in result.messages


async def test_outbound_call_through_401_with_retransmitted_challenge(
    sipp_bin: str, tmp_path: Path
) -> None:
    port = free_udp_port()
    async with UserAgent(make_config()) as ua:
        sipp = asyncio.ensure_future(
            run_sipp(sipp_bin, "uas_auth_401.xml", tmp_path, remote=None, local_port=port)
        )
        try:
            await wait_udp_bound(port)
            call = await ua.invite(
                f"sip:callee@127.0.0.1:{port}",
                "sip:afterbeep@127.0.0.1",
                f"sip:callee@127.0.0.1:{port}",
                CANNED_SDP,
                credentials=Credentials("vmuser", "s3cret"),
                answer_timeout=10,
            )
            async with asyncio.timeout(10):
                event = await call.next_event()
                while not isinstance(event, Answered):
                    assert not isinstance(event, HangUp), event
                    assert type(event).__name__ == "Provisional", event
                    event = await call.next_event()
            dialog = event.dialog
            await asyncio.sleep(0.3)  # the old 401's retransmission and its ACK cross here
            await dialog.bye()
            result = await sipp
        finally:
            if not sipp.done():
                sipp.cancel()
        assert result.returncode == 0, result.output
        assert result.messages.count("401 Unauthorized") >= 2
        acks = [m for m in re.findall(r"^ACK .*$", result.messages, flags=re.M)]
        assert len(acks) == 3  # 401, retransmitted 401, 200
        assert re.search(r"^Authorization: Digest .*qop=auth.*nc=00000001", result.messages, re.M)


@pytest.mark.parametrize("late", [0.0, 0.03], ids=["on-time", "loop-30ms-late"])
async def test_outbound_to_dead_port_retransmits_per_timer_a_and_fails_per_timer_b(
    late: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with every timer handled 30 ms late (a busy loop): the retransmissions keep
    their schedule instead of drifting past timer B."""
    on_timer = UserAgent._on_timer

    def late_on_timer(ua: UserAgent, entry: Any, timer: Any) -> None:
        time.sleep(late)
        on_timer(ua, entry, timer)

    monkeypatch.setattr(UserAgent, "_on_timer", late_on_timer)
    loop = asyncio.get_running_loop()
    received: list[bytes] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append(data)

    sink, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    port = sink.get_extra_info("sockname")[1]
    try:
        # T1 = 100 ms: the last retransmission (63 T1) is due 100 ms before timer B (64 T1),
        # room enough for a loaded machine's late timers to add up.
        async with UserAgent(make_config(t1=0.1)) as ua:
            call = await ua.invite(
                f"sip:nobody@127.0.0.1:{port}",
                "sip:afterbeep@127.0.0.1",
                f"sip:nobody@127.0.0.1:{port}",
                CANNED_SDP,
                answer_timeout=30,
            )
            async with asyncio.timeout(20):
                event = await call.next_event()
            assert type(event).__name__ == "Failed"
            assert getattr(event, "code", None) == 408
            assert ua.transaction_count == 0
    finally:
        sink.close()
    # sent at 0, T1, 3T1, 7T1, 15T1, 31T1, 63T1; timer B at 64*T1
    assert len(received) == 7
    branches = {re.search(rb"branch=([^;\r\n]+)", d).group(1) for d in received}  # type: ignore[union-attr]
    assert len(branches) == 1
