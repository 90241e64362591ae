"""The media library over HTTP, on both backends: upload, renditions, Range, paging, delete, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from sqlalchemy import func, insert, select, update

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.errors import InvalidAudio, PayloadTooLarge
from afterbeep.domain.ids import new_id
from tests.conftest import Backend, make_settings, on_backends
from tests.conftest import TestAccount as AccountKey

PROBLEM = "application/problem+json"


# -- helpers ----------------------------------------------------------------------


def tones(rate: int, seconds: float, freqs: tuple[float, ...]) -> npt.NDArray[np.float32]:
    """One sine per channel, at 0.3 full scale."""
    t_axis = np.arange(int(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * f * t_axis) for f in freqs], axis=1).astype(
        np.float32
    )


def encode(
    samples: npt.NDArray[np.float32], rate: int, fmt: str, subtype: str | None = None
) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def energy_near(
    samples: npt.NDArray[np.float64], rate: int, freqs: tuple[float, ...], width: float = 15
) -> float:
    """The fraction of the signal's energy within `width` Hz of the given frequencies."""
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    bins = np.fft.rfftfreq(len(samples), 1 / rate)
    near = np.zeros_like(bins, dtype=bool)
    for f in freqs:
        near |= np.abs(bins - f) <= width
    return float(spectrum[near].sum() / spectrum.sum())


async def upload(
    client: httpx.AsyncClient,
    account: AccountKey,
    data: bytes,
    filename: str = "clip.bin",
    name: str | None = None,
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    fields = {"name": name} if name is not None else None
    return await client.post(
        "/v1/media",
        files={"file": (filename, data, content_type)},
        data=fields,
        headers=account.headers,
    )


async def media_rows(runtime: Runtime, account_id: str) -> int:
    async with runtime.db.begin() as conn:
        query = select(func.count()).select_from(t.media).where(t.media.c.account_id == account_id)
        return int((await conn.execute(query)).scalar_one())


async def assert_nothing_stored(runtime: Runtime, account_id: str) -> None:
    assert runtime.store is not None
    assert await runtime.store.list(f"{account_id}/") == []
    assert await media_rows(runtime, account_id) == 0
    assert list((runtime.data_dir / "tmp").iterdir()) == []


def assert_problem(
    response: httpx.Response, status: int, error_id: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    if error_id is not None:
        assert body["error_id"] == error_id
    return body


MP3 = encode(tones(44100, 2.0, (440, 660)), 44100, "MP3")


# -- uploads that work ------------------------------------------------------------


async def test_mp3_upload_records_fields_and_keeps_both_renditions(
    client: httpx.AsyncClient, account: AccountKey, runtime: Runtime
) -> None:
    response = await upload(client, account, MP3, "greeting.mp3", name="Front desk greeting")
    assert response.status_code == 201, response.text
    media = response.json()
    assert response.headers["location"] == f"/v1/media/{media['id']}"
    assert media["id"].startswith("media_")
    assert media["account_id"] == account.id
    assert media["name"] == "Front desk greeting"
    assert (media["format"], media["content_type"]) == ("mp3", "audio/mpeg")
    assert (media["sample_rate"], media["channels"]) == (44100, 2)
    assert abs(media["duration_ms"] - 2000) <= 60
    assert media["size_bytes"] == len(MP3)
    assert media["sha256"] == hashlib.sha256(MP3).hexdigest()
    assert media["created_at"].endswith("Z")

    fetched = await client.get(f"/v1/media/{media['id']}", headers=account.headers)
    assert fetched.status_code == 200 and fetched.json() == media

    original = await client.get(f"/v1/media/{media['id']}/audio", headers=account.headers)
    assert original.status_code == 200
    assert original.content == MP3
    assert original.headers["content-type"] == "audio/mpeg"
    assert original.headers["content-length"] == str(len(MP3))
    assert original.headers["accept-ranges"] == "bytes"

    telephony = await client.get(
        f"/v1/media/{media['id']}/audio", params={"rendition": "telephony"}, headers=account.headers
    )
    assert telephony.status_code == 200
    assert telephony.headers["content-type"] == "audio/wav"
    assert telephony.headers["content-length"] == str(len(telephony.content))
    info = sf.info(io.BytesIO(telephony.content))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 8000, 1)
    assert abs(info.frames - 16000) <= 8000 * 0.06
    pcm, _ = sf.read(io.BytesIO(telephony.content), dtype="float64")
    assert energy_near(pcm, 8000, (440, 660)) > 0.9

    assert runtime.store is not None
    assert sorted(await runtime.store.list(f"{account.id}/")) == [
        f"{account.id}/media/{media['id']}/original.mp3",
        f"{account.id}/media/{media['id']}/telephony.wav",
    ]
    assert list((runtime.data_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("fmt", "subtype", "filename", "expected"),
    [
        ("WAV", "PCM_16", "hello.wav", ("wav", "audio/wav")),
        ("FLAC", None, "hello.flac", ("flac", "audio/flac")),
    ],
)
async def test_wav_and_flac_uploads(
    client: httpx.AsyncClient,
    account: AccountKey,
    fmt: str,
    subtype: str | None,
    filename: str,
    expected: tuple[str, str],
) -> None:
    data = encode(tones(16000, 1.5, (1000,)), 16000, fmt, subtype)
    # the declared content type is wrong on purpose: only decoding counts
    response = await upload(client, account, data, filename, content_type="text/plain")
    assert response.status_code == 201, response.text
    media = response.json()
    assert (media["format"], media["content_type"]) == expected
    assert (media["sample_rate"], media["channels"], media["duration_ms"]) == (16000, 1, 1500)
    assert media["name"] == filename
    assert media["sha256"] == hashlib.sha256(data).hexdigest()

    original = await client.get(f"/v1/media/{media['id']}/audio", headers=account.headers)
    assert original.content == data and original.headers["content-type"] == expected[1]
    telephony = await client.get(
        f"/v1/media/{media['id']}/audio?rendition=telephony", headers=account.headers
    )
    pcm, rate = sf.read(io.BytesIO(telephony.content), dtype="float64")
    assert rate == 8000 and pcm.ndim == 1 and abs(len(pcm) - 12000) <= 80
    assert energy_near(pcm, 8000, (1000,)) > 0.95


async def test_streamed_upload_without_content_length(
    client: httpx.AsyncClient, account: AccountKey
) -> None:
    data = encode(tones(8000, 1.0, (500,)), 8000, "WAV", "PCM_16")
    boundary = "streamed-boundary-1234"

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nStreamed\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        for offset in range(0, len(data), 1000):
            yield data[offset : offset + 1000]
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        "/v1/media",
        content=body(),
        headers={**account.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 201, response.text
    media = response.json()
    assert media["name"] == "Streamed"
    assert media["size_bytes"] == len(data) and media["sha256"] == hashlib.sha256(data).hexdigest()


async def test_idempotent_upload_is_stored_once(
    client: httpx.AsyncClient, account: AccountKey, runtime: Runtime
) -> None:
    # the middleware fingerprints the raw body, so a retry must reuse its multipart boundary
    headers = {
        **account.headers,
        "Idempotency-Key": "upload-1",
        "Content-Type": "multipart/form-data; boundary=fixed-boundary",
    }
    files = {"file": ("a.mp3", MP3, "audio/mpeg")}
    first = await client.post("/v1/media", files=files, headers=headers)
    second = await client.post("/v1/media", files=files, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert await media_rows(runtime, account.id) == 1


async def test_the_same_audio_is_stored_once_also_when_uploaded_at_once(
    client: httpx.AsyncClient, account: AccountKey, other_account: AccountKey, runtime: Runtime
) -> None:
    wav = encode(tones(8000, 1.0, (500,)), 8000, "WAV")
    responses = await asyncio.gather(
        *(upload(client, account, wav, f"copy{index}.wav") for index in range(4))
    )
    assert {r.status_code for r in responses} <= {200, 201}, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    later = await upload(client, account, wav, "again.wav", name="another name")
    assert later.status_code == 200
    assert later.json()["id"] in ids and later.headers["location"] == f"/v1/media/{later.json()['id']}"
    assert await media_rows(runtime, account.id) == 1
    assert runtime.store is not None
    assert len(await runtime.store.list(f"{account.id}/media/")) == 2
    # another account's copy is its own
    theirs = await upload(client, other_account, wav, "theirs.wav")
    assert theirs.status_code == 201 and theirs.json()["id"] not in ids


# -- downloads with Range ---------------------------------------------------------


async def test_range_requests(client: httpx.AsyncClient, account: AccountKey) -> None:
    data = encode(tones(16000, 1.0, (700,)), 16000, "WAV", "PCM_16")
    size = len(data)
    media_id = (await upload(client, account, data, "r.wav")).json()["id"]
    url = f"/v1/media/{media_id}/audio"

    async def get(range_value: str, **extra: str) -> httpx.Response:
        return await client.get(url, headers={**account.headers, "Range": range_value, **extra})

    first = await get("bytes=0-99")
    assert first.status_code == 206
    assert first.content == data[:100]
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    assert first.headers["content-length"] == "100"
    assert first.headers["content-type"] == "audio/wav"

    suffix = await get("bytes=-50")
    assert suffix.status_code == 206 and suffix.content == data[-50:]
    assert suffix.headers["content-range"] == f"bytes {size - 50}-{size - 1}/{size}"

    open_ended = await get("bytes=1000-")
    assert open_ended.status_code == 206 and open_ended.content == data[1000:]
    assert open_ended.headers["content-range"] == f"bytes 1000-{size - 1}/{size}"

    clamped = await get(f"bytes={size - 10}-{size + 500}")
    assert clamped.status_code == 206 and clamped.content == data[-10:]

    telephony = await client.get(
        url, params={"rendition": "telephony"}, headers={**account.headers, "Range": "bytes=0-3"}
    )
    assert telephony.status_code == 206 and telephony.content == b"RIFF"

    beyond = await get(f"bytes={size}-")
    assert_problem(beyond, 416, "range-not-satisfiable")
    assert beyond.headers["content-range"] == f"bytes */{size}"

    several = await get("bytes=0-1,5-6")
    assert several.status_code == 200 and several.content == data

    stale = await get("bytes=0-99", **{"If-Range": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.content == data
    fresh = await get("bytes=0-99", **{"If-Range": first.headers["etag"]})
    assert fresh.status_code == 206 and fresh.content == data[:100]


# -- listing ----------------------------------------------------------------------


async def test_list_is_paged_newest_first(
    client: httpx.AsyncClient, account: AccountKey, other_account: AccountKey
) -> None:
    ids = []
    for index in range(3):
        clip = encode(tones(8000, 0.5, (440 + 100 * index,)), 8000, "WAV")
        response = await upload(client, account, clip, f"m{index}.wav", name=f"clip {index}")
        ids.append(response.json()["id"])

    first = await client.get("/v1/media", params={"limit": 2}, headers=account.headers)
    assert first.status_code == 200
    page = first.json()
    assert [item["id"] for item in page["items"]] == [ids[2], ids[1]]
    assert page["next_cursor"]
    second = await client.get(
        "/v1/media", params={"limit": 2, "cursor": page["next_cursor"]}, headers=account.headers
    )
    assert [item["id"] for item in second.json()["items"]] == [ids[0]]
    assert second.json()["next_cursor"] is None

    everything = (await client.get("/v1/media", headers=account.headers)).json()
    assert [item["id"] for item in everything["items"]] == ids[::-1]
    assert (await client.get("/v1/media", headers=other_account.headers)).json() == {
        "items": [],
        "next_cursor": None,
    }
    for bad in ({"limit": 0}, {"limit": 201}, {"cursor": "!!"}):
        assert_problem(await client.get("/v1/media", params=bad, headers=account.headers), 422)


# -- deleting ---------------------------------------------------------------------


async def test_delete_removes_row_and_objects(
    client: httpx.AsyncClient, account: AccountKey, runtime: Runtime
) -> None:
    media_id = (await upload(client, account, MP3, "d.mp3")).json()["id"]
    assert runtime.store is not None
    assert len(await runtime.store.list(f"{account.id}/media/{media_id}/")) == 2

    response = await client.delete(f"/v1/media/{media_id}", headers=account.headers)
    assert response.status_code == 204 and response.content == b""
    assert_problem(
        await client.get(f"/v1/media/{media_id}", headers=account.headers), 404, "not-found"
    )
    assert_problem(await client.get(f"/v1/media/{media_id}/audio", headers=account.headers), 404)
    assert_problem(await client.delete(f"/v1/media/{media_id}", headers=account.headers), 404)
    await assert_nothing_stored(runtime, account.id)


async def insert_mailbox(runtime: Runtime, account_id: str, greeting_media_id: str) -> str:
    mailbox_id = new_id("vm")
    now = datetime.now(UTC)
    async with runtime.db.begin() as conn:
        await conn.execute(
            insert(t.mailboxes).values(
                id=mailbox_id,
                account_id=account_id,
                name="Front desk",
                greeting_media_id=greeting_media_id,
                skip_instructions=False,
                quota_mb=100,
                notify_email=None,
                pin_secret_ref=None,
                language="en",
                timezone="UTC",
                max_message_seconds=180,
                min_message_seconds=2,
                silence_seconds=8,
                max_messages=100,
                attach_audio=True,
                created_at=now,
                updated_at=now,
            )
        )
    return mailbox_id


async def test_delete_refused_while_used_as_greeting(
    client: httpx.AsyncClient, account: AccountKey, runtime: Runtime
) -> None:
    media_id = (await upload(client, account, MP3, "g.mp3")).json()["id"]
    mailbox_id = await insert_mailbox(runtime, account.id, media_id)

    assert_problem(
        await client.delete(f"/v1/media/{media_id}", headers=account.headers), 409, "media-in-use"
    )
    assert (await client.get(f"/v1/media/{media_id}", headers=account.headers)).status_code == 200
    assert runtime.store is not None
    assert len(await runtime.store.list(f"{account.id}/media/{media_id}/")) == 2

    async with runtime.db.begin() as conn:
        await conn.execute(
            update(t.mailboxes).where(t.mailboxes.c.id == mailbox_id).values(greeting_media_id=None)
        )
    assert (
        await client.delete(f"/v1/media/{media_id}", headers=account.headers)
    ).status_code == 204


# -- bad input stores nothing -----------------------------------------------------


# Nothing is stored before the audio has passed every check (services/media.py): on
# PostgreSQL + S3 the audio refused furthest into decoding and the upload cut mid-part.
@on_backends(
    ("case", "status", "error_id"),
    [
        ("text", 422, "invalid-audio"),
        ("truncated-mp3", 422, "invalid-audio"),
        ("empty", 422, "invalid-audio"),
        ("no-file-field", 422, "validation-failed"),
        ("unknown-field", 422, "validation-failed"),
        ("not-multipart", 415, "unsupported-media-type"),
        ("unterminated", 400, "malformed-multipart"),
    ],
    postgres=[1, 6],
)
async def test_bad_uploads_are_problems_and_store_nothing(
    client: httpx.AsyncClient,
    account: AccountKey,
    runtime: Runtime,
    case: str,
    status: int,
    error_id: str,
) -> None:
    headers = account.headers
    if case == "text":
        response = await upload(
            client,
            account,
            b"Dear caller,\nthis is not audio.\n" * 50,
            "x.mp3",
            content_type="audio/mpeg",
        )
    elif case == "truncated-mp3":
        response = await upload(
            client, account, MP3[: len(MP3) * 2 // 3], "cut.mp3", content_type="audio/mpeg"
        )
    elif case == "empty":
        response = await upload(client, account, b"", "empty.wav", content_type="audio/wav")
    elif case == "no-file-field":
        response = await client.post(
            "/v1/media", data={"name": "nothing"}, files={"other": ("x", b"")}, headers=headers
        )
    elif case == "unknown-field":
        response = await client.post(
            "/v1/media", files={"file": ("a.mp3", MP3), "colour": ("c", b"blue")}, headers=headers
        )
    elif case == "not-multipart":
        response = await client.post("/v1/media", json={"file": "abc"}, headers=headers)
    else:
        response = await client.post(
            "/v1/media",
            content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n\r\n'
            + MP3,
            headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
        )
    assert_problem(response, status, error_id)
    await assert_nothing_stored(runtime, account.id)


async def test_missing_file_field_alone(
    client: httpx.AsyncClient, account: AccountKey, runtime: Runtime
) -> None:
    response = await client.post(
        "/v1/media", files={"name": (None, "just a name")}, headers=account.headers
    )
    body = assert_problem(response, 422, "validation-failed")
    assert body["errors"] == [{"field": "file", "message": "Field required"}]
    await assert_nothing_stored(runtime, account.id)


@pytest.fixture
async def small_limit(
    backend: Backend,
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, AccountKey]]:
    runtime = Runtime(make_settings(backend, max_upload_mb=1))
    await runtime.start(workers=False)
    try:
        issued = await runtime.accounts.create_account("Small limits")
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://afterbeep.test"
        ) as client:
            yield runtime, client, AccountKey(issued.account_id, issued.secret)
    finally:
        await runtime.stop()


async def test_oversize_upload_with_content_length(
    small_limit: tuple[Runtime, httpx.AsyncClient, AccountKey],
) -> None:
    runtime, client, account = small_limit
    big = encode(tones(48000, 12.0, (300,)), 48000, "WAV", "PCM_16")
    assert len(big) > 1024 * 1024
    body = assert_problem(await upload(client, account, big, "big.wav"), 413, "payload-too-large")
    assert "1048576" in str(body["detail"])
    await assert_nothing_stored(runtime, account.id)


async def test_oversize_streamed_upload_is_cut_off_early(
    small_limit: tuple[Runtime, httpx.AsyncClient, AccountKey],
) -> None:
    runtime, client, account = small_limit
    boundary = "oversize-boundary"
    chunk = b"\x00\x01" * 32 * 1024
    total_chunks = 96  # 6 MiB offered against a 1 MiB limit
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        ).encode()
        for _ in range(total_chunks):
            sent += len(chunk)
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        "/v1/media",
        content=body(),
        headers={**account.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_problem(response, 413, "payload-too-large")
    assert sent <= 1024 * 1024 + 2 * len(chunk)
    await assert_nothing_stored(runtime, account.id)


# -- the service method other services call ---------------------------------------


async def test_import_file_applies_the_callers_rules(
    client: httpx.AsyncClient, account: AccountKey, runtime: Runtime, tmp_path: Path
) -> None:
    media = runtime.app.state.services.media
    mp3 = tmp_path / "voicemail.mp3"
    mp3.write_bytes(encode(tones(22050, 12.0, (440,)), 22050, "MP3"))
    wav = tmp_path / "voicemail.wav"
    wav.write_bytes(encode(tones(8000, 12.0, (440,)), 8000, "WAV", "PCM_16"))
    rules = {
        "allowed_formats": {"MP3"},
        "max_bytes": 8 * 1024 * 1024,
        "min_ms": 10_000,
        "max_ms": 60_000,
    }

    refusals = [
        (wav, rules, "audio-format-not-allowed"),
        (mp3, {**rules, "min_ms": 15_000}, "audio-too-short"),
        (mp3, {**rules, "max_ms": 11_000}, "audio-too-long"),
    ]
    for path, kwargs, error_id in refusals:
        with pytest.raises(InvalidAudio) as caught:
            await media.import_file(account.id, path, "rvm", **kwargs)
        assert caught.value.error_id == error_id
    with pytest.raises(PayloadTooLarge):
        await media.import_file(account.id, mp3, "rvm", **{**rules, "max_bytes": 1000})
    await assert_nothing_stored(runtime, account.id)

    imported = await media.import_file(account.id, mp3, "rvm", **rules)
    assert imported.format == "mp3" and 11_900 <= imported.duration_ms <= 12_100
    assert mp3.exists()
    fetched = await client.get(f"/v1/media/{imported.id}", headers=account.headers)
    assert fetched.json()["sha256"] == hashlib.sha256(mp3.read_bytes()).hexdigest()


# -- tenant isolation -------------------------------------------------------------


async def test_other_account_gets_404_everywhere(
    client: httpx.AsyncClient, account: AccountKey, other_account: AccountKey
) -> None:
    media_id = (await upload(client, account, MP3, "mine.mp3")).json()["id"]
    theirs = other_account.headers
    assert_problem(await client.get(f"/v1/media/{media_id}", headers=theirs), 404, "not-found")
    for rendition in ("original", "telephony"):
        assert_problem(
            await client.get(
                f"/v1/media/{media_id}/audio", params={"rendition": rendition}, headers=theirs
            ),
            404,
        )
    assert_problem(await client.delete(f"/v1/media/{media_id}", headers=theirs), 404)
    assert (await client.get(f"/v1/media/{media_id}/audio", headers=account.headers)).content == MP3
    assert_problem(await client.get("/v1/media/media_nonsense", headers=account.headers), 404)
    assert_problem(await client.get("/v1/media/../etc", headers=account.headers), 404)
