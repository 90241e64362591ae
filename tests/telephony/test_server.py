"""TelephonyServer: routing, overload (503 + Retry-After), phased shutdown, configuration."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from afterbeep.metrics import SIP_INVITE_TO_200
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.interface import EndedBy, Recording
from afterbeep.telephony.server import (
    Route,
    ServerLimits,
    ServerState,
    TelephonyServer,
    telephony_configs,
)
from afterbeep.telephony.sip import CallFailed, IncomingInvite, UserAgent
from tests.sip import conftest as sip_rig
from tests.sip.conftest import CANNED_SDP, free_udp_port, make_config, run_sipp

pytestmark = pytest.mark.timeout(60)

sipp_bin = sip_rig.sipp_bin


@asynccontextmanager
async def serve(
    script: Callable[[SipCall], Awaitable[None]] | None = None, **kwargs: Any
) -> AsyncIterator[TelephonyServer]:
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, 25000, 25999)
    server = TelephonyServer(ua_config, media_config, script, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(drain_timeout=2, hangup_timeout=2)


def sipp_call(sipp: str, scenario: str, tmp_path: Path, server: TelephonyServer) -> Awaitable[Any]:
    run = tmp_path / scenario.removesuffix(".xml")
    run.mkdir()
    return run_sipp(
        sipp,
        scenario,
        run,
        remote=f"127.0.0.1:{server.udp_port}",
        extra=("-mp", str(free_udp_port())),
    )


def state_of(server: TelephonyServer) -> ServerState:
    return server.state


class Answering:
    """A script that answers, says when, and waits for the far end (or the shutdown)."""

    def __init__(self, record: bool = False) -> None:
        self.answered = asyncio.Event()
        self.record = record
        self.calls: list[SipCall] = []
        self.recordings: list[Recording] = []

    async def __call__(self, call: SipCall) -> None:
        self.calls.append(call)
        await call.answer()
        self.answered.set()
        if self.record:
            sink = _NullSink()
            self.recordings.append(await call.record(sink, max_seconds=60, silence_seconds=60))
        else:
            await call.ended.wait()


class _NullSink:
    def write(self, pcm: Any) -> None:
        pass


async def test_past_max_calls_new_invites_get_503_with_retry_after(
    sipp_bin: str, tmp_path: Path
) -> None:
    script = Answering()
    async with serve(script, limits=ServerLimits(max_calls=1, retry_after=7)) as server:
        first = asyncio.ensure_future(
            sipp_call(sipp_bin, "media_uac_short_call.xml", tmp_path, server)
        )
        async with asyncio.timeout(5):
            await script.answered.wait()
        refused = await sipp_call(sipp_bin, "media_uac_expect_503.xml", tmp_path, server)
        assert refused.returncode == 0, refused.output
        assert "Retry-After: 7" in refused.messages
        done = await first
        assert done.returncode == 0, done.output
        assert server.stats.rejected_overload == 1 and server.stats.accepted == 1
        async with asyncio.timeout(5):
            await server.idle()
    assert script.calls[0].end_reason == "remote"


async def test_shutdown_refuses_new_calls_and_lets_calls_in_progress_finish(
    sipp_bin: str, tmp_path: Path
) -> None:
    script = Answering()
    async with serve(script) as server:
        first = asyncio.ensure_future(
            sipp_call(sipp_bin, "media_uac_short_call.xml", tmp_path, server)
        )
        async with asyncio.timeout(5):
            await script.answered.wait()
        stopping = asyncio.ensure_future(server.stop(drain_timeout=10, hangup_timeout=2))
        await asyncio.sleep(0)
        assert state_of(server) is ServerState.DRAINING
        refused = await sipp_call(sipp_bin, "media_uac_expect_503.xml", tmp_path, server)
        assert refused.returncode == 0, refused.output
        done = await first
        assert done.returncode == 0, done.output  # hung up by itself, nothing cut short
        async with asyncio.timeout(10):
            await stopping
        assert state_of(server) is ServerState.CLOSED
        assert server.stats.rejected_draining == 1
        assert server.stats.ended_by_shutdown == 0
    assert script.calls[0].end_reason == "remote"


async def test_shutdown_hangs_up_calls_that_outlast_the_drain_and_keeps_their_recording(
    sipp_bin: str, tmp_path: Path
) -> None:
    script = Answering(record=True)
    async with serve(script) as server:
        caller = asyncio.ensure_future(
            sipp_call(sipp_bin, "media_uac_wait_bye.xml", tmp_path, server)
        )
        async with asyncio.timeout(5):
            await script.answered.wait()
        async with asyncio.timeout(10):
            await server.stop(drain_timeout=0.3, hangup_timeout=5)
        result = await caller
        assert result.returncode == 0, result.output  # the caller got our BYE
        assert server.stats.ended_by_shutdown == 1
        assert server.stats.cancelled_by_shutdown == 0  # the script finished on its own
        assert server.media.sessions == 0
    assert [r.ended_by for r in script.recordings] == [EndedBy.HANGUP]
    assert script.calls[0].end_reason == "shutdown"


async def _invite_with(server: TelephonyServer) -> int:
    """An INVITE from a plain user agent; the final code (200 is hung up at once)."""
    client = UserAgent(make_config())
    await client.start()
    try:
        out = await client.invite(
            f"sip:2025550100@127.0.0.1:{server.udp_port}",
            "sip:+12025550123@127.0.0.1",
            "sip:2025550100@127.0.0.1",
            CANNED_SDP,
            answer_timeout=5,
        )
        try:
            dialog = await out.wait_answered()
        except CallFailed as exc:
            return exc.code
        await dialog.bye()
        return 200
    finally:
        await client.close()


async def test_without_a_handler_every_call_is_404() -> None:
    async with serve() as server:
        assert await _invite_with(server) == 404


async def test_router_decides_per_invite() -> None:
    seen: list[str | None] = []

    async def answer_and_leave(call: SipCall) -> None:
        await call.answer()

    async def router(invite: IncomingInvite) -> Route:
        seen.append(invite.request_user)
        return answer_and_leave if len(seen) == 1 else 480

    async with serve(router=router) as server:
        assert await _invite_with(server) == 200
        assert await _invite_with(server) == 480
    assert seen == ["2025550100", "2025550100"]


async def test_a_failing_script_gets_500_and_the_server_goes_on() -> None:
    async def broken(call: SipCall) -> None:
        raise RuntimeError("script bug")

    async with serve(broken) as server:
        assert await _invite_with(server) == 500
        assert server.stats.handler_errors == 1
        assert await _invite_with(server) == 500
        assert server.state is ServerState.RUNNING


def test_configs_advertise_the_listen_host_or_the_setting_never_a_wildcard() -> None:
    ua, media = telephony_configs("127.0.0.1:5070", None, 30000, 30100)
    assert ua.advertise == "127.0.0.1"
    assert ua.listen_udp == ua.listen_tcp == "127.0.0.1:5070"
    assert (media.advertised_ip, media.bind_host) == ("127.0.0.1", "127.0.0.1")
    assert (media.port_min, media.port_max) == (30000, 30100)
    ua, media = telephony_configs("0.0.0.0:5060", "192.0.2.10", 20000, 30000)
    assert ua.advertise == "192.0.2.10" and media.advertised_ip == "192.0.2.10"
    assert media.bind_host == "0.0.0.0"
    with pytest.raises(ValueError, match="AFTERBEEP_SIP_ADVERTISE"):
        telephony_configs("0.0.0.0:5060", None, 20000, 30000)
    with pytest.raises(ValueError):
        dataclasses.replace(ua, advertise="0.0.0.0")


async def test_shutdown_cancels_a_script_that_ignores_the_end_and_still_says_bye(
    sipp_bin: str, tmp_path: Path
) -> None:
    answered = asyncio.Event()

    async def stubborn(call: SipCall) -> None:
        await call.answer()
        answered.set()
        await asyncio.Event().wait()  # never looks at the call again

    async with serve(stubborn) as server:
        caller = asyncio.ensure_future(
            sipp_call(sipp_bin, "media_uac_wait_bye.xml", tmp_path, server)
        )
        async with asyncio.timeout(5):
            await answered.wait()
        async with asyncio.timeout(10):
            await server.stop(drain_timeout=0.2, hangup_timeout=0.3)
        result = await caller
        assert result.returncode == 0, result.output  # the BYE went out all the same
        assert server.stats.ended_by_shutdown == 1
        assert server.stats.cancelled_by_shutdown == 1
        assert server.active_calls == 0 and server.media.sessions == 0


def _answered_count() -> float:
    return sum(
        s.value
        for m in SIP_INVITE_TO_200.collect()
        for s in m.samples
        if s.name.endswith("_count")
    )


async def test_answered_invites_are_timed_and_refused_ones_are_not() -> None:
    async def answer_and_leave(call: SipCall) -> None:
        await call.answer()

    answer = True

    async def router(invite: IncomingInvite) -> Route:
        return answer_and_leave if answer else 480

    before = _answered_count()
    async with serve(router=router) as server:
        assert await _invite_with(server) == 200
        answer = False
        assert await _invite_with(server) == 480
    assert _answered_count() == before + 1
