"""Speech of call flows over HTTP, with the real espeak-ng, on both backends: a say node's text
and a menu's promptText become media when the flow is saved (the version's `speech` map), the
same text reuses its media, unknown voices and texts that cannot be spoken name their node and
store nothing, the account's language speaks where the node has none, and media a flow's
current version plays cannot be deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import func, select

from afterbeep.app import Runtime
from afterbeep.audio.levels import rms_dbfs
from afterbeep.audio.rendition import TELEPHONY_RATE, read_wav_pcm
from afterbeep.audio.speech import EspeakSynthesizer
from afterbeep.db import tables as t
from tests.api.test_mailboxes import assert_problem, upload_media
from tests.conftest import Backend, TestAccount, make_settings


def _node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": {"kind": kind, **data}}


def _edge(edge_id: str, source: str, handle: str, target: str) -> dict[str, Any]:
    return {"id": edge_id, "source": source, "sourceHandle": handle, "target": target}


def spoken_flow(
    text: str = "Welcome to Acme.",
    prompt: str = "Press one for sales.",
    **say: Any,
) -> dict[str, Any]:
    """entry → say → menu → hangup."""
    return {
        "name": "Spoken",
        "nodes": [
            _node("start", "entry"),
            _node("hello", "say", text=text, **say),
            _node("main", "menu", promptText=prompt),
            _node("bye", "hangup"),
        ],
        "edges": [
            _edge("e1", "start", "default", "hello"),
            _edge("e2", "hello", "default", "main"),
            _edge("e3", "main", "digit:1", "bye"),
        ],
    }


async def _audio(
    client: httpx.AsyncClient, account: TestAccount, media_id: str, rendition: str = "telephony"
) -> bytes:
    response = await client.get(
        f"/v1/media/{media_id}/audio", params={"rendition": rendition}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("audio/wav")
    return response.content


async def _counts(runtime: Runtime, account_id: str) -> tuple[int, int]:
    async with runtime.db.engine.connect() as conn:
        flows = await conn.execute(
            select(func.count()).select_from(t.flows).where(t.flows.c.account_id == account_id)
        )
        media = await conn.execute(
            select(func.count()).select_from(t.media).where(t.media.c.account_id == account_id)
        )
        return int(flows.scalar_one()), int(media.scalar_one())


async def test_saving_speaks_every_text_into_media(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    created = await client.post("/v1/flows", json=spoken_flow(), headers=account.headers)
    assert created.status_code == 201, created.text
    flow = created.json()
    speech = flow["speech"]
    assert set(speech) == {"hello/text", "main/promptText"}
    assert speech["hello/text"] != speech["main/promptText"]
    for media_id in speech.values():
        media = await client.get(f"/v1/media/{media_id}", headers=account.headers)
        assert media.status_code == 200, media.text
        assert media.json()["format"] == "wav"
        pcm, rate = read_wav_pcm(await _audio(client, account, media_id))
        assert rate == TELEPHONY_RATE
        assert len(pcm) > TELEPHONY_RATE // 2
        assert rms_dbfs(pcm) > -35
    for path in (f"/v1/flows/{flow['id']}", f"/v1/flows/{flow['id']}/versions/1"):
        shown = await client.get(path, headers=account.headers)
        assert shown.json()["speech"] == speech


async def test_saving_the_same_text_again_reuses_its_media(
    client: httpx.AsyncClient, account: TestAccount, runtime: Runtime
) -> None:
    first = (await client.post("/v1/flows", json=spoken_flow(), headers=account.headers)).json()
    _flows, media_before = await _counts(runtime, account.id)
    assert media_before == 2

    again = await client.put(
        f"/v1/flows/{first['id']}", json=spoken_flow(), headers=account.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 2
    assert again.json()["speech"] == first["speech"]
    # A second flow speaking the same prompt shares it too.
    other = await client.post(
        "/v1/flows", json=spoken_flow(text="Good evening."), headers=account.headers
    )
    assert other.json()["speech"]["main/promptText"] == first["speech"]["main/promptText"]
    assert other.json()["speech"]["hello/text"] != first["speech"]["hello/text"]
    assert (await _counts(runtime, account.id))[1] == 3

    changed = await client.put(
        f"/v1/flows/{first['id']}",
        json=spoken_flow(prompt="Press two for support."),
        headers=account.headers,
    )
    assert changed.json()["speech"]["hello/text"] == first["speech"]["hello/text"]
    assert changed.json()["speech"]["main/promptText"] != first["speech"]["main/promptText"]
    kept = await client.get(f"/v1/flows/{first['id']}/versions/1", headers=account.headers)
    assert kept.json()["speech"] == first["speech"]


async def test_an_unknown_voice_or_language_names_its_node_and_stores_nothing(
    client: httpx.AsyncClient, account: TestAccount, runtime: Runtime
) -> None:
    body = spoken_flow(voice="nosuchvoice")
    body["nodes"][2]["data"]["language"] = "tlh"
    response = await client.post("/v1/flows", json=body, headers=account.headers)
    problem = assert_problem(response, 422, "invalid-flow")
    found = {(e["node_id"], e["field"]): e["message"] for e in problem["errors"]}
    assert set(found) == {("hello", "data.voice"), ("main", "data.language")}
    assert "nosuchvoice" in found[("hello", "data.voice")]
    assert "'tlh'" in found[("main", "data.language")]
    assert await _counts(runtime, account.id) == (0, 0)

    malformed = await client.post(
        "/v1/flows", json=spoken_flow(language="english"), headers=account.headers
    )
    problem = assert_problem(malformed, 422, "invalid-flow")
    assert [(e["node_id"], e["field"]) for e in problem["errors"]] == [("hello", "data.language")]


async def test_speech_is_read_only(client: httpx.AsyncClient, account: TestAccount) -> None:
    body = {**spoken_flow(), "speech": {"hello/text": "media_01jg8asp59ps9rtt7azhrhvcre"}}
    response = await client.post("/v1/flows", json=body, headers=account.headers)
    problem = assert_problem(response, 422, "validation-failed")
    assert problem["errors"][0]["field"] == "speech"


async def test_the_accounts_language_speaks_where_the_node_has_none(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    patched = await client.patch("/v1/account", json={"language": "de"}, headers=account.headers)
    assert patched.status_code == 200, patched.text
    text = "Guten Tag, willkommen."
    german = (
        await client.post("/v1/flows", json=spoken_flow(text=text), headers=account.headers)
    ).json()["speech"]["hello/text"]
    english = (
        await client.post(
            "/v1/flows", json=spoken_flow(text=text, language="en"), headers=account.headers
        )
    ).json()["speech"]["hello/text"]
    assert german != english

    # The stored original is what espeak-ng's German voice says (its English one for `en`).
    engine = EspeakSynthesizer()
    assert await _audio(client, account, german, "original") == await engine.synthesize(text, "de")
    english_audio = await _audio(client, account, english, "original")
    assert english_audio == await engine.synthesize(text, "en-gb")


async def test_media_a_current_flow_plays_cannot_be_deleted(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    recorded = await upload_media(client, account)
    body = spoken_flow()
    body["nodes"].insert(2, _node("jingle", "play", audioId=recorded))
    body["edges"][1] = _edge("e2", "hello", "default", "jingle")
    body["edges"].append(_edge("e4", "jingle", "default", "main"))
    flow = (await client.post("/v1/flows", json=body, headers=account.headers)).json()
    spoken = flow["speech"]["hello/text"]

    for media_id in (recorded, spoken):
        refused = await client.delete(f"/v1/media/{media_id}", headers=account.headers)
        problem = assert_problem(refused, 409, "media-in-use")
        assert flow["id"] in problem["detail"]

    # Once the current version no longer plays them, they can go (version 1 keeps its map).
    plain = spoken_flow(text="Hi.")
    assert (
        await client.put(f"/v1/flows/{flow['id']}", json=plain, headers=account.headers)
    ).status_code == 200
    for media_id in (recorded, spoken):
        deleted = await client.delete(f"/v1/media/{media_id}", headers=account.headers)
        assert deleted.status_code == 204, deleted.text


@asynccontextmanager
async def _service(
    backend: Backend, engine: EspeakSynthesizer, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, TestAccount]]:
    runtime = Runtime(make_settings(backend, **settings))
    runtime.speech = engine
    await runtime.start(workers=False)
    try:
        issued = await runtime.accounts.create_account("Acme Clinic")
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test") as c:
            yield c, runtime, TestAccount(issued.account_id, issued.secret)
    finally:
        await runtime.stop()


async def test_a_text_that_cannot_be_spoken_names_its_node_and_stores_nothing(
    backend: Backend,
) -> None:
    async with _service(backend, EspeakSynthesizer(max_seconds=2)) as (client, runtime, account):
        body = spoken_flow(prompt="This prompt is far too long to say in two seconds. " * 4)
        response = await client.post("/v1/flows", json=body, headers=account.headers)
        problem = assert_problem(response, 422, "invalid-flow")
        assert [(e["node_id"], e["field"]) for e in problem["errors"]] == [
            ("main", "data.promptText")
        ]
        assert "longer than 2 s" in problem["errors"][0]["message"]
        assert await _counts(runtime, account.id) == (0, 0)


async def test_no_speech_engine_is_503_and_stores_nothing(backend: Backend) -> None:
    missing = EspeakSynthesizer(binary="/nonexistent/espeak-ng")
    async with _service(backend, missing) as (client, runtime, account):
        response = await client.post("/v1/flows", json=spoken_flow(), headers=account.headers)
        problem = assert_problem(response, 503, "speech-unavailable")
        assert "'hello'" in problem["detail"]
        assert await _counts(runtime, account.id) == (0, 0)
        # A flow that speaks nothing is still saved.
        silent = spoken_flow()
        silent["nodes"][1] = _node("hello", "hangup")
        silent["nodes"] = silent["nodes"][:2]
        silent["edges"] = silent["edges"][:1]
        saved = await client.post("/v1/flows", json=silent, headers=account.headers)
        assert saved.status_code == 201, saved.text
        assert saved.json()["speech"] == {}


async def test_speech_counts_against_the_media_quota(backend: Backend) -> None:
    async with _service(backend, EspeakSynthesizer(), media_quota_mb=1) as (
        client,
        runtime,
        account,
    ):
        # About 50 s of speech: 800 kB as the original and as much again as its rendition.
        long_text = "Our opening hours are Monday to Friday, nine to five. " * 15
        body = spoken_flow(text="Hello.", prompt=long_text)
        response = await client.post("/v1/flows", json=body, headers=account.headers)
        problem = assert_problem(response, 409, "quota-exceeded")
        assert "'main'" in problem["detail"]
        # The short text's media made by the refused save is gone again.
        assert await _counts(runtime, account.id) == (0, 0)
        fits = await client.post("/v1/flows", json=spoken_flow(), headers=account.headers)
        assert fits.status_code == 201, fits.text
