"""/v1/members and the sign-in behind the web pages, on both backends: the resource's rules,
mailbox owners, sessions (cookie flags, sign out everywhere, a new password), the pages'
body limit, and the undo window of a message deleted from the inbox."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from afterbeep.app import Runtime
from afterbeep.db import tables as t
from afterbeep.domain.errors import NotFound
from afterbeep.domain.members import SESSION_SECONDS, AttemptWindow, safe_next, token_hash
from afterbeep.services import members as members_module
from afterbeep.services.members import MemberService
from afterbeep.services.messages import UNDO_SECONDS, MessageService
from afterbeep.services.ports.storage import ObjectNotFound
from afterbeep.web.limits import MAX_FORM_BYTES
from afterbeep.web.session import SESSION_COOKIE
from tests.api.test_messages import Deposit, FakeClock, assert_problem
from tests.conftest import TestAccount

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its smallest cost for this file's passwords (at the product's cost each hash
    or check is a quarter of a CPU second, and the tests here make a dozen each). A wrong
    password is still refused by Argon2 and the right one accepted;
    test_sessions_expire_and_expired_rows_are_cleared signs in with the product's hasher."""
    monkeypatch.setattr(
        members_module, "PasswordHasher", partial(PasswordHasher, time_cost=1, memory_cost=8, parallelism=1)
    )


async def _member(
    client: httpx.AsyncClient, account: TestAccount, email: str, role: str = "member", **extra: Any
) -> dict[str, Any]:
    body = {"email": email, "name": "Ann Example", "role": role, "password": PASSWORD, **extra}
    response = await client.post("/v1/members", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_members_are_created_listed_changed_and_deleted(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    ann = await _member(client, account, "  Ann@Clinic.Example ", "admin")
    assert ann["email"] == "ann@clinic.example"  # one address, whatever its case
    assert ann["id"].startswith("mem_") and ann["has_password"] is True
    assert ann["user_id"] is None and "password" not in ann and PASSWORD not in str(ann)
    again = await client.post(
        "/v1/members",
        json={"email": "ANN@clinic.example", "name": "Ann", "role": "agent"},
        headers=other_account.headers,
    )
    assert_problem(again, 409, "member-exists")  # an address signs one member in, service-wide

    for bad, field in (
        ({"role": "owner"}, "role"),
        ({"email": "not an address"}, "email"),
        ({"password": "short"}, "password"),
        ({"user_id": "bob"}, "user_id"),
        ({"colour": "red"}, "colour"),
    ):
        body = {"email": "bob@clinic.example", "name": "Bob", "role": "member", **bad}
        problem = assert_problem(
            await client.post("/v1/members", json=body, headers=account.headers), 422
        )
        assert field in str(problem), (bad, problem)
    bob = await _member(client, account, "bob@clinic.example")
    listed = (await client.get("/v1/members", headers=account.headers)).json()["items"]
    assert {m["id"] for m in listed} == {ann["id"], bob["id"]}
    assert (await client.get("/v1/members", headers=other_account.headers)).json()["items"] == []
    assert_problem(await client.get(f"/v1/members/{bob['id']}", headers=other_account.headers), 404)

    changed = await client.patch(
        f"/v1/members/{bob['id']}", json={"name": "Robert", "role": "agent"}, headers=account.headers
    )
    assert changed.status_code == 200 and changed.json()["role"] == "agent", changed.text
    assert_problem(
        await client.patch(f"/v1/members/{bob['id']}", json={"email": "x@y.example"}, headers=account.headers),
        422,
    )
    assert_problem(
        await client.patch(f"/v1/members/{bob['id']}", json={"name": "X"}, headers=other_account.headers),
        404,
    )
    assert (await client.delete(f"/v1/members/{bob['id']}", headers=account.headers)).status_code == 204
    assert_problem(await client.get(f"/v1/members/{bob['id']}", headers=account.headers), 404)


async def test_a_member_is_linked_to_a_user_of_its_own_account(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    async def user(who: TestAccount, username: str) -> str:
        r = await client.post("/v1/users", json={"username": username}, headers=who.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    mine, theirs = await user(account, "201"), await user(other_account, "201")
    body = {"email": "bob@clinic.example", "name": "Bob", "role": "member"}
    for refused in (theirs, "usr_01jg8asp59ps9rtt7azhrhvcre"):  # another account's, unknown
        made = await client.post("/v1/members", json={**body, "user_id": refused}, headers=account.headers)
        problem = assert_problem(made, 422, "unknown-reference")
        assert "user_id" in str(problem) and "no user with this id" in problem["detail"]
    bob = await _member(client, account, "bob@clinic.example", user_id=mine)
    assert bob["user_id"] == mine
    assert (await client.get(f"/v1/members/{bob['id']}", headers=account.headers)).json()["user_id"] == mine
    path = f"/v1/members/{bob['id']}"
    assert_problem(
        await client.patch(path, json={"user_id": theirs}, headers=account.headers), 422, "unknown-reference"
    )
    assert (await client.get(path, headers=account.headers)).json()["user_id"] == mine
    unlinked = await client.patch(path, json={"user_id": None}, headers=account.headers)
    assert unlinked.status_code == 200 and unlinked.json()["user_id"] is None, unlinked.text
    relinked = await client.patch(path, json={"user_id": mine}, headers=account.headers)
    assert relinked.json()["user_id"] == mine


def test_a_member_sees_its_linked_users_mailbox_only() -> None:
    from datetime import UTC, datetime

    from afterbeep.domain.mailboxes import Mailbox
    from afterbeep.domain.members import Member, Role, sees_mailbox

    now = datetime.now(UTC)

    def member(role: Role, user_id: str | None, account_id: str = "acc_a") -> Member:
        return Member("mem_1", account_id, "a@x.example", "A", role, user_id, True, now, now)

    boxes = {
        name: Mailbox(
            f"mbx_{name}", account, name, None, False, 100, None, None, "en", "UTC",
            120, 1, 5, 100, False, now, now,
        )
        for name, account in (("users", "acc_a"), ("other", "acc_a"), ("elsewhere", "acc_b"))
    }
    linked = "mbx_users"
    ann = member(Role.MEMBER, "usr_1")
    assert sees_mailbox(ann, boxes["users"], linked)
    assert not sees_mailbox(ann, boxes["other"], linked)
    assert not sees_mailbox(ann, boxes["users"])  # no user's mailbox given
    assert not sees_mailbox(member(Role.MEMBER, None), boxes["users"], linked)  # not linked
    assert not sees_mailbox(member(Role.AGENT, "usr_1"), boxes["users"], linked)  # agents: none
    assert not sees_mailbox(member(Role.MEMBER, "usr_1", "acc_b"), boxes["users"], linked)
    # Another account's mailbox, even if named as the user's: never.
    assert not sees_mailbox(ann, boxes["elsewhere"], "mbx_elsewhere")
    assert sees_mailbox(member(Role.ADMIN, None), boxes["other"])


async def test_a_mailbox_owner_is_a_member_of_the_account(
    client: httpx.AsyncClient, account: TestAccount, other_account: TestAccount
) -> None:
    ann = await _member(client, account, "ann@clinic.example")
    theirs = await _member(client, other_account, "zed@other.example")
    made = await client.post(
        "/v1/mailboxes", json={"name": "Sales", "owner_member_id": theirs["id"]}, headers=account.headers
    )
    assert_problem(made, 422, "invalid-reference")
    made = await client.post(
        "/v1/mailboxes", json={"name": "Sales", "owner_member_id": ann["id"]}, headers=account.headers
    )
    assert made.status_code == 201 and made.json()["owner_member_id"] == ann["id"], made.text
    box = made.json()["id"]
    cleared = await client.patch(
        f"/v1/mailboxes/{box}", json={"owner_member_id": None}, headers=account.headers
    )
    assert cleared.json()["owner_member_id"] is None
    await client.patch(f"/v1/mailboxes/{box}", json={"owner_member_id": ann["id"]}, headers=account.headers)
    await client.delete(f"/v1/members/{ann['id']}", headers=account.headers)
    after = await client.get(f"/v1/mailboxes/{box}", headers=account.headers)
    assert after.json()["owner_member_id"] is None  # the member is gone; the mailbox stays


async def _csrf(client: httpx.AsyncClient, path: str = "/sign-in") -> str:
    page = await client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


async def test_sessions_are_cookies_kept_on_the_server(
    runtime: Runtime, client: httpx.AsyncClient, account: TestAccount
) -> None:
    ann = await _member(client, account, "ann@clinic.example", "admin")
    signed = await client.post(
        "/sign-in",
        data={"csrf": await _csrf(client), "email": "ann@clinic.example", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/inbox", signed.text
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(SESSION_COOKIE) and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Secure" in cookie  # the proxy said HTTPS
    plain = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with plain:
        other = await plain.post(
            "/sign-in",
            data={"csrf": await _csrf(plain), "email": "ann@clinic.example", "password": PASSWORD},
        )
        assert other.status_code == 303 and "Secure" not in other.headers["set-cookie"]
        assert (await plain.get("/inbox")).status_code == 200

        # A new password (through the API) signs the member out of every browser.
        changed = await client.patch(
            f"/v1/members/{ann['id']}", json={"password": "another long password"}, headers=account.headers
        )
        assert changed.status_code == 200, changed.text
        gone = await plain.get("/inbox")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/sign-in?next=")


async def test_page_bodies_have_their_own_limit(client: httpx.AsyncClient) -> None:
    big = await client.post(
        "/sign-in",
        content=b"email=" + b"a" * (MAX_FORM_BYTES + 1),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413 and big.headers["connection"] == "close"


@pytest.fixture
async def deposit(runtime: Runtime, client: httpx.AsyncClient, account: TestAccount, tmp_path: Path) -> tuple[Deposit, FakeClock]:
    clock = FakeClock()
    assert runtime.store is not None
    service = MessageService(runtime.uow, runtime.store, clock)
    made = await client.post("/v1/mailboxes", json={"name": "Front desk"}, headers=account.headers)
    (tmp_path / "wav").mkdir()
    return Deposit(service, account.id, made.json()["id"], tmp_path / "wav"), clock


async def test_a_message_deleted_from_the_inbox_can_be_restored_until_purged(
    runtime: Runtime, client: httpx.AsyncClient, account: TestAccount, deposit: tuple[Deposit, FakeClock]
) -> None:
    leave, clock = deposit
    service = leave.service
    kept, _ = await leave("call-kept")
    message, _ = await leave("call-trashed", seconds=1.0)
    await service.trash(account.id, message.id)
    assert_problem(await client.get(f"/v1/messages/{message.id}", headers=account.headers), 404)
    listed = await service.list(account.id, leave.mailbox_id)
    assert [m.id for m in listed.items] == [kept.id]
    usage = await service.mailbox_usage(account.id, leave.mailbox_id)
    assert usage.messages == 1 and usage.unread == 1

    restored = await service.restore(account.id, message.id)
    assert restored.id == message.id
    assert len((await service.list(account.id, leave.mailbox_id)).items) == 2
    with pytest.raises(NotFound):
        await service.restore(account.id, message.id)  # nothing deleted to restore

    await service.trash(account.id, message.id)
    clock.advance(seconds=UNDO_SECONDS - 1)
    assert await service.purge_trashed() == 0
    clock.advance(seconds=2)
    assert await service.purge_trashed() == 1
    with pytest.raises(NotFound):
        await service.restore(account.id, message.id)
    assert runtime.store is not None
    with pytest.raises(ObjectNotFound):
        await runtime.store.stat(message.audio_key)
    assert (await service.get(account.id, kept.id)).id == kept.id


def test_attempt_window_and_rules() -> None:
    window = AttemptWindow(limit=2, window=60, max_keys=2)
    assert window.retry_after("a", 0) == 0
    window.record("a", 0)
    window.record("a", 10)
    assert window.retry_after("a", 20) == 40
    assert window.retry_after("a", 60.5) == 0  # the first attempt left the window
    window.record("b", 1)
    window.record("c", 2)  # "a" is dropped: at most two keys are kept
    assert window.retry_after("a", 20) == 0
    assert safe_next("/messages/msg_1?x=1") == "/messages/msg_1?x=1"
    for outside in ("//evil.example/", "https://evil.example/", "/\\evil", "inbox", None):
        assert safe_next(outside) == "/inbox"


async def test_a_link_request_answers_the_same_whether_or_not_it_could_be_sent(
    client: httpx.AsyncClient, account: TestAccount
) -> None:
    await _member(client, account, "ann@clinic.example")
    csrf = await _csrf(client)
    # No mail server listens where these runtimes send (127.0.0.1:25): the link is not sent,
    # and the page says what it says for an unknown address.
    for email in ("ann@clinic.example", "nobody@clinic.example"):
        answer = await client.post("/sign-in/link", data={"csrf": csrf, "email": email})
        assert answer.status_code == 200 and "Check your email" in answer.text, answer.text
    for _ in range(2):
        await client.post("/sign-in/link", data={"csrf": csrf, "email": "ann@clinic.example"})
    limited = await client.post("/sign-in/link", data={"csrf": csrf, "email": "ann@clinic.example"})
    assert limited.status_code == 429 and "Try again in" in limited.text


async def test_sessions_expire_and_expired_rows_are_cleared(
    runtime: Runtime, account: TestAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members_module, "PasswordHasher", PasswordHasher)  # the product's cost
    clock = FakeClock()
    members = MemberService(runtime.uow, clock, public_url="http://afterbeep.test")
    await members.create(
        account.id, {"email": "ann@clinic.example", "name": "Ann", "role": "admin", "password": PASSWORD}
    )
    first = await members.sign_in_password("ann@clinic.example", PASSWORD, source="test")
    assert first is not None and await members.session(first.token) is not None
    assert await members.sign_in_password("ann@clinic.example", "wrong password", source="test") is None
    clock.advance(seconds=SESSION_SECONDS + 1)
    assert await members.session(first.token) is None
    second = await members.sign_in_password("ann@clinic.example", PASSWORD, source="test")
    assert second is not None and await members.session(second.token) is not None
    async with runtime.db.engine.connect() as conn:
        kept = (await conn.execute(select(t.web_sessions.c.token_hash))).scalars().all()
        stored = (await conn.execute(select(t.members.c.password_hash))).scalar_one()
    assert kept == [token_hash(second.token)]  # the expired one is gone
    defaults = PasswordHasher()
    assert stored.startswith(f"$argon2id$v=19$m={defaults.memory_cost},t={defaults.time_cost},")
