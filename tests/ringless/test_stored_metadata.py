"""A send whose stored metadata cannot be shown (stored by hand, or under older rules) is
listed with `metadata: null` on both backends, never failing the list of its account."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from afterbeep.app import Runtime
from afterbeep.audio.tones import silence
from tests.conftest import TestAccount
from tests.ringless.support import (
    SENDER,
    insert_accepted_send,
    insert_media,
    insert_setup,
    insert_use_case,
)


def nested_text(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def test_unreadable_metadata_reads_as_null(
    runtime: Runtime, client: httpx.AsyncClient, account: TestAccount
) -> None:
    setup_id = await insert_setup(runtime, account.id)
    use_case_id = await insert_use_case(runtime, account.id, setup_id, channel="ringless_voicemail")
    media_id = await insert_media(runtime, account.id, silence(1000))
    stored = {"deep": nested_text(3000), "too-deep-to-show": nested_text(300), "good": '{"a":1}'}
    ids: dict[str, str] = {}
    for name, value in stored.items():
        send_id = await insert_accepted_send(
            runtime, account.id, setup_id, use_case_id, media_id, from_e164=SENDER, to="+12125550123"
        )
        cast = "CAST(:m AS json)" if runtime.db.engine.dialect.name == "postgresql" else ":m"
        async with runtime.db.begin() as conn:
            await conn.execute(
                text(f"UPDATE voicemail_sends SET metadata = {cast} WHERE id = :id"),
                {"m": value, "id": send_id},
            )
        ids[name] = send_id

    listed = await client.get("/v1/voicemails", headers=account.headers)
    assert listed.status_code == 200, listed.text
    shown = {item["id"]: item["metadata"] for item in listed.json()["items"]}
    assert {name: shown[send_id] for name, send_id in ids.items()} == {
        "deep": None, "too-deep-to-show": None, "good": {"a": 1},
    }  # fmt: skip
    one = await client.get(f"/v1/voicemails/{ids['deep']}", headers=account.headers)
    assert one.status_code == 200 and one.json()["metadata"] is None
