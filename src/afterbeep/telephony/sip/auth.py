"""Outbound digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): MD5 and SHA-256, qop=auth.

The digest arithmetic and header codec are aiosipua's (`build_credentials`, `parse_auth`,
`stringify_auth`, checked against the RFC 7616 §3.9.1 vectors in tests/sip). What is ours:
challenge parsing with case-insensitive parameter names, choosing SHA-256 over MD5 when a
server offers both, nonce counting, and the once-per-challenge rule — a challenge whose
nonce we already answered (and that is not ``stale``) means the credentials were refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from aiosipua.auth import SipDigestAuth, build_credentials
from aiosipua.headers import AuthChallenge, parse_auth, stringify_auth
from aiosipua.message import SipResponse

_ALGORITHM_PREFERENCE = {"SHA-256": 2, "MD5": 1}


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str
    realm: str | None = None  # answer only this realm when set

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', realm={self.realm!r})"


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    realm: str
    nonce: str
    algorithm: str
    qop: tuple[str, ...]
    opaque: str | None
    stale: bool
    proxy: bool  # 407 Proxy-Authenticate rather than 401 WWW-Authenticate

    @classmethod
    def parse(cls, value: str, *, proxy: bool) -> DigestChallenge | None:
        """A Digest challenge header value, or None for another scheme or a bad challenge."""
        parsed = parse_auth(value)
        if parsed.scheme.lower() != "digest":
            return None
        params = {k.strip().lower(): v for k, v in parsed.params.items()}
        nonce = params.get("nonce")
        algorithm = params.get("algorithm", "MD5").upper()
        if not nonce or algorithm not in _ALGORITHM_PREFERENCE:
            return None
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        if qop and "auth" not in qop:
            return None
        return cls(
            realm=params.get("realm", ""),
            nonce=nonce,
            algorithm=algorithm,
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            proxy=proxy,
        )

    def _as_aiosipua(self) -> AuthChallenge:
        params = {"realm": self.realm, "nonce": self.nonce, "algorithm": self.algorithm}
        if self.qop:
            params["qop"] = ",".join(self.qop)
        if self.opaque is not None:
            params["opaque"] = self.opaque
        return AuthChallenge(scheme="Digest", params=params)


def authorization_value(
    credentials: Credentials,
    challenge: DigestChallenge,
    method: str,
    uri: str,
    *,
    nonce_count: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization header value answering ``challenge``."""
    answer = build_credentials(
        SipDigestAuth(credentials.username, credentials.password),
        challenge._as_aiosipua(),
        method,
        uri,
        nonce_count=nonce_count,
        cnonce=cnonce if cnonce is not None else os.urandom(8).hex(),
    )
    if answer is None:  # pragma: no cover - DigestChallenge.parse filters what it refuses
        raise ValueError("challenge cannot be answered")
    return str(stringify_auth(answer))


def challenges_of(response: SipResponse) -> list[DigestChallenge]:
    proxy = response.status_code == 407
    name = "proxy-authenticate" if proxy else "www-authenticate"
    found = [DigestChallenge.parse(v, proxy=proxy) for v in response.headers.get(name)]
    return [c for c in found if c is not None]


@dataclass
class DigestSession:
    """Answers the challenges met by one chain of requests (an INVITE and its retries)."""

    credentials: Credentials
    _answered: set[tuple[str, str]] = field(default_factory=set)
    _nonce_counts: dict[str, int] = field(default_factory=dict)

    def answer(self, response: SipResponse, method: str, uri: str) -> list[tuple[str, str]] | None:
        """Headers to add to the retried request, or None if we must give up.

        Gives up when no challenge is usable or every usable one carries a nonce we already
        answered without ``stale=true`` (our credentials were refused).
        """
        best: dict[str, DigestChallenge] = {}
        for ch in challenges_of(response):
            if self.credentials.realm is not None and ch.realm != self.credentials.realm:
                continue
            current = best.get(ch.realm)
            if current is None or (
                _ALGORITHM_PREFERENCE[ch.algorithm] > _ALGORITHM_PREFERENCE[current.algorithm]
            ):
                best[ch.realm] = ch
        headers: list[tuple[str, str]] = []
        for ch in best.values():
            key = (ch.realm, ch.nonce)
            if key in self._answered and not ch.stale:
                return None
            self._answered.add(key)
            nc = self._nonce_counts.get(ch.nonce, 0) + 1
            self._nonce_counts[ch.nonce] = nc
            name = "Proxy-Authorization" if ch.proxy else "Authorization"
            headers.append(
                (name, authorization_value(self.credentials, ch, method, uri, nonce_count=nc))
            )
        return headers or None
