"""`Registrar.handle` over an in-memory store and a clock the test moves: stale nonces, the
Contact rules, locked subjects answered 403 without a password check, Path kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiosipua.message import SipResponse

from afterbeep.domain.users import AuthFailures, ha1
from afterbeep.telephony.sip.auth import Credentials, DigestSession
from afterbeep.telephony.sip.registrar import (
    Binding,
    DeviceSecret,
    LockoutPolicy,
    Received,
    Registrar,
)

PASSWORD = "correct-horse-battery-9"
DEVICE = DeviceSecret(
    "dev_a", "acc_a", "usr_a", "desk",
    ha1("MD5", "desk", "afterbeep", PASSWORD), ha1("SHA-256", "desk", "afterbeep", PASSWORD),
)  # fmt: skip


@dataclass
class Clock:
    at: datetime = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


@dataclass
class MemoryStore:
    policy: LockoutPolicy
    failures: dict[str, AuthFailures] = field(default_factory=dict)
    contacts: dict[str, tuple[datetime, Received]] = field(default_factory=dict)
    lookups: int = 0

    async def lookup(
        self, auth_username: str, subjects: Sequence[str], now: datetime
    ) -> tuple[DeviceSecret | None, bool]:
        self.lookups += 1
        locked = any(self.policy.locked(self.failures.get(s), now) for s in subjects)
        return (DEVICE if auth_username == DEVICE.auth_username else None), locked

    async def failed(self, subjects: Sequence[str], now: datetime) -> bool:
        for s in subjects:
            self.failures[s] = self.policy.failed(self.failures.get(s), s, now)
        return any(self.policy.locked(self.failures[s], now) for s in subjects)

    async def succeeded(self, subject: str) -> None:
        self.failures.pop(subject, None)

    async def bind(
        self, device: DeviceSecret, bindings: Sequence[Binding] | None, received: Received, now: datetime
    ) -> list[tuple[str, datetime]]:
        if bindings is None:
            self.contacts.clear()
        for b in bindings or ():
            if b.expires == 0:
                self.contacts.pop(b.uri, None)
            else:
                self.contacts[b.uri] = (now + timedelta(seconds=b.expires), received)
        return [(uri, until) for uri, (until, _) in self.contacts.items()]

    async def reap(self, now: datetime) -> int:
        return 0


@dataclass
class Request:
    extra: dict[str, list[str]]
    method: str = "REGISTER"
    uri: str = "sip:afterbeep"
    source: tuple[str, int] = ("192.0.2.7", 5062)
    transport: str = "UDP"

    def headers(self, name: str) -> list[str]:
        return self.extra.get(name.lower(), [])

    @property
    def client_host(self) -> str:
        return self.source[0]

    def respond(self, code: int, reason: str | None = None, headers: Sequence[tuple[str, str]] = ()) -> None:
        raise AssertionError("the test calls handle()")


def registrar(clock: Clock, max_failures: int = 3) -> tuple[Registrar, MemoryStore]:
    policy = LockoutPolicy(max_failures=max_failures, lockout=timedelta(seconds=60))
    store = MemoryStore(policy)
    return Registrar(store, clock, "afterbeep", b"secret" * 6, policy=policy), store


def answer_of(headers: list[tuple[str, str]], password: str = PASSWORD) -> str:
    resp = SipResponse(status_code=401, reason_phrase="Unauthorized")
    for name, value in headers:
        resp.headers.append(name, value)
    answered = DigestSession(Credentials("desk", password)).answer(resp, "REGISTER", "sip:afterbeep")
    assert answered is not None
    return answered[0][1]


CONTACT = {"contact": ["<sip:desk@192.0.2.7:5062>"], "expires": ["600"]}


async def test_a_nonce_past_its_life_is_answered_stale_and_the_fresh_one_works() -> None:
    clock = Clock()
    reg, store = registrar(clock)
    code, _, challenge = await reg.handle(Request(dict(CONTACT)))
    assert code == 401 and all("stale" not in v for _, v in challenge)
    auth = answer_of(challenge)
    clock.at += timedelta(seconds=reg.nonces.ttl + 1)
    code, _, stale = await reg.handle(Request({**CONTACT, "authorization": [auth]}))
    assert code == 401 and all("stale=true" in v for _, v in stale)
    assert store.failures == {} and store.lookups == 0  # not a failure: nothing was checked
    code, _, headers = await reg.handle(Request({**CONTACT, "authorization": [answer_of(stale)]}))
    assert code == 200 and ("Contact", "<sip:desk@192.0.2.7:5062>;expires=600") in headers


async def test_contact_rules_and_path() -> None:
    reg, store = registrar(Clock())
    _, _, challenge = await reg.handle(Request(dict(CONTACT)))
    auth = {"authorization": [answer_of(challenge)]}
    star = await reg.handle(Request({**auth, "contact": ["*"], "expires": ["60"]}))
    assert star[0] == 400
    bad = await reg.handle(Request({**auth, "contact": ["<mailto:x@y>"]}))
    assert bad[0] == 400
    path = {"path": ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]}
    code, _, headers = await reg.handle(Request({**auth, **CONTACT, **path}))
    assert code == 200 and ("Path", "<sip:p1.example;lr>, <sip:p2.example;lr>") in headers
    [(_, received)] = store.contacts.values()
    assert received.path == ("<sip:p1.example;lr>", "<sip:p2.example;lr>")
    assert (received.host, received.port, received.transport) == ("192.0.2.7", 5062, "udp")


async def test_a_locked_name_is_refused_without_checking_and_a_forged_nonce_is_a_failure() -> None:
    clock = Clock()
    reg, store = registrar(clock, max_failures=3)
    _, _, challenge = await reg.handle(Request(dict(CONTACT)))
    wrong = answer_of(challenge, "wrong-horse-battery-9")
    assert (await reg.handle(Request({**CONTACT, "authorization": [wrong]})))[0] == 401
    forged = wrong.replace(wrong.split('nonce="')[1].split('"')[0], "Zm9yZ2Vk")
    assert (await reg.handle(Request({**CONTACT, "authorization": [forged]})))[0] == 401
    assert store.failures["user:desk"].failures == 2
    assert (await reg.handle(Request({**CONTACT, "authorization": [wrong]})))[0] == 403
    right = answer_of(challenge)
    assert (await reg.handle(Request({**CONTACT, "authorization": [right]})))[0] == 403
    assert store.contacts == {}
    clock.at += timedelta(seconds=61)
    assert (await reg.handle(Request({**CONTACT, "authorization": [right]})))[0] == 200
    # a name that is no device's counts against the address only
    unknown = right.replace('username="desk"', 'username="nobody"')
    assert (await reg.handle(Request({**CONTACT, "authorization": [unknown]})))[0] == 401
    assert "user:nobody" not in store.failures and store.failures["addr:192.0.2.7"].failures >= 1
