"""kill -9 of a real `afterbeep serve` with ringless sends in flight.

Two processes on 127.0.0.1, each with its own data dir and database: A sends, B receives the SIP
deposits (B trusts A's address through AFTERBEEP_DEPOSIT_PEERS and routes five numbers to a
mailbox). Once some sends are delivered and others are mid-call, A is killed with SIGKILL and
started again on the same data dir. Every send must end `delivered` or `failed` with a reason;
none is lost; B holds exactly one message per delivered send (deposits are named
`rvm_<send id>`, stored once per name) holding that send's audio, and never two for one send.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from afterbeep.audio.compare import compare
from afterbeep.audio.rendition import read_wav_pcm
from tests.e2e.rig import Api, rtp_range, sent, speech
from tests.fixtures.service import running_service

pytestmark = pytest.mark.timeout(170)

SENDS = 20
SECONDS = 10.0  # each send's audio, the shortest a send accepts
PER_SECOND = 5  # A starts its calls over four seconds: some are mid-call when three are done
RTP_TIMEOUT = 1.5  # B ends the calls A left hanging after this long without RTP
SENDER = "+12025550177"
RECIPIENTS = [f"+1202555010{i}" for i in range(5)]  # B's numbers, all to one mailbox
BOUND = 150.0  # the whole test's waiting, start-ups included; never a speed assertion


def mp3(seed: int) -> bytes:
    """10 s of speech-like noise as a 16 kHz MP3 (no periodicity to fool the alignment)."""
    pcm = np.repeat(speech(SECONDS, seed=seed), 2).astype(np.float32) / 32768
    buffer = io.BytesIO()
    sf.write(buffer, pcm, 16000, format="MP3")
    return buffer.getvalue()


def env_for(**settings: str) -> dict[str, str]:
    low, high = rtp_range()
    return {
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_SECRET_KEY": "crash-process-" + "k" * 40,
        **{f"AFTERBEEP_{name.upper()}": value for name, value in settings.items()},
    }


def api_key(service: Any, sender: str | None = None) -> str:
    """A new account's API key; with `sender`, the operator verifies that caller id for it."""
    created = json.loads(service.cli("account", "create", "Acme", "--json").stdout)
    if sender is not None:
        service.cli("numbers", "verify", sender, "--account", created["account_id"])
    return str(created["api_key"])


async def sends_of(api: Api) -> dict[str, dict[str, Any]]:
    r = await api.http.get("/v1/voicemails", params={"limit": 100}, headers=api.headers)
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()["items"]}


async def prepare_sender(api: Api, deposit_uri: str) -> tuple[list[str], list[bytes]]:
    setup = await api.post(
        "/v1/telephony-setups",
        {
            "name": "to B",
            "trunk_host": "127.0.0.1",
            "trunk_port": 5060,
            "transport": "udp",
            "max_calls_per_second": PER_SECOND,
            "max_concurrent_calls": 50,
            "numbers": [{"e164": SENDER}],
            "deposit_uri": deposit_uri,
        },
    )
    use_case = await api.post(
        "/v1/use-cases",
        {
            "channel": "ringless_voicemail",
            "name": "reminders",
            "setup_id": setup["id"],
            "sender_selection": "fixed",
            "sender_number": SENDER,
            "require_consent": False,
            "calling_window": {"start": "00:00", "end": "00:00"},
            "max_attempts": 3,
            "retry_backoff_seconds": 1,
            "recipient_cap": {"attempts": 100, "period_hours": 1},
        },
    )
    media: list[str] = []
    references: list[bytes] = []
    for seed in range(5):
        r = await api.http.post(
            "/v1/media",
            files={"file": (f"r{seed}.mp3", mp3(seed + 40), "audio/mpeg")},
            headers=api.headers,
        )
        assert r.status_code == 201, r.text
        media.append(r.json()["id"])
        wav = await api.http.get(
            f"/v1/media/{media[-1]}/audio", params={"rendition": "telephony"}, headers=api.headers
        )
        assert wav.status_code == 200, wav.text
        references.append(wav.content)
    sends = []
    for i in range(SENDS):
        body = {"to": RECIPIENTS[i % 5], "use_case_id": use_case["id"], "media_id": media[i % 5]}
        sends.append((await api.post("/v1/voicemails", body, status=202))["id"])
    return sends, references


async def test_kill_9_with_sends_in_flight(tmp_path: Path) -> None:
    env_b = env_for(deposit_peers="127.0.0.1", rtp_timeout_seconds=str(RTP_TIMEOUT))
    env_a = env_for(delivery_batch_size=str(SENDS))
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    async with asyncio.timeout(BOUND):
        with running_service(tmp_path / "b" / "var", env_b) as b:
            b_sip = b.env["AFTERBEEP_SIP_ADDR"]
            async with httpx.AsyncClient(base_url=b.url, timeout=10) as http_b:
                api_b = Api(http_b, {"Authorization": f"Bearer {api_key(b)}"})
                mailbox = await api_b.post(
                    "/v1/mailboxes", {"name": "Inbox", "min_message_seconds": 1}
                )
                for number in RECIPIENTS:
                    await api_b.post(
                        "/v1/numbers",
                        {"e164": number, "dest_kind": "voicemail", "dest_id": mailbox["id"]},
                    )

                data_a = tmp_path / "a" / "var"
                with running_service(data_a, env_a) as a:
                    key_a = api_key(a, sender=SENDER)
                    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http_a:
                        api_a = Api(http_a, {"Authorization": f"Bearer {key_a}"})
                        sends, references = await prepare_sender(api_a, f"sip:{{to}}@{b_sip}")
                        while True:
                            now = await sends_of(api_a)
                            statuses = Counter(s["status"] for s in now.values())
                            in_flight = [
                                s
                                for s in now.values()
                                if s["status"] == "accepted" and s["attempt_count"] > 0
                            ]
                            if statuses["delivered"] >= 3 and in_flight:
                                break
                            await asyncio.sleep(0.1)
                        a.process.send_signal(signal.SIGKILL)
                        a.process.wait(timeout=10)
                print(f"killed with {dict(statuses)}, {len(in_flight)} mid-call")
                assert statuses["delivered"] < SENDS

                with running_service(data_a, env_a) as a:
                    give_up = time.monotonic() + 50
                    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http_a:
                        api_a = Api(http_a, {"Authorization": f"Bearer {key_a}"})
                        while True:
                            final = await sends_of(api_a)
                            left = Counter(s["status"] for s in final.values())
                            if not left["accepted"]:
                                break
                            if time.monotonic() > give_up:
                                raise AssertionError(f"sends still waiting after the restart: {left}")
                            await asyncio.sleep(0.2)
                        attempts = sum(s["attempt_count"] for s in final.values())

                assert sorted(final) == sorted(sends)  # none lost
                outcomes = Counter(s["status"] for s in final.values())
                print(f"after restart: {dict(outcomes)}, {attempts} attempts in all")
                assert set(outcomes) <= {"delivered", "failed"}, outcomes
                assert all(s["failure_reason"] for s in final.values() if s["status"] == "failed")
                assert attempts > SENDS  # the sends cut off by the kill were attempted again

                await asyncio.sleep(RTP_TIMEOUT + 0.5)  # calls A left hanging are over on B
                delivered = [i for i, s in enumerate(sends) if final[s]["status"] == "delivered"]
                # B stores what it received in its post-call worker process, soon after each call.
                give_up = time.monotonic() + 30
                while True:
                    r = await http_b.get(
                        f"/v1/mailboxes/{mailbox['id']}/messages",
                        params={"limit": 100},
                        headers=api_b.headers,
                    )
                    messages = r.json()["items"]
                    by_name = Counter(m["call_id"] for m in messages)
                    stored = {f"rvm_{sends[i]}" for i in delivered} <= set(by_name)
                    if stored or time.monotonic() > give_up:
                        break
                    await asyncio.sleep(0.2)
                assert max(by_name.values()) == 1, by_name  # never two for one send
                assert set(by_name) <= {f"rvm_{s}" for s in sends}
                assert stored, sorted({f"rvm_{sends[i]}" for i in delivered} - set(by_name))
                named = {m["call_id"]: m for m in messages}
                for i in delivered:
                    reference, rate = read_wav_pcm(references[i % 5])
                    assert rate == 8000
                    audio = await api_b.audio(named[f"rvm_{sends[i]}"]["id"])
                    result = compare(sent(reference), audio)
                    assert result.snr_db > 30, (i, result)
                    assert result.missing_head_ms < 100 and result.missing_tail_ms < 100, result
