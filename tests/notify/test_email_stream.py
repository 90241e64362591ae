"""The new-message email with its WAV streamed from storage: the same bytes on the wire as the
email built in memory, received whole by aiosmtpd, a failed read sends nothing, and no copy of
the WAV is held (peak traced memory, with the SMTP server in another process)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest

from afterbeep.audio.rendition import write_wav
from afterbeep.config import SmtpTarget
from afterbeep.notify.email import (
    SmtpSender,
    TemporaryEmailError,
    attach_base64,
    attach_stream,
    base64_wire,
    compose_new_message,
    wire_bytes,
    wire_segments,
)
from afterbeep.services.ports.storage import StorageUnavailable
from afterbeep.storage.local import LocalObjectStore
from tests.fixtures.smtp import Certificate, self_signed_certificate, smtp_server
from tests.notify.test_email import mail, note


class Chunks:
    """A `ByteStream` over bytes, `size` at a time; `fail_after` chunks, a storage error."""

    def __init__(self, data: bytes, size: int, fail_after: int | None = None) -> None:
        self._data = data
        self._size = size
        self._offset = 0
        self._fail_after = fail_after
        self.read = 0
        self.closed = False

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        if self._fail_after is not None and self.read >= self._fail_after:
            raise StorageUnavailable("the disk went away")
        if self._offset >= len(self._data):
            raise StopAsyncIteration
        chunk = self._data[self._offset : self._offset + self._size]
        self._offset += len(chunk)
        self.read += 1
        return chunk

    async def aclose(self) -> None:
        self.closed = True


def with_boundaries(msg: EmailMessage) -> EmailMessage:
    for i, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"fixed-{i}")
    return msg


async def streamed_wire(msg: EmailMessage, cte_type: str) -> bytes:
    out = b""
    for segment in wire_segments(msg, cte_type=cte_type):
        if isinstance(segment, bytes):
            out += segment
        else:
            async for chunk in base64_wire(segment.source):
                out += chunk
    return out


def voicemail(attach: str, data: bytes, chunk: int) -> EmailMessage:
    msg = note("voicemail")
    msg.add_alternative("<p>body</p>", subtype="html")
    if attach == "built":
        attach_base64(msg, data, "audio/wav", "msg_1.wav")
    else:
        attach_stream(msg, Chunks(data, chunk), "audio/wav", "msg_1.wav")
    return with_boundaries(msg)


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 4000, 200_003])
@pytest.mark.parametrize("chunk", [1, 100, 65_536])
@pytest.mark.parametrize("cte_type", ["8bit", "7bit"])
async def test_streamed_attachment_gives_the_bytes_of_the_one_built_in_memory(
    size: int, chunk: int, cte_type: str
) -> None:
    data = os.urandom(size)
    reference = wire_bytes(voicemail("built", data, chunk), cte_type=cte_type)
    assert await streamed_wire(voicemail("streamed", data, chunk), cte_type) == reference


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certificate]:
    yield self_signed_certificate(Path(tmp_path_factory.mktemp("tls")))


@pytest.mark.parametrize("tls", [False, True])
async def test_streamed_wav_is_received_whole(tls: bool, cert: Certificate) -> None:
    wav = os.urandom(300_001) + b"\r\n.\r\n"  # bytes SMTP must not take for the end of data
    source = Chunks(wav, 65_536)
    msg = compose_new_message(mail(wav=None, audio=source), "voicemail@afterbeep.test")
    with smtp_server(starttls=cert if tls else None) as server:
        url = server.url("smtp+starttls" if tls else "smtp")
        context = cert.client_context() if tls else None
        await SmtpSender(SmtpTarget(url), timeout=10, tls_context=context).send(msg)
        [received] = server.messages()
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "msg_1.wav" and attachment.get_content() == wav
    assert received.message.get_body(("plain",)) is not None
    assert source.closed


async def test_a_failed_read_sends_nothing_and_is_temporary() -> None:
    source = Chunks(os.urandom(300_000), 65_536, fail_after=2)
    msg = compose_new_message(mail(wav=None, audio=source), "voicemail@afterbeep.test")
    with smtp_server() as server:
        with pytest.raises(TemporaryEmailError, match="attachment not readable"):
            await SmtpSender(SmtpTarget(server.url()), timeout=10).send(msg)
        assert server.messages() == []
        # The server is still fine for the next email.
        await SmtpSender(SmtpTarget(server.url()), timeout=10).send(note())
        assert len(server.messages()) == 1
    assert source.closed and source.read == 2


async def test_an_unsent_email_closes_its_stream() -> None:
    source = Chunks(b"RIFF", 4)
    msg = compose_new_message(mail(wav=None, audio=source), "voicemail@afterbeep.test")
    with smtp_server() as server:
        server.collector.refuse_rcpt = "550 no such user"
        with pytest.raises(Exception, match="refused"):
            await SmtpSender(SmtpTarget(server.url()), timeout=10).send(msg)
    assert source.closed and source.read == 0


# aiosmtpd in a process of its own, so its buffers are not in this process's traced memory.
_SERVER = r"""
import sys
from pathlib import Path
from tests.fixtures.smtp import smtp_server
with smtp_server() as server:
    print(server.url(), flush=True)
    sys.stdin.read()
    received = server.messages()
    Path(sys.argv[1]).write_bytes(received[0].raw if received else b"")
"""


@contextlib.contextmanager
def smtp_in_a_process(out: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def test_a_five_minute_wav_is_sent_without_a_copy_in_memory(tmp_path: Path) -> None:
    seconds = 300
    pcm = np.random.default_rng(5).integers(-3000, 3000, seconds * 8000).astype(np.int16)
    write_wav(tmp_path / "message.wav", pcm)
    wav = (tmp_path / "message.wav").read_bytes()
    store = LocalObjectStore(tmp_path / "objects")
    await store.put_bytes("acc_1/messages/m.wav", wav, "audio/wav")
    del pcm
    out = tmp_path / "received.eml"
    with smtp_in_a_process(out) as (url, proc):
        sender = SmtpSender(SmtpTarget(url), timeout=20)
        tracemalloc.start()
        try:
            source = await store.open_range("acc_1/messages/m.wav")
            msg = compose_new_message(mail(wav=None, audio=source), "voicemail@afterbeep.test")
            await sender.send(msg)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    # A memory bound, not a time: building it in memory held the WAV, its base64 (4/3) and
    # the flattened email, several times the WAV's 4.8 MB.
    assert peak < len(wav) // 4, (peak, len(wav))
    received = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert isinstance(received, EmailMessage)
    [attachment] = list(received.iter_attachments())
    assert attachment.get_content() == wav


class StopsReadingAfterData(asyncio.Protocol):
    """Just enough SMTP to reach DATA, then no more reading: the client's writes back up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 stall.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.transport.write(b"250 stall.test\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                self.transport.write(b"250 OK\r\n")
            elif verb == b"DATA":
                self.transport.write(b"354 go on\r\n")
                self.transport.pause_reading()
                return


async def test_a_server_that_stops_reading_mid_attachment_is_a_temporary_error() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StopsReadingAfterData, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = Chunks(os.urandom(64 * 1024) * 400, 65_536)  # 26 MB: past any socket buffer
    msg = compose_new_message(mail(wav=None, audio=source), "voicemail@afterbeep.test")
    try:
        async with asyncio.timeout(60):  # a bound on the test, not the thing tested
            with pytest.raises(TemporaryEmailError):
                await SmtpSender(SmtpTarget(f"smtp://127.0.0.1:{port}"), timeout=0.5).send(msg)
    finally:
        server.close()
    assert source.closed and 0 < source.read < 400
