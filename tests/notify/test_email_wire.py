"""The new-message email as it goes on the wire (headers encoded and folded once, the parts
written directly): parsed back by the standard library (`email.message_from_bytes`), it reads
as composed, with non-ASCII and hostile caller names, long subjects, both transfer types, the
WAV in memory or streamed; and an aiosmtpd server gets the same."""

from __future__ import annotations

import email
import email.policy
import os
import re
from email.message import EmailMessage

import pytest

from afterbeep.config import SmtpTarget
from afterbeep.notify.email import SmtpSender, compose_new_message, wire_bytes
from tests.fixtures.smtp import smtp_server
from tests.notify.test_email import mail
from tests.notify.test_email_stream import Chunks, streamed_wire

NAMES = [
    "Zoë Ångström-Müller",
    "François Dupont de la Tour d'Auvergne, cabinet médical du quartier Saint-Germain-des-Prés",
    "Hospital reception desk for the east wing of the building, second floor, room 2043 area",
    "山田太郎",
    "Evil\r\nBcc: victim@example.com",
    "x" * 120,
    "  spaced   out  ",
]


def parsed(wire: bytes) -> EmailMessage:
    message = email.message_from_bytes(wire, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def header_lines(wire: bytes) -> list[bytes]:
    return wire.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cte_type", ["8bit", "7bit"])
@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
async def test_the_email_parses_back_to_what_was_composed(
    name: str, cte_type: str, streamed: bool
) -> None:
    wav = os.urandom(20_003)
    audio = Chunks(wav, 4096) if streamed else None
    composed = compose_new_message(
        mail(caller_name=name, wav=None if streamed else wav, audio=audio,
             mailbox_name="Réception, Évry", transcript="Bonjour, c'est Zoë. À demain !"),
        "Afterbeep <voicemail@afterbeep.test>",
    )  # fmt: skip
    if streamed:
        wire = await streamed_wire(composed, cte_type)
    else:
        wire = wire_bytes(composed, cte_type=cte_type)
    assert wire.isascii()  # no 8bit part even where the server would take one
    assert all(len(line) <= 78 for line in header_lines(wire))
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    assert not re.search(rb"(?<!\r)\n|\r(?!\n)", wire)  # CRLF only

    message = parsed(wire)
    clean = re.sub(r"[\r\n]+", " ", name)
    assert message["Subject"] == f"New voicemail from {clean} (+12025550123) (1:23)"
    assert message["From"].addresses[0].addr_spec == "voicemail@afterbeep.test"
    assert message["From"].addresses[0].display_name == "Afterbeep"
    assert message["To"] == "owner@clinic.example" and message["Bcc"] is None
    assert message["X-Afterbeep-Message"] == "msg_1"
    assert message["Message-ID"].startswith("<") and message["Date"].datetime is not None
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/mixed"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    body, said = text.get_content().replace("\r\n", "\n"), name.replace("\r\n", "\n")
    assert f"From: {said} (+12025550123)" in body  # in the body, a line break is harmless
    assert "Bonjour, c'est Zoë. À demain !" in body
    assert "Réception, Évry" in html.get_content()
    [attachment] = message.iter_attachments()
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_filename() == "msg_1.wav"
    assert attachment.get_content() == wav


def test_without_the_wav_the_email_is_the_two_texts() -> None:
    composed = compose_new_message(mail(wav=None), "voicemail@afterbeep.test")
    message = parsed(wire_bytes(composed))
    assert message.get_content_type() == "multipart/alternative"
    assert list(message.iter_attachments()) == []
    text = message.get_body(("plain",))
    assert text is not None and "Listen: http://afterbeep.test/" in text.get_content()


def test_the_composed_message_reads_as_the_stdlib_would_build_it() -> None:
    """Before it is sent: the object's own view (headers, parts) is the decoded one."""
    name = "Zoë Ångström-Müller"
    composed = compose_new_message(mail(caller_name=name), "voicemail@afterbeep.test")
    assert composed["Subject"] == f"New voicemail from {name} (+12025550123) (1:23)"
    [attachment] = composed.iter_attachments()
    assert attachment.get_content() == b"RIFF....WAVE"
    assert composed.get_body(("plain",)) is not None


async def test_an_smtp_server_receives_the_email_as_composed() -> None:
    name = "François Dupont de la Tour d'Auvergne, cabinet médical du quartier"
    wav = os.urandom(30_000)
    composed = compose_new_message(
        mail(caller_name=name, wav=None, audio=Chunks(wav, 8192)), "voicemail@afterbeep.test"
    )
    with smtp_server() as server:
        await SmtpSender(SmtpTarget(server.url()), timeout=10).send(composed)
        [received] = server.messages()
    assert received.message["Subject"] == f"New voicemail from {name} (+12025550123) (1:23)"
    [attachment] = received.message.iter_attachments()
    assert attachment.get_content() == wav
