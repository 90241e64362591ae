"""The registrar: REGISTER with digest authentication (RFC 3261 §10, §22; RFC 7616; RFC 3327).

The pure parts come first and need no event loop: nonces (`NonceSigner`: HMAC-signed with a
server secret and stamped with their time, so any node of a cluster verifies any node's nonce
without shared state; past `NONCE_TTL` a nonce is answered ``stale=true``), digest checking
(`DigestAnswer.parse`, `digest_matches`: SHA-256 and MD5, qop=auth), the Contact and Expires
rules (`parse_contacts`, `contact_expires`: 60 to 3600 s, 423 below, clamped above), and the
lockout arithmetic (`LockoutPolicy`). `Registrar` is the thin asyncio adapter: it answers each
REGISTER in a task of its own over a `RegistrarStore` (the database, so every node sees the
registrations and the failure counters), and reaps expired contacts periodically.

Failed authentications are counted per auth username and per source address; past the limit
the subject is locked for a while, and every REGISTER it sends is answered 403 without the
password being checked. This follows Kamailio's usual recipe (an htable ban answered
``403 Try later``); Asterisk itself has no lockout and leaves it to fail2ban. A nonce's
counter (nc) is not checked for replays: that would need per-nonce state shared by the nodes;
a nonce lives `NONCE_TTL` seconds only.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import logging
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from aiosipua.headers import parse_auth

from afterbeep.domain.clock import Clock
from afterbeep.domain.users import AuthFailures

log = logging.getLogger(__name__)

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 3600
NONCE_TTL = 300.0  # seconds
ALGORITHMS = ("SHA-256", "MD5")  # offered in this order (RFC 7616 §3.7: preferred first)

# --- nonces -----------------------------------------------------------------------------------


class NonceState(enum.StrEnum):
    VALID = "valid"
    STALE = "stale"  # ours, but too old: answer with a fresh one and stale=true
    INVALID = "invalid"


class NonceSigner:
    """`<time><random>` and an HMAC of them and of the address the challenge went to, base64url:
    verifiable by any node with the secret, and only in a request from that same address (a
    nonce fetched from one address cannot authenticate a request forged from another, which
    matters because a registered device is then rung at the address it registered from)."""

    def __init__(self, secret: bytes, ttl: float = NONCE_TTL) -> None:
        self._key = hashlib.sha256(b"afterbeep-sip-nonce\x00" + secret).digest()
        self.ttl = ttl

    def make(self, now: float, host: str) -> str:
        body = struct.pack(">Q", int(now)) + os.urandom(8)
        return base64.urlsafe_b64encode(body + self._mac(body, host)).decode().rstrip("=")

    def check(self, nonce: str, now: float, host: str) -> NonceState:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return NonceState.INVALID
        if len(raw) != 32:
            return NonceState.INVALID
        body, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(body, host)):
            return NonceState.INVALID
        (stamp,) = struct.unpack(">Q", body[:8])
        if stamp > now + 5:
            return NonceState.INVALID
        return NonceState.STALE if now - stamp > self.ttl else NonceState.VALID

    def _mac(self, body: bytes, host: str) -> bytes:
        return hmac.new(self._key, body + host.encode(), hashlib.sha256).digest()[:16]


def challenge_headers(
    realm: str,
    nonce: str,
    *,
    stale: bool = False,
    proxy: bool = False,
    algorithms: Sequence[str] = ALGORITHMS,
) -> list[tuple[str, str]]:
    """One challenge per algorithm, in `algorithms`' order (401 WWW-Authenticate / 407
    Proxy-Authenticate). Some MD5-only phones (SIPp 3.6, for one) read only the first."""
    name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    suffix = ", stale=true" if stale else ""
    return [
        (name, f'Digest realm="{realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{suffix}')
        for alg in algorithms
    ]


# --- digest answers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestAnswer:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None

    @classmethod
    def parse(cls, value: str) -> DigestAnswer | None:
        """An Authorization (or Proxy-Authorization) Digest value; None when unusable."""
        try:
            parsed = parse_auth(value)
        except (ValueError, IndexError):
            return None
        if parsed.scheme.lower() != "digest":
            return None
        p = {k.strip().lower(): v for k, v in parsed.params.items()}
        algorithm = p.get("algorithm", "MD5").upper()
        qop = p.get("qop")
        required = ("username", "realm", "nonce", "uri", "response")
        if algorithm not in ALGORITHMS or any(not p.get(k) for k in required):
            return None
        if qop is not None and (qop.lower() != "auth" or not p.get("nc") or not p.get("cnonce")):
            return None
        return cls(
            username=p["username"],
            realm=p["realm"],
            nonce=p["nonce"],
            uri=p["uri"],
            response=p["response"].lower(),
            algorithm=algorithm,
            qop=qop.lower() if qop else None,
            nc=p.get("nc"),
            cnonce=p.get("cnonce"),
        )


def _h(algorithm: str, text: str) -> str:
    if algorithm == "SHA-256":
        return hashlib.sha256(text.encode()).hexdigest()
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_matches(answer: DigestAnswer, method: str, ha1: str) -> bool:
    """Whether `answer` was computed from the password whose HA1 (for its algorithm) is `ha1`."""
    ha2 = _h(answer.algorithm, f"{method}:{answer.uri}")
    if answer.qop == "auth":
        text = f"{ha1}:{answer.nonce}:{answer.nc}:{answer.cnonce}:auth:{ha2}"
    else:  # RFC 2069 compatibility: no qop
        text = f"{ha1}:{answer.nonce}:{ha2}"
    return hmac.compare_digest(_h(answer.algorithm, text), answer.response)


# --- contacts and expiry ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactBinding:
    uri: str
    expires: int | None  # the Contact's own `expires` parameter


class IntervalTooBrief(Exception):
    """An Expires under MIN_EXPIRES (423 with Min-Expires)."""


class BadContact(ValueError):
    pass


STAR = "*"


def _split_commas(value: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_contacts(values: Sequence[str]) -> list[ContactBinding] | str:
    """The Contact header values: bindings, or STAR for `Contact: *`."""
    bindings: list[ContactBinding] = []
    for value in values:
        for part in _split_commas(value):
            if part == STAR:
                if len(values) != 1 or bindings:
                    raise BadContact("'*' must be the only Contact")
                return STAR
            if "<" in part:
                start, end = part.find("<"), part.find(">")
                if end < start:
                    raise BadContact("unbalanced <>")
                uri, params = part[start + 1 : end].strip(), part[end + 1 :]
            else:
                uri, _, rest = part.partition(";")
                params = ";" + rest if rest else ""
            if not uri.lower().startswith(("sip:", "sips:")) or len(uri) > 500:
                raise BadContact("a Contact must be a sip: URI of at most 500 characters")
            expires = None
            for param in params.split(";"):
                name, _, val = param.strip().partition("=")
                if name.lower() == "expires":
                    if not val.strip().isdigit():
                        raise BadContact("expires must be a number")
                    expires = int(val.strip())
            bindings.append(ContactBinding(uri, expires))
    return bindings


def contact_expires(
    binding: ContactBinding, header: int | None, min_expires: int = MIN_EXPIRES
) -> int:
    """A binding's lifetime: its own `expires`, else the Expires header, else the default;
    0 removes it; under `min_expires` is refused; over MAX_EXPIRES is clamped."""
    wanted = binding.expires if binding.expires is not None else header
    if wanted is None:
        wanted = DEFAULT_EXPIRES
    if wanted == 0:
        return 0
    if wanted < min_expires:
        raise IntervalTooBrief
    return min(wanted, MAX_EXPIRES)


# --- lockout ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """`max_failures` failed attempts within `window` lock the subject for `lockout` (a source
    address: `address_factor` times as many)."""

    max_failures: int = 20
    window: timedelta = timedelta(minutes=10)
    lockout: timedelta = timedelta(minutes=10)
    # A source address may be many phones behind one NAT: it gets this many times the limit.
    address_factor: int = 5

    def limit(self, subject: str) -> int:
        return self.max_failures * (self.address_factor if subject.startswith("addr:") else 1)

    def locked(self, record: AuthFailures | None, now: datetime) -> bool:
        return record is not None and record.locked_until is not None and now < record.locked_until

    def failed(self, record: AuthFailures | None, subject: str, now: datetime) -> AuthFailures:
        """The record after one more failure (it locks when it reaches the limit)."""
        if record is None or now - record.window_start >= self.window:
            record = AuthFailures(subject, 0, now, None)
        if record.locked_until is not None and now >= record.locked_until:
            record = AuthFailures(subject, 0, now, None)
        count = record.failures + 1
        if count >= self.limit(subject):
            return AuthFailures(subject, 0, now, now + self.lockout)
        return replace(record, failures=count)


def user_subject(auth_username: str) -> str:
    return f"user:{auth_username}"


def address_subject(host: str) -> str:
    return f"addr:{host}"


# --- the asyncio adapter ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceSecret:
    device_id: str
    account_id: str
    user_id: str
    auth_username: str
    ha1_md5: str
    ha1_sha256: str

    def ha1(self, algorithm: str) -> str:
        return self.ha1_sha256 if algorithm == "SHA-256" else self.ha1_md5

    def __repr__(self) -> str:
        return f"DeviceSecret(device_id={self.device_id!r})"


@dataclass(frozen=True, slots=True)
class Binding:
    """A contact to keep for `expires` seconds (0: remove it)."""

    uri: str
    expires: int


@dataclass(frozen=True, slots=True)
class Received:
    host: str
    port: int
    transport: str
    path: tuple[str, ...]
    call_id: str
    cseq: int
    user_agent: str | None


class RegistrarStore(Protocol):
    async def lookup(
        self, auth_username: str, subjects: Sequence[str], now: datetime
    ) -> tuple[DeviceSecret | None, bool]:
        """The device of `auth_username` (None: no such device), and whether any of
        `subjects` is locked out now."""
        ...

    async def failed(self, subjects: Sequence[str], now: datetime) -> bool:
        """Count one failure for each subject; True when one of them is now locked."""
        ...

    async def succeeded(self, subject: str) -> None: ...

    async def bind(
        self, device: DeviceSecret, bindings: Sequence[Binding] | None, received: Received, now: datetime
    ) -> list[tuple[str, datetime]]:
        """Apply `bindings` (None: remove every contact of the device); the device's
        contacts afterwards, with their expiry."""
        ...

    async def reap(self, now: datetime) -> int: ...


class RegisterRequest(Protocol):
    """What the SIP layer hands over for a REGISTER (sip.ua.IncomingRequest)."""

    @property
    def method(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def source(self) -> tuple[str, int]: ...
    @property
    def transport(self) -> str: ...
    def headers(self, name: str) -> list[str]: ...
    @property
    def client_host(self) -> str: ...  # source's host, or the client of a trusted proxy
    def respond(
        self, code: int, reason: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None: ...


Answer = tuple[int, str | None, list[tuple[str, str]]]  # code, reason, headers
LOCKED: Answer = (403, "Forbidden (too many failed attempts, try later)", [])


class Registrar:
    """Answers REGISTERs (`on_register`) and reaps expired contacts (`start`/`stop`)."""

    def __init__(
        self,
        store: RegistrarStore,
        clock: Clock,
        realm: str,
        secret: bytes,
        *,
        policy: LockoutPolicy = LockoutPolicy(),
        reap_every: float = 30.0,
        min_expires: int = MIN_EXPIRES,
        algorithms: Sequence[str] = ALGORITHMS,
        on_registered: Callable[[DeviceSecret], None] | None = None,
    ) -> None:
        self._store = store
        # told after every REGISTER that leaves the device with a contact (message waiting)
        self.on_registered = on_registered
        self._clock = clock
        self.realm = realm
        self.nonces = NonceSigner(secret)
        self.policy = policy
        self._reap_every = reap_every
        self.min_expires = min_expires
        if not algorithms or any(a not in ALGORITHMS for a in algorithms):
            raise ValueError(f"digest algorithms must be among {', '.join(ALGORITHMS)}")
        self.algorithms = tuple(algorithms)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    def on_register(self, request: RegisterRequest) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(request), name="register")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("REGISTER failed", exc_info=task.exception())

    async def _answer(self, request: RegisterRequest) -> None:
        try:
            code, reason, headers = await self.handle(request)
        except Exception:
            request.respond(500, "Server Internal Error")
            raise
        request.respond(code, reason, headers)

    async def handle(self, request: RegisterRequest) -> Answer:
        """The answer to one REGISTER: (code, reason, headers)."""
        now = self._clock.now()
        found = await self.authenticate(
            request.method, request.headers("authorization"), request.client_host, now
        )
        if not isinstance(found, DeviceSecret):
            return found
        return await self._bind(request, found, now)

    async def authenticate(
        self,
        method: str,
        authorizations: Sequence[str],
        host: str,
        now: datetime,
        *,
        proxy: bool = False,
    ) -> DeviceSecret | Answer:
        """The device whose digest answers the request, or the answer to send: a challenge
        (401, or 407 when `proxy`: an INVITE), or 403 while its name or address is locked."""
        stamp = now.timestamp()
        code = 407 if proxy else 401
        answer = self._answer_for_realm(authorizations)
        if answer is None:
            return code, None, self.challenge(stamp, host, proxy=proxy)
        state = self.nonces.check(answer.nonce, stamp, host)
        if state == NonceState.STALE:
            return code, None, self.challenge(stamp, host, stale=True, proxy=proxy)
        subjects = [user_subject(answer.username), address_subject(host)]
        device, locked = await self._store.lookup(answer.username, subjects, now)
        if locked:
            return LOCKED
        if (
            state != NonceState.VALID
            or device is None
            or not digest_matches(answer, method, device.ha1(answer.algorithm))
        ):
            # an unknown name only counts against the address: no row per guessed name
            counted = subjects if device is not None else subjects[1:]
            if await self._store.failed(counted, now):
                return LOCKED
            return code, None, self.challenge(stamp, host, proxy=proxy)
        await self._store.succeeded(subjects[0])
        return device

    def challenge(
        self, stamp: float, host: str, *, stale: bool = False, proxy: bool = False
    ) -> list[tuple[str, str]]:
        nonce = self.nonces.make(stamp, host)
        return challenge_headers(
            self.realm, nonce, stale=stale, proxy=proxy, algorithms=self.algorithms
        )

    def _answer_for_realm(self, values: Sequence[str]) -> DigestAnswer | None:
        for value in values:
            answer = DigestAnswer.parse(value)
            if answer is not None and answer.realm == self.realm:
                return answer
        return None

    async def _bind(self, request: RegisterRequest, device: DeviceSecret, now: datetime) -> Answer:
        header = request.headers("expires")
        expires_header: int | None = None
        if header:
            value = header[0].strip()
            if not value.isdigit():
                return 400, "Bad Expires", []
            expires_header = int(value)
        try:
            contacts = parse_contacts(request.headers("contact"))
        except BadContact as exc:
            return 400, f"Bad Contact ({exc})", []
        bindings: list[Binding] | None
        if contacts == STAR:
            if expires_header != 0:
                return 400, "Contact: * needs Expires: 0", []
            bindings = None
        else:
            assert not isinstance(contacts, str)
            try:
                bindings = [
                    Binding(c.uri, contact_expires(c, expires_header, self.min_expires))
                    for c in contacts
                ]
            except IntervalTooBrief:
                return 423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))]
        cseq_text = (request.headers("cseq") or ["0"])[0].split()[0]
        received = Received(
            host=request.source[0],
            port=request.source[1],
            transport=request.transport.lower(),
            path=tuple(v.strip() for value in request.headers("path") for v in _split_commas(value)),
            call_id=(request.headers("call-id") or [""])[0][:200],
            cseq=int(cseq_text) if cseq_text.isdigit() else 0,
            user_agent=next(iter(request.headers("user-agent")), None),
        )
        current = await self._store.bind(device, bindings, received, now)
        if current and self.on_registered is not None:
            try:
                self.on_registered(device)
            except Exception:
                log.exception("registrar: on_registered failed")
        headers = [
            ("Contact", f"<{uri}>;expires={max(0, int((until - now).total_seconds()))}")
            for uri, until in current
        ]
        headers.append(("Date", now.strftime("%a, %d %b %Y %H:%M:%S GMT")))
        if received.path:
            headers.append(("Path", ", ".join(received.path)))
        return 200, None, headers

    # --- reaping ---

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="reaper")

    async def reap_now(self) -> int:
        return await self._store.reap(self._clock.now())

    async def _reap(self) -> None:
        while True:
            try:
                reaped = await self.reap_now()
                if reaped:
                    log.info("registrar: %d expired contacts removed", reaped)
            except Exception:
                log.exception("registrar: reaping failed")
            await asyncio.sleep(self._reap_every)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        if self._reaper is not None:
            tasks.append(self._reaper)
            self._reaper = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
