"""Greetings are held whole and shared by the calls that play them: each is at most
AFTERBEEP_MAX_MEDIA_SECONDS of 8 kHz 16-bit audio, and the cache of them holds at most
`GREETING_CACHE_BYTES` whatever the mailboxes greet with."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from afterbeep.audio.rendition import telephony_wav_bytes
from afterbeep.services.routing import VoicemailRoute
from afterbeep.storage.local import LocalObjectStore
from afterbeep.telephony.inbound import GREETING_CACHE_BYTES, InboundCalls

SECONDS = 600  # the default AFTERBEEP_MAX_MEDIA_SECONDS: 9.6 MB a greeting


async def test_greeting_cache_stays_under_its_byte_bound(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    unused: Any = None
    calls = InboundCalls(unused, store, unused, unused, unused, unused)
    wav = telephony_wav_bytes(np.zeros(8000 * SECONDS, np.int16))
    count = GREETING_CACHE_BYTES // len(wav) + 2
    for index in range(count):
        key = f"acc_1/media/media_{index}/telephony.wav"
        await store.put_bytes(key, wav, "audio/wav")
        route = VoicemailRoute(unused, unused, full=False, greeting_key=key)
        greeting = await calls._greeting(route)
        assert greeting is not None and greeting.nbytes == 8000 * SECONDS * 2
        cached = sum(pcm.nbytes for pcm in calls._greetings.values())
        assert cached <= GREETING_CACHE_BYTES
    assert len(calls._greetings) < count


async def test_a_greeting_longer_than_the_cache_is_not_loaded(tmp_path: Path) -> None:
    """A rendition an older version made from a 1 Hz WAV (160 MB): the system greeting plays."""
    store = LocalObjectStore(tmp_path)
    unused: Any = None
    calls = InboundCalls(unused, store, unused, unused, unused, unused)
    key = "acc_1/media/media_big/telephony.wav"
    data_bytes = GREETING_CACHE_BYTES + 16000
    with (tmp_path / "big.wav").open("wb") as out:  # a sparse file: its samples are zeros
        out.write(
            b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
            + b"data" + struct.pack("<I", data_bytes)
        )  # fmt: skip
        out.truncate(44 + data_bytes)
    await store.put_file(key, tmp_path / "big.wav", "audio/wav")
    route = VoicemailRoute(unused, unused, full=False, greeting_key=key)
    assert await calls._greeting(route) is None
    assert not calls._greetings
