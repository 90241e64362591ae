"""The accept path of a send after its speed-up: a frame scan and the first second decoded, the
media row committed with the send, objects removed again when that transaction fails; and the
telephony rendition made by the delivery engine on first use (once, or the send fails)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from afterbeep.app import Runtime
from afterbeep.audio.compare import compare
from afterbeep.audio.decode import BLOCK_FRAMES, probe_and_decode
from afterbeep.audio.mp3scan import _header, scan_mp3
from afterbeep.audio.rendition import read_wav_pcm, to_telephony
from afterbeep.db import tables as t
from afterbeep.domain.media import ImportRules, Media
from afterbeep.services.media import MediaService
from afterbeep.services.ports.storage import media_telephony_key
from afterbeep.services.ringless import RinglessService
from tests.conftest import Backend, TestAccount
from tests.e2e.rig import NUMBER, api_of
from tests.ringless.support import (
    NYC_RECIPIENT,
    assert_nothing_stored,
    audio,
    count,
    make_setup,
    make_use_case,
)
from tests.ringless.test_delivery import (
    SQLITE,
    add_status_webhook,
    attempts_of,
    runtime_of,
    send_row,
    status_events,
    trunk_and_use_case,
)


class UseCaseDeletedMeanwhile(MediaService):
    """A media library during whose import the use case is deleted (by another request)."""

    def __init__(self, runtime: Runtime, use_case_id: str) -> None:
        assert runtime.store is not None
        super().__init__(
            runtime.uow, runtime.store, runtime.clock, 8 << 20, runtime.data_dir / "tmp"
        )
        self._runtime = runtime
        self._use_case_id = use_case_id

    async def prepare_file(
        self,
        account_id: str,
        path: Path,
        name: str,
        rules: ImportRules,
        *,
        defer_rendition: bool = False,
    ) -> Media:
        media = await super().prepare_file(
            account_id, path, name, rules, defer_rendition=defer_rendition
        )
        async with self._runtime.db.begin() as conn:
            await conn.execute(delete(t.use_cases).where(t.use_cases.c.id == self._use_case_id))
        return media


async def test_objects_are_removed_when_the_send_cannot_be_stored(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount, tmp_path: Path
) -> None:
    use_case = await make_use_case(client, account, await make_setup(client, account))
    path = tmp_path / "reminder.mp3"
    path.write_bytes(audio(12))
    media = UseCaseDeletedMeanwhile(runtime, use_case)
    ringless = RinglessService(runtime.uow, runtime.clock, media, "US")
    with pytest.raises(IntegrityError):
        await ringless.create_send(account.id, NYC_RECIPIENT, use_case, audio_path=path)
    await assert_nothing_stored(runtime, account.id)


async def test_accepted_send_has_its_media_row_and_original_and_renders_on_demand(
    client: httpx.AsyncClient, runtime: Runtime, account: TestAccount
) -> None:
    use_case = await make_use_case(client, account, await make_setup(client, account))
    mp3 = audio(12)
    r = await client.post(
        "/v1/voicemails",
        files={"audio": ("reminder.mp3", mp3, "audio/mpeg")},
        data={"to": NYC_RECIPIENT, "use_case_id": use_case},
        headers=account.headers,
    )
    assert r.status_code == 202, r.text
    async with runtime.db.begin() as conn:
        row = (
            await conn.execute(select(t.media).where(t.media.c.id == r.json()["media_id"]))
        ).one()
    assert row.sha256 == hashlib.sha256(mp3).hexdigest()
    assert row.size_bytes == len(mp3)
    assert row.format == "mp3"
    assert abs(row.duration_ms - 12000) <= 60
    assert runtime.store is not None
    assert not await runtime.store.exists(row.telephony_key)  # pending until first use
    r = await client.get(
        f"/v1/media/{row.id}/audio?rendition=telephony", headers=account.headers
    )
    assert r.status_code == 200, r.text
    pcm, rate = read_wav_pcm(await runtime.store.get_bytes(row.telephony_key))
    assert read_wav_pcm(r.content)[0].tobytes() == pcm.tobytes()
    assert rate == 8000
    assert abs(len(pcm) - row.duration_ms * 8) <= 8 * 60
    assert await runtime.store.get_bytes(row.original_key) == mp3
    assert await count(runtime, t.voicemail_sends, account.id) == 1


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "MP3"])
def test_decode_reads_every_frame_past_the_first_block(fmt: str) -> None:
    rate = 44100
    frames = 3 * BLOCK_FRAMES + 123
    rng = np.random.default_rng(7)
    stereo = (0.2 * rng.standard_normal((frames, 2))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, rate, format=fmt)
    data = buffer.getvalue()
    expected = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0]
    decoded = probe_and_decode(data)
    assert decoded.samples.shape == expected.shape
    assert np.array_equal(decoded.samples, expected)


# -- the rendition left pending at accept time, made by the delivery engine -----------------


def _without_info_frame(mp3: bytes) -> bytes:
    """A CBR MP3 without its Info frame: valid frame headers and a first second that decodes,
    but libsndfile stops decoding it after 1.35 s of the 12 s its frames hold."""
    info = scan_mp3(mp3)
    first = _header(mp3, info.audio_start)
    assert first is not None
    return mp3[: info.audio_start] + mp3[info.audio_start + first.length :]


async def _post_send(api: Any, use_case_id: str, mp3: bytes) -> dict[str, Any]:
    r = await api.http.post(
        "/v1/voicemails",
        files={"audio": ("reminder.mp3", mp3, "audio/mpeg")},
        data={"to": NUMBER, "use_case_id": use_case_id},
        headers=api.headers,
    )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


@SQLITE
async def test_pending_rendition_is_made_once_and_delivered_with_the_audio(
    backend: Backend,
) -> None:
    async with runtime_of(backend, None) as rt, api_of(rt) as api:
        assert rt.store is not None
        mailbox = await api.mailbox()
        use_case = await trunk_and_use_case(api, calling_window={"start": "00:00", "end": "00:00"})
        mp3 = audio(12)
        first = await _post_send(api, use_case["id"], mp3)
        row = await send_row(rt, first["id"])
        key = media_telephony_key(row.account_id, first["media_id"])
        assert not await rt.store.exists(key)
        for _ in range(3):  # four sends to one recipient: the use case's cap per period
            await api.post(
                "/v1/voicemails",
                {"to": NUMBER, "use_case_id": use_case["id"], "media_id": first["media_id"]},
                status=202,
            )

        worker = rt.delivery()
        assert await worker.run_once() == 4

        service = worker._service
        assert service.renditions.rendered == 1
        reference, rate = read_wav_pcm(await rt.store.get_bytes(key))
        expected = to_telephony(probe_and_decode(mp3))
        assert rate == 8000 and np.array_equal(reference, expected)
        messages = await api.wait_messages(mailbox["id"], 4)
        assert len(messages) == 4
        for message in messages:
            result = compare(reference, await api.audio(message["id"]))
            assert result.snr_db > 40 and result.missing_head_ms == result.missing_tail_ms == 0
        async with rt.db.begin() as conn:
            statuses = (await conn.execute(select(t.voicemail_sends.c.status))).scalars().all()
        assert sorted(statuses) == ["delivered"] * 4


@SQLITE
async def test_audio_that_stops_decoding_later_fails_the_send_with_the_reason(
    backend: Backend,
) -> None:
    async with (
        runtime_of(backend, None, webhook_allowed_hosts="127.0.0.1") as rt,
        api_of(rt) as api,
    ):
        assert rt.store is not None
        await add_status_webhook(api)
        mailbox = await api.mailbox()
        use_case = await trunk_and_use_case(api, calling_window={"start": "00:00", "end": "00:00"})
        send = await _post_send(api, use_case["id"], _without_info_frame(audio(12)))

        assert await rt.delivery().run_once() == 1

        row = await send_row(rt, send["id"])
        assert (row.status, row.failure_reason) == ("failed", "audio could not be decoded")
        (attempt,) = await attempts_of(rt, send["id"])
        assert attempt.outcome == "not_delivered"
        assert await api.messages(mailbox["id"]) == []
        events = await status_events(rt)
        assert [(e["status"], e["failure_reason"]) for e in events] == [
            ("accepted", None),
            ("failed", "audio could not be decoded"),
        ]
        assert not await rt.store.exists(media_telephony_key(row.account_id, row.media_id))
        assert await rt.delivery().run_once() == 0  # not retried
