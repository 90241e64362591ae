"""A SIP deposit sent again under the same send name never mixes two calls in one recording.

Two afterbeep runtimes on 127.0.0.1: A dials B's deposit receiver with the deposit marker and
a send name, as the delivery engine does. A sender that restarts (or gives up on a call) sends
the deposit again while B still holds the first call (B only notices a dead peer at its RTP
timeout); a sender that never saw the end of a whole deposit sends it again while B's copy
still waits in the spool.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from afterbeep.audio.compare import compare
from afterbeep.domain.ids import new_id
from afterbeep.telephony.call import SipCall
from afterbeep.telephony.deposit_receiver import DepositReceiver, parse_peers
from afterbeep.telephony.interface import Audio
from afterbeep.telephony.server import Route, TelephonyServer
from afterbeep.telephony.sip import IncomingInvite
from afterbeep.telephony.spool import Spool, SpoolEntry
from tests.conftest import Backend
from tests.e2e.rig import NUMBER, WAIT, api_of, sent, settle, speech
from tests.ringless.support import SENDER
from tests.ringless.test_delivery import SQLITE, runtime_of


def receiver_side(backend: Backend, tmp_path: Path) -> Backend:
    """B's backend: the same database kind, its own data directory."""
    return Backend(backend.name, {**backend.env, "data_dir": tmp_path / "var-b"})


async def deposit(a: TelephonyServer, uri: str, send_id: str, audio: Audio) -> SipCall:
    """Dial B as the delivery engine does, and play `audio` (the call stays up)."""
    headers = [("X-Afterbeep-Deposit", "1"), ("X-Afterbeep-Send", send_id)]
    call = await (await a.dial(uri, f"sip:{SENDER}@127.0.0.1", headers=headers)).wait_answered()
    await call.play(audio)
    return call


class Held:
    """A spool handoff that keeps what it is given (nothing is stored meanwhile)."""

    def __init__(self) -> None:
        self.entries: list[SpoolEntry] = []

    def submit(self, entry: SpoolEntry) -> None:
        self.entries.append(entry)


async def not_a_deposit(invite: IncomingInvite) -> Route:
    return 404


@SQLITE
async def test_a_deposit_sent_again_while_the_first_call_is_live_ends_that_call(
    backend: Backend, tmp_path: Path
) -> None:
    first_audio, second_audio = speech(2.0, seed=31), speech(6.0, seed=32)
    send_id = new_id("vmsend")
    async with (
        runtime_of(receiver_side(backend, tmp_path), None, workers=True, deposit_peers="127.0.0.1")
        as rt_b,
        api_of(rt_b, "Receiver") as api_b,
    ):
        assert rt_b.telephony is not None and rt_b.deposit_receiver is not None
        mailbox = await api_b.mailbox()
        uri = f"sip:{NUMBER}@127.0.0.1:{rt_b.telephony.udp_port}"
        async with runtime_of(backend, None, sip=True) as rt_a:
            assert rt_a.telephony is not None
            a = rt_a.telephony
            async with asyncio.timeout(WAIT):
                # 2 s of audio, then nothing more and no BYE: a sender that died
                first = await deposit(a, uri, send_id, first_audio)
                second_call = asyncio.create_task(deposit(a, uri, send_id, second_audio))
                await first.ended.wait()
                assert first.end_reason == "remote"  # B hung up the call it gave up on
                second = await second_call
                await asyncio.sleep(0.3)
                await second.hangup()
        await settle(rt_b)
        messages = await api_b.wait_messages(mailbox["id"], 1)
        assert len(messages) == 1
        assert messages[0]["call_id"] == f"rvm_{send_id}"
        result = compare(sent(second_audio), await api_b.audio(messages[0]["id"]))
        assert result.snr_db > 30, result  # the second call's audio alone, nothing of the first
        assert result.missing_head_ms < 100 and result.missing_tail_ms < 100, result
        assert rt_b.deposit_receiver.received == 1


@SQLITE
async def test_a_repeat_of_a_deposit_still_in_the_spool_leaves_that_entry_whole(
    backend: Backend, tmp_path: Path
) -> None:
    first_audio, second_audio = speech(3.0, seed=33), speech(4.0, seed=34)
    send_id = new_id("vmsend")
    async with runtime_of(receiver_side(backend, tmp_path), None) as rt_b, api_of(rt_b, "Receiver") as api_b:
        assert rt_b.spool is not None and rt_b.spool_worker is not None
        mailbox = await api_b.mailbox()
        held = Held()
        receiver = DepositReceiver(
            not_a_deposit, rt_b.call_router(), rt_b.spool, held, rt_b.clock, parse_peers("127.0.0.1")
        )
        b = await rt_b.start_telephony(router=receiver.route)
        uri = f"sip:{NUMBER}@127.0.0.1:{b.udp_port}"
        async with runtime_of(backend, None, sip=True) as rt_a:
            assert rt_a.telephony is not None
            a = rt_a.telephony
            async with asyncio.timeout(WAIT):
                for audio in (first_audio, second_audio):
                    call = await deposit(a, uri, send_id, audio)
                    await asyncio.sleep(0.3)
                    await call.hangup()
                    await call.ended.wait()
                await b.idle()
        assert (receiver.received, receiver.repeats) == (1, 1)
        (entry,) = held.entries
        assert [e.meta.call_id for e in rt_b.spool.entries()] == [f"rvm_{send_id}"]
        result = compare(sent(first_audio), Spool.read_pcm(entry))
        assert result.snr_db > 30, result
        assert result.missing_head_ms < 100 and result.missing_tail_ms < 100, result

        rt_b.spool_worker.submit(entry)
        await rt_b.spool_worker.wait_idle()
        (message,) = await api_b.messages(mailbox["id"])
        assert compare(sent(first_audio), await api_b.audio(message["id"])).snr_db > 30
        assert rt_b.spool.entries() == []
