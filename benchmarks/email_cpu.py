"""CPU of building the new-message email (issue 24 point 5), without the network.

N emails, each with a streamed WAV (`--seconds` of audio, as `EmailDispatcher` attaches it):
`compose_new_message`, the flattening the SMTP sender does (`wire_segments`), the attachment
encoded as it is streamed (`base64_wire`, into nothing). CPU is `time.process_time` over the
loop, per email, split by stage; `--profile` prints cProfile's top entries instead.

    .venv/bin/python -m benchmarks.email_cpu --emails 200
    .venv/bin/python -m benchmarks.email_cpu --emails 200 --profile

Session 17 (2026-12-07, 30 s WAV, the machine busy: load 9-11 on 2 cores, runs alternated):
3.7-5.1 ms per email before (compose 1.5-2.1, flatten 1.1-1.5, attachment 1.1-1.5), 0.9-1.3
after (compose 0.23-0.34, flatten 0.31-0.44, attachment 0.37-0.51): headers encoded and folded
once, the parts written directly, the base64 by pybase64.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from datetime import UTC, datetime

import numpy as np

from afterbeep.audio.rendition import write_wav
from afterbeep.notify.email import (
    NewMessageMail,
    StreamedAttachment,
    base64_wire,
    compose_new_message,
    wire_segments,
)

CALLERS = [
    ("+12025550123", "Zoë Ångström-Müller"),
    ("+33142685300", "François Dupont de la Tour d'Auvergne, cabinet médical"),
    ("+12025550199", None),
    (None, None),
]


class Chunks:
    """A `ByteStream` over bytes (64 kB at a time, as the stores read)."""

    def __init__(self, data: bytes, size: int = 65536) -> None:
        self._data, self._size, self._offset = data, size, 0

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        if self._offset >= len(self._data):
            raise StopAsyncIteration
        chunk = self._data[self._offset : self._offset + self._size]
        self._offset += len(chunk)
        return chunk

    async def aclose(self) -> None:
        return None


def mail(index: int, wav: bytes) -> NewMessageMail:
    caller, name = CALLERS[index % len(CALLERS)]
    return NewMessageMail(
        to_addr="owner@example.com",
        mailbox_name="Bureau des ventes, Évry",
        timezone="Europe/Paris",
        caller=caller,
        caller_name=name,
        duration_ms=30_000,
        received_at=datetime(2026, 12, 7, 19, 0, tzinfo=UTC),
        listen_url=f"https://vm.example.com/listen/msg_{index:026d}?sig=" + "a" * 64,
        wav=None,
        audio=Chunks(wav),
        message_id=f"msg_{index:026d}",
        inbox_url=f"https://vm.example.com/messages/msg_{index:026d}",
        transcript="Hello, this is a message about the order we placed last week. " * 3,
    )


async def run(emails: int, wav: bytes) -> dict[str, float]:
    stages = {"compose": 0.0, "flatten": 0.0, "attachment": 0.0}
    for index in range(emails):
        started = time.process_time()
        message = compose_new_message(mail(index, wav), "Afterbeep <vm@example.com>")
        composed = time.process_time()
        segments = wire_segments(message)
        flattened = time.process_time()
        size = 0
        for segment in segments:
            if isinstance(segment, StreamedAttachment):
                async for chunk in base64_wire(segment.source):
                    size += len(chunk)
            else:
                size += len(segment)
        done = time.process_time()
        stages["compose"] += composed - started
        stages["flatten"] += flattened - composed
        stages["attachment"] += done - flattened
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0, help="of audio in the WAV")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    pcm = rng.normal(0, 3000, int(args.seconds * 8000)).clip(-32768, 32767).astype(np.int16)
    buffer = io.BytesIO()
    write_wav(buffer, pcm)
    wav = buffer.getvalue()
    asyncio.run(run(5, wav))  # warm-up (imports, caches)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        asyncio.run(run(args.emails, wav))
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    stages = asyncio.run(run(args.emails, wav))
    total = sum(stages.values())
    per = {name: 1000 * cpu / args.emails for name, cpu in stages.items()}
    print(
        f"{args.emails} emails, {len(wav)} B WAV: {1000 * total / args.emails:.3f} ms CPU per email"
        f" (compose {per['compose']:.3f}, flatten {per['flatten']:.3f},"
        f" attachment {per['attachment']:.3f})"
    )


if __name__ == "__main__":
    main()
