"""Answering in the INVITE's own callback: the pool of pre-bound RTP pairs and the quick router.

The pool is bounded, topped up after each pair taken, never hands a closed session's pair out
again, and is closed with the engine. A quick `Answer` route sends the 200 before the script
runs; everything RFC 3261 asks of the answer (the same 200 for a retransmitted INVITE, 488,
a late offer answered in the ACK) holds on that path too, and a pool that ran dry or a quick
router that does not know falls back to the ordinary path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import CallEnded
from afterbeep.telephony.media import Codec, MediaSession
from afterbeep.telephony.server import (
    Answer,
    QuickRouter,
    Route,
    TelephonyServer,
    telephony_configs,
)
from afterbeep.telephony.sip import IncomingInvite
from tests.media.helpers import engine
from tests.sip import conftest as sip_rig
from tests.sip.conftest import free_udp_port, received_count, run_sipp

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(60)

POOL_RANGE = (31100, 31107)  # four even/odd pairs


async def eventually(check: Callable[[], bool]) -> None:
    """Until ``check()`` (the engine's own top-up task runs meanwhile), for at most 5 s."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_the_pool_is_bounded_topped_up_and_closed() -> None:
    eng = engine(port_min=POOL_RANGE[0], port_max=POOL_RANGE[1], prebound=3)
    await eng.prebind()
    assert eng.pooled == 3 and eng.ports.in_use == 3
    await eng.prebind()
    assert eng.pooled == 3  # never more than asked for

    first = eng.session_now()
    assert isinstance(first, MediaSession)
    await eventually(lambda: eng.pooled == 3)  # topped up from the fourth pair
    assert eng.ports.in_use == 4
    second = eng.session_now()
    assert second is not None and second.local_port != first.local_port
    await asyncio.sleep(0.05)
    assert eng.pooled == 2  # the range is full: nothing more to bind

    port = first.local_port
    await first.close()
    assert eng.ports.in_use == 3 and port_free(port) and port_free(port + 1)
    third = eng.session_now()  # a pooled pair; the freed one is bound afresh behind it
    assert third is not None and third.local_port != port
    await eventually(lambda: eng.pooled == 2)

    pooled = [p for p in range(POOL_RANGE[0], POOL_RANGE[1], 2) if not port_free(p)]
    await eng.close()
    assert eng.pooled == 0 and eng.ports.in_use == 0
    assert all(port_free(p) and port_free(p + 1) for p in pooled)
    assert second.state.value == third.state.value == "closed"


async def test_without_a_pool_sessions_are_bound_on_demand() -> None:
    eng = engine(port_min=POOL_RANGE[0], port_max=POOL_RANGE[1])
    await eng.prebind()
    assert eng.pooled == 0
    assert eng.session_now() is None
    session = await eng.open_session()
    assert eng.ports.in_use == 1
    await session.close()
    await eng.close()
    assert eng.prebound_misses == 0


@asynccontextmanager
async def serve(
    script: Callable[[SipCall], Awaitable[None]],
    quick: QuickRouter | None,
    prebound: int = 4,
) -> AsyncIterator[TelephonyServer]:
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, 46100, 46199)
    media_config = dataclasses.replace(media_config, prebound=prebound)

    async def router(invite: IncomingInvite) -> Route:
        return script

    server = TelephonyServer(ua_config, media_config, router=router, quick_router=quick)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(drain_timeout=2, hangup_timeout=2)
    assert server.media.pooled == 0 and server.media.ports.in_use == 0


def answer_with(script: Callable[[SipCall], Awaitable[None]]) -> QuickRouter:
    def quick(invite: IncomingInvite) -> Route:
        return Answer(script)

    return quick


async def sipp(
    sipp_bin: str, scenario: str, tmp_path: Path, server: TelephonyServer, *extra: str
) -> sip_rig.SippResult:
    run = tmp_path / scenario.removesuffix(".xml")
    run.mkdir(exist_ok=True)
    result = await run_sipp(
        sipp_bin,
        scenario,
        run,
        remote=f"127.0.0.1:{server.udp_port}",
        extra=("-mp", str(free_udp_port()), "-s", "2025550100", *extra),
    )
    assert result.returncode == 0, result.output
    return result


async def finished(server: TelephonyServer) -> None:
    async with asyncio.timeout(10):
        await server.idle()


class Script:
    def __init__(self) -> None:
        self.answered_on_entry: list[bool] = []
        self.ended: list[str | None] = []

    async def __call__(self, call: SipCall) -> None:
        self.answered_on_entry.append(call.answered)
        try:
            await call.answer()
            async with asyncio.timeout(10):
                await call.ended.wait()
        finally:
            self.ended.append(call.end_reason)


async def test_a_quick_answer_route_sends_the_200_before_the_script_runs(
    sipp_bin: str, tmp_path: Path
) -> None:
    script = Script()
    async with serve(script, answer_with(script)) as server:
        await sipp(sipp_bin, "media_uac_short_call.xml", tmp_path, server)
        await finished(server)
        assert server.media.prebound_misses == 0
    assert script.answered_on_entry == [True]
    assert script.ended == ["remote"]


async def test_with_the_pool_dry_the_answer_route_binds_in_the_task(
    sipp_bin: str, tmp_path: Path
) -> None:
    script = Script()
    async with serve(script, answer_with(script), prebound=0) as server:
        await sipp(sipp_bin, "media_uac_short_call.xml", tmp_path, server)
        await finished(server)
    assert script.answered_on_entry == [True]  # answered by the server before the script
    assert script.ended == ["remote"]


@pytest.mark.parametrize("quick_says", ["nothing", "raises"])
async def test_a_quick_router_that_does_not_know_leaves_it_to_the_router(
    sipp_bin: str, tmp_path: Path, quick_says: str
) -> None:
    script = Script()
    asked: list[str | None] = []

    def quick(invite: IncomingInvite) -> Route | None:
        asked.append(invite.request_user)
        if quick_says == "raises":
            raise RuntimeError("quick router bug")
        return None

    async with serve(script, quick) as server:
        await sipp(sipp_bin, "media_uac_short_call.xml", tmp_path, server)
        await finished(server)
    assert asked == ["2025550100"]
    assert script.answered_on_entry == [False]  # the ordinary route: the script answers
    assert script.ended == ["remote"]


async def test_an_invite_retransmitted_after_the_quick_200_gets_the_same_200(
    sipp_bin: str, tmp_path: Path
) -> None:
    script = Script()
    async with serve(script, answer_with(script)) as server:
        result = await sipp(
            sipp_bin, "uac_invite_retransmit_after_200.xml", tmp_path, server, "-nr"
        )
        await finished(server)
        assert server.stats.accepted == 1
    assert len(result.to_tags()) == 1, result.to_tags()
    assert received_count(result.messages, "SIP/2.0 200", "INVITE") == 2
    assert script.ended == ["remote"]


async def test_no_common_codec_on_the_quick_path_is_488(sipp_bin: str, tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def script(call: SipCall) -> None:
        seen.append("ran")

    def quick(invite: IncomingInvite) -> Route:
        return Answer(script)

    async with serve(script, quick) as server:
        await sipp(sipp_bin, "media_uac_no_common_codec.xml", tmp_path, server)
        await finished(server)
        assert server.media.sessions == 0
    assert seen == []  # the call ended before the script could run


async def test_a_late_offer_on_the_quick_path_is_answered_from_the_ack(
    sipp_bin: str, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def script(call: SipCall) -> None:
        try:
            await call.answer()  # the 200 (our offer) went out already: waits for the ACK
        except CallEnded:
            seen["ended"] = call.end_reason
            raise
        assert call.media is not None
        seen["negotiated"] = call.media.negotiated
        async with asyncio.timeout(10):
            await call.ended.wait()

    async with serve(script, answer_with(script)) as server:
        await sipp(sipp_bin, "media_uac_late_offer.xml", tmp_path, server)
        await finished(server)
    negotiated = seen.get("negotiated")
    assert negotiated is not None, seen
    assert negotiated.codec is Codec.PCMU and negotiated.remote_port > 0
