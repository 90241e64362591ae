"""The phone menu's settings over HTTP: the recorded name (a media of the account) and `*97`
without the PIN; a number leading to the phone menu (`voicemail_main`, no id)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from tests.api.test_mailboxes import assert_problem, create, upload_media

if TYPE_CHECKING:
    from tests.conftest import TestAccount


async def test_name_and_skip_pin_are_set_read_and_checked(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    box = await create(client, account)
    assert box["name_media_id"] is None and box["skip_pin_from_own_device"] is False
    media_id = await upload_media(client, account)
    changed = await client.patch(
        f"/v1/mailboxes/{box['id']}",
        json={"name_media_id": media_id, "skip_pin_from_own_device": True},
        headers=account.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name_media_id"] == media_id
    assert changed.json()["skip_pin_from_own_device"] is True
    read = await client.get(f"/v1/mailboxes/{box['id']}", headers=account.headers)
    assert read.json()["name_media_id"] == media_id

    theirs = await upload_media(client, other_account)
    refused = await client.patch(
        f"/v1/mailboxes/{box['id']}", json={"name_media_id": theirs}, headers=account.headers
    )
    assert_problem(refused, 422, "invalid-reference")
    cleared = await client.patch(
        f"/v1/mailboxes/{box['id']}", json={"name_media_id": None}, headers=account.headers
    )
    assert cleared.status_code == 200 and cleared.json()["name_media_id"] is None
    created = await create(client, account, name_media_id=media_id, skip_pin_from_own_device=True)
    assert created["name_media_id"] == media_id and created["skip_pin_from_own_device"] is True


async def test_a_number_leads_to_the_phone_menu(client: httpx.AsyncClient, account: TestAccount) -> None:
    created = await client.post(
        "/v1/numbers", json={"e164": "+12025550177", "dest_kind": "voicemail_main"},
        headers=account.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["dest_kind"] == "voicemail_main" and created.json()["dest_id"] is None
    refused = await client.post(
        "/v1/numbers",
        json={"e164": "+12025550178", "dest_kind": "voicemail_main", "dest_id": "vm_x"},
        headers=account.headers,
    )
    assert_problem(refused, 422)
