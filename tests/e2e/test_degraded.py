"""Deposits when things go wrong: the SMTP server is down (the message is stored at once, the
email goes out once the server is back), and overload (extra INVITEs get 503 with Retry-After,
every answered call keeps its message)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.notify.email import EmailDispatcher, SmtpSender
from afterbeep.services.deposits import DepositService
from afterbeep.telephony.spool_worker import SpoolWorker
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    GREETING_S,
    OWNER,
    WAIT,
    api_of,
    caller_pcap,
    deposit_runtime,
    free_tcp_port,
    sent,
    settle,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.fixtures.smtp import smtp_server
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

pytestmark = pytest.mark.timeout(90)

AFTER_BEEP_MS = int((GREETING_S + BEEP_S) * 1000) + 600


def sqlite(tmp_path: Path) -> Backend:
    # No transcription: its worker would run a speech model over every message left here (CPU
    # the other tests wait for); its own tests are tests/e2e/test_transcripts.py and
    # tests/services/test_transcripts.py.
    return Backend(
        "sqlite-local",
        {"data_dir": tmp_path / "var", "secret_key": "e2e-" + "k" * 40, "transcribe": False},
    )


async def start_with_fast_email_retry(rt: Runtime) -> None:
    """`Runtime.start()` with the email dispatcher retrying after 0.5 s, 1 s, 2 s ... (30 s base
    in production, not a setting)."""
    assert rt.store is not None and rt.spool is not None and rt.dispatcher is not None
    s = rt.settings
    email = EmailDispatcher(
        rt.uow,
        rt.store,
        rt.clock,
        SmtpSender(s.smtp()),
        from_addr=s.smtp_from,
        public_url=s.resolved_public_url(),
        secret_key=s.resolved_secret_key(),
        retry_base_seconds=0.5,
        idle_seconds=1.0,
    )
    rt.email_dispatcher = email
    rt.deposits = DepositService(
        rt.uow,
        rt.store,
        rt.clock,
        public_url=s.resolved_public_url(),
        secret_key=s.resolved_secret_key(),
        tmp_dir=rt.data_dir / "tmp",
        on_email_queued=email.notify,
    )
    rt.spool_worker = SpoolWorker(rt.spool, rt.deposits, rt.clock)
    await rt.dispatcher.start()
    await email.start()
    await rt.spool_worker.recover()
    await rt.start_telephony()


async def test_smtp_down_message_stored_at_once_email_sent_when_back(
    sipp_bin: str, tmp_path: Path
) -> None:
    port = free_tcp_port()  # nothing listens here until the server is started below
    words = speech(3.0, seed=41)
    caller_pcap(tmp_path, silence(AFTER_BEEP_MS), words)
    async with (
        deposit_runtime(sqlite(tmp_path), f"smtp://127.0.0.1:{port}", workers=False) as rt,
        api_of(rt) as api,
    ):
        await start_with_fast_email_retry(rt)
        mailbox = await api.mailbox(skip_instructions=True)
        run = await sipp_calls(
            sipp_bin, "deposit_uac.xml", tmp_path, sip_port(rt), hold_ms=AFTER_BEEP_MS + 3300
        )
        assert run.returncode == 0, run.output
        [message] = await api.wait_messages(mailbox["id"], 1)
        assert compare(sent(words), await api.audio(message["id"])).snr_db >= 30
        async with asyncio.timeout(WAIT):  # the email is queued and gets tried (and fails)
            while True:
                log = await api.http.get("/v1/notifications", headers=api.headers)
                [pending] = log.json()["items"]
                assert pending["status"] == "pending", pending
                if pending["attempts"] >= 1:
                    break
                await asyncio.sleep(0.1)
        with smtp_server(port=port) as smtp:
            [mail] = await smtp.collector.wait_for(1, timeout=WAIT)
        assert mail.rcpt_tos == [OWNER]
        assert len(list(mail.message.iter_attachments())) == 1


async def test_overload_refuses_with_503_and_keeps_every_answered_message(
    sipp_bin: str, tmp_path: Path
) -> None:
    words = speech(3.0, seed=42)
    caller_pcap(tmp_path, silence(AFTER_BEEP_MS), words)
    async with (
        deposit_runtime(sqlite(tmp_path), max_calls=5) as rt,
        api_of(rt) as api,
    ):
        mailbox = await api.mailbox(skip_instructions=True)
        run = await sipp_calls(
            sipp_bin,
            "deposit_uac.xml",
            tmp_path,
            sip_port(rt),
            calls=10,
            hold_ms=AFTER_BEEP_MS + 3300,
        )
        assert run.returncode == 0, run.output  # every 503 carried a Retry-After
        assert run.received("SIP/2.0 503") == 5
        assert run.received("SIP/2.0 200") >= 5
        assert rt.telephony is not None and rt.telephony.stats.rejected_overload == 5
        await settle(rt)
        messages = await api.wait_messages(mailbox["id"], 5)
        assert len(messages) == 5
        for message in messages:
            result = compare(sent(words), await api.audio(message["id"]))
            assert result.snr_db >= 30 and result.missing_head_ms == 0
