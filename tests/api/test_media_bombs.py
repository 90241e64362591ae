"""Media that expands, against the real `afterbeep serve`: headers no telephony audio has, files
longer than AFTERBEEP_MAX_MEDIA_SECONDS (in their header or only in their stream) are refused with
problem JSON while the service's peak RSS (VmHWM) grows by less than 100 MB; a compressed file
that decodes to far more than it weighs is rendered in blocks; every rendition is at most
16 000 bytes a second of the limit, and counts against the account's media quota."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.fixtures.service import NO_RECORDINGS, Service, running_service

pytestmark = pytest.mark.timeout(300)

PROBLEM = "application/problem+json"
MB = 1024 * 1024


# -- the files ----------------------------------------------------------------------


def wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    riff = min(36 + data_bytes, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE"
        + b"fmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def noise(frames: int) -> bytes:
    return np.random.default_rng(7).integers(-3000, 3000, frames).astype("<i2").tobytes()


def wav_1_hz() -> bytes:
    """20 KB of samples declared at 1 Hz: 10 000 seconds, 80 M samples once at 8 kHz."""
    data = noise(10_000)
    return wav_header(1, 1, len(data)) + data


def wav_huge_frame_count() -> bytes:
    """A data chunk that declares 4 GB, holding 20 KB."""
    return wav_header(8000, 1, 0xFFFFFFF0) + noise(10_000)


def wav_zero_channels() -> bytes:
    data = noise(10_000)
    return wav_header(8000, 0, len(data)) + data


def wav_nine_channels() -> bytes:
    data = noise(9 * 8000)
    return wav_header(8000, 9, len(data)) + data


def silence(fmt: str, rate: int, seconds: int, channels: int = 1) -> bytes:
    """Seconds of silence, encoded ten seconds at a time (small in memory here too)."""
    buffer = io.BytesIO()
    block = np.zeros((rate * 10, channels), np.float32)
    subtype = "VORBIS" if fmt == "OGG" else None
    with sf.SoundFile(buffer, "w", rate, channels, format=fmt, subtype=subtype) as out:
        for _ in range(seconds // 10):
            out.write(block)
    return buffer.getvalue()


def flac_claiming(data: bytes, frames: int) -> bytes:
    """The FLAC with STREAMINFO's total-samples field (36 bits at byte 21) set to `frames`."""
    patched = bytearray(data)
    assert patched[:4] == b"fLaC"
    patched[21] = (patched[21] & 0xF0) | (frames >> 32)
    patched[22:26] = (frames & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(patched)


# -- the service ----------------------------------------------------------------------


def vm_hwm_kb(service: Service) -> int:
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1])


def api_key(service: Service) -> str:
    return str(json.loads(service.cli("account", "create", "Acme", "--json").stdout)["api_key"])


def upload(client: httpx.Client, data: bytes, filename: str) -> httpx.Response:
    return client.post("/v1/media", files={"file": (filename, data, "application/octet-stream")})


def assert_refused(response: httpx.Response, error_id: str | None = None) -> None:
    assert response.status_code in (413, 422), (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM)
    if error_id is not None:
        assert response.json()["error_id"] == error_id, response.text


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Service, httpx.Client]]:
    env: dict[str, str] = {**NO_RECORDINGS, **getattr(request, "param", {})}
    with running_service(tmp_path / "var", env) as service:
        headers = {"Authorization": f"Bearer {api_key(service)}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=120) as client:
            yield service, client


# -- the tests ----------------------------------------------------------------------


def test_expanding_media_is_refused_with_bounded_memory(
    served: tuple[Service, httpx.Client],
) -> None:
    service, client = served
    warm_up = upload(client, silence("FLAC", 8000, 10), "warm-up.flac")
    assert warm_up.status_code == 201, warm_up.text
    before = vm_hwm_kb(service)

    hour_flac = silence("FLAC", 44100, 3600)
    bombs = {
        # an hour at 8 kHz in Ogg Vorbis (its length only in the last page)
        "hour.ogg": (silence("OGG", 8000, 3600), "audio-too-long"),
        "1hz.wav": (wav_1_hz(), None),
        "huge-frames.wav": (wav_huge_frame_count(), None),
        "zero-channels.wav": (wav_zero_channels(), None),
        "nine-channels.wav": (wav_nine_channels(), None),
        "hour.flac": (hour_flac, "audio-too-long"),
        # STREAMINFO says "length unknown", the stream goes on for an hour
        "unknown-length.flac": (flac_claiming(hour_flac, 0), "audio-too-long"),
    }
    for filename, (data, error_id) in bombs.items():
        assert len(data) < 600 * 1024, filename
        assert_refused(upload(client, data, filename), error_id)

    # 60 s of 8 channels at 96 kHz: 46 KB that decode to 184 MB of float samples, accepted
    big = upload(client, silence("FLAC", 96000, 60, channels=8), "eight-channels.flac")
    assert big.status_code == 201, big.text
    media = big.json()
    assert media["duration_ms"] == 60_000 and media["channels"] == 8
    rendition = client.get(f"/v1/media/{media['id']}/audio", params={"rendition": "telephony"})
    assert len(rendition.content) == 44 + 60 * 16000
    assert media["stored_bytes"] == media["size_bytes"] + len(rendition.content)

    growth_mb = (vm_hwm_kb(service) - before) / 1024
    print(f"VmHWM growth: {growth_mb:.1f} MB")
    assert growth_mb < 100

    listed = client.get("/v1/media").json()["items"]
    assert sorted(item["id"] for item in listed) == sorted([warm_up.json()["id"], media["id"]])


@pytest.mark.parametrize("served", [{"AFTERBEEP_MAX_MEDIA_SECONDS": "5"}], indirect=True)
def test_renditions_and_so_greetings_are_bounded_by_the_media_limit(
    served: tuple[Service, httpx.Client],
) -> None:
    """A greeting is played from its telephony rendition, read whole and shared by the calls
    that play it: so its buffer is at most 44 + 16 000 bytes a second of the limit."""
    _service, client = served
    limit_bytes = 44 + 5 * 16000
    t_axis = np.arange(44100 * 5) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t_axis)] * 2, axis=1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, 44100, format="FLAC")
    accepted = upload(client, buffer.getvalue(), "five.flac")
    assert accepted.status_code == 201, accepted.text
    media_id = accepted.json()["id"]
    rendition = client.get(f"/v1/media/{media_id}/audio", params={"rendition": "telephony"})
    assert rendition.status_code == 200
    assert len(rendition.content) <= limit_bytes

    mailbox = client.post("/v1/mailboxes", json={"name": "Desk", "greeting_media_id": media_id})
    assert mailbox.status_code == 201, mailbox.text

    assert_refused(upload(client, silence("WAV", 8000, 10), "ten.wav"), "audio-too-long")
    assert_refused(upload(client, silence("FLAC", 48000, 10), "ten.flac"), "audio-too-long")


@pytest.mark.parametrize("served", [{"AFTERBEEP_MEDIA_QUOTA_MB": "1"}], indirect=True)
def test_renditions_count_against_the_account_media_quota(
    served: tuple[Service, httpx.Client],
) -> None:
    """Two FLACs of 40 s of silence: a few KB each, but 640 KB of rendition each."""
    _service, client = served
    first = upload(client, silence("FLAC", 8000, 40), "first.flac")
    assert first.status_code == 201, first.text
    assert first.json()["stored_bytes"] >= 40 * 16000
    assert first.json()["size_bytes"] < 40 * 1024
    second = upload(client, silence("FLAC", 16000, 40), "second.flac")
    assert second.status_code == 409, second.text
    assert second.headers["content-type"].startswith(PROBLEM)
    assert second.json()["error_id"] == "quota-exceeded"
    assert [item["id"] for item in client.get("/v1/media").json()["items"]] == [first.json()["id"]]
