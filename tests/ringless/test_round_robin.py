"""Round robin kept in the database (`use_cases.rr_next`): two runtimes on one database (two
nodes, or one node before and after a restart) alternate the senders as one would, including
when they accept sends at the same time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.services.ringless import RinglessService
from tests.conftest import Backend, TestAccount, make_settings
from tests.ringless.support import LA_SENDER, NYC_SENDER, audio, make_setup, make_use_case

SENDERS = [NYC_SENDER, LA_SENDER]  # the verified numbers of `setup_body`, in order
OTHER_AREA = "+16175550123"  # Boston: no local number, so local presence falls back to round robin


@pytest.fixture
async def second_runtime(backend: Backend, runtime: Runtime) -> AsyncIterator[Runtime]:
    """Another runtime on the same database and storage (`runtime` has migrated it)."""
    del runtime
    rt = Runtime(make_settings(backend))
    await rt.start(workers=False)
    try:
        yield rt
    finally:
        await rt.stop()


async def stored_media(client: httpx.AsyncClient, account: TestAccount) -> str:
    r = await client.post(
        "/v1/media",
        files={"file": ("reminder.mp3", audio(12), "audio/mpeg")},
        headers=account.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def ringless(rt: Runtime) -> RinglessService:
    return rt.api_services().ringless


@pytest.mark.parametrize("selection", ["round_robin", "local_presence"])
async def test_two_runtimes_alternate_the_senders(
    runtime: Runtime,
    second_runtime: Runtime,
    client: httpx.AsyncClient,
    account: TestAccount,
    selection: str,
) -> None:
    use_case = await make_use_case(
        client, account, await make_setup(client, account), sender_selection=selection
    )
    media_id = await stored_media(client, account)
    nodes = [ringless(runtime), ringless(second_runtime)]

    picked = []
    for i in range(6):
        send = await nodes[i % 2].create_send(
            account.id, OTHER_AREA, use_case, media_id=media_id
        )
        picked.append(send.from_e164)
    assert picked == [SENDERS[i % 2] for i in range(6)]

    # A restart: a fresh service on the first runtime goes on from the stored cursor.
    send = await ringless(runtime).create_send(account.id, OTHER_AREA, use_case, media_id=media_id)
    assert send.from_e164 == SENDERS[0]


async def test_concurrent_sends_from_two_runtimes_share_the_cursor(
    runtime: Runtime, second_runtime: Runtime, client: httpx.AsyncClient, account: TestAccount
) -> None:
    use_case = await make_use_case(
        client, account, await make_setup(client, account), sender_selection="round_robin"
    )
    media_id = await stored_media(client, account)
    nodes = [ringless(runtime), ringless(second_runtime)]

    sends = await asyncio.gather(
        *(
            nodes[i % 2].create_send(account.id, OTHER_AREA, use_case, media_id=media_id)
            for i in range(20)
        )
    )
    # Every turn was taken once: each sender got exactly half, whatever the interleaving.
    assert Counter(s.from_e164 for s in sends) == {NYC_SENDER: 10, LA_SENDER: 10}


async def test_a_fixed_sender_leaves_the_cursor_alone(
    runtime: Runtime, client: httpx.AsyncClient, account: TestAccount
) -> None:
    setup = await make_setup(client, account)
    fixed = await make_use_case(
        client, account, setup, sender_selection="fixed", sender_number=LA_SENDER
    )
    media_id = await stored_media(client, account)
    service = ringless(runtime)
    for _ in range(3):
        send = await service.create_send(account.id, OTHER_AREA, fixed, media_id=media_id)
        assert send.from_e164 == LA_SENDER
    async with runtime.db.begin() as conn:
        query = select(t.use_cases.c.rr_next).where(t.use_cases.c.id == fixed)
        assert (await conn.execute(query)).scalar_one() == 0
