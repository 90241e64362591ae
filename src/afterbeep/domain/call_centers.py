"""Call centers: who may call the Telephony API (`/telephony/v1`) and how it routes.

A call center (`cc_...`) has the seed's `callCenterApiName` (unique in the account), the org id
its partner's tokens are issued by (the JWT `iss`; `sub` is the API name), the RSA public key
those RS256 tokens are checked with, and its routing configuration:
- `routes`: per dialed number (E.164), the queue taking live calls and the one taking
  voicemails, so that routing branches on the voice call's `callOrigin` as the seed's flows do;
- `flows`: named routings (`flowDevName` / `flowName` of omniFlow), with the same two queues.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.ids import is_id
from afterbeep.domain.phone import to_e164

API_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
ORG_ID_RE = re.compile(r"^[\x21-\x7e]{1,100}$")
MIN_KEY_BITS = 2048
MAX_PEM_LEN = 10_000
MAX_ROUTES = 200
MAX_FLOWS = 200


@dataclass(frozen=True, slots=True)
class Route:
    """A dialed number's routing: live calls go to `call_queue_id`, voicemails (callOrigin
    Voicemail) to `voicemail_queue_id`; either may be missing (that kind is not routed here)."""

    dialed_number: str
    call_queue_id: str | None = None
    voicemail_queue_id: str | None = None

    def queue_for(self, voicemail: bool) -> str | None:
        return self.voicemail_queue_id if voicemail else self.call_queue_id


@dataclass(frozen=True, slots=True)
class Flow:
    dev_name: str
    call_queue_id: str | None = None
    voicemail_queue_id: str | None = None

    def queue_for(self, voicemail: bool) -> str | None:
        return self.voicemail_queue_id if voicemail else self.call_queue_id


@dataclass(frozen=True, slots=True)
class CallCenter:
    id: str
    account_id: str
    api_name: str
    org_id: str
    public_key_pem: str
    created_at: datetime
    updated_at: datetime
    routes: tuple[Route, ...] = ()
    flows: tuple[Flow, ...] = ()

    def route_for(self, dialed_number: str, default_region: str = "US") -> Route | None:
        """The route of a dialed number, compared in E.164 (or digit by digit when it is not
        a valid number)."""
        wanted = {dialed_number.strip(), _digits(dialed_number)}
        with contextlib.suppress(InvalidInput):
            wanted.add(to_e164(dialed_number, default_region))
        wanted.discard("")
        for route in self.routes:
            if route.dialed_number in wanted or _digits(route.dialed_number) in wanted:
                return route
        return None

    def flow_named(self, dev_name: str) -> Flow | None:
        return next((f for f in self.flows if f.dev_name == dev_name), None)


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def check_api_name(value: str, name: str = "call_center_api_name") -> str:
    if not API_NAME_RE.match(value):
        raise InvalidInput(
            name, "must start with a letter and hold only letters, digits and _ (at most 80)"
        )
    return value


def check_org_id(value: str) -> str:
    if not ORG_ID_RE.match(value):
        raise InvalidInput("org_id", "must be 1 to 100 printable characters without spaces")
    return value


def check_public_key(pem: str) -> str:
    """An RSA public key (PEM, `BEGIN PUBLIC KEY`) of at least 2048 bits, normalised."""
    text = pem.strip()
    if len(text) > MAX_PEM_LEN:
        raise InvalidInput("public_key_pem", "is too long to be a public key")
    try:
        key = load_pem_public_key(text.encode())
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "public_key_pem", "must be a PEM public key (-----BEGIN PUBLIC KEY-----)"
        ) from exc
    if not isinstance(key, RSAPublicKey):
        raise InvalidInput("public_key_pem", "must be an RSA public key (tokens are RS256)")
    if key.key_size < MIN_KEY_BITS:
        raise InvalidInput("public_key_pem", f"must be at least {MIN_KEY_BITS} bits")
    return text + "\n"


def _queue_ids(at: str, call_queue_id: str | None, voicemail_queue_id: str | None) -> None:
    for name, value in (
        ("call_queue_id", call_queue_id),
        ("voicemail_queue_id", voicemail_queue_id),
    ):
        if value is not None and not is_id(value, "q"):
            raise InvalidInput(f"{at}.{name}", "must be a queue id (q_...)")
    if call_queue_id is None and voicemail_queue_id is None:
        raise InvalidInput(at, "needs call_queue_id, voicemail_queue_id or both")


def check_routes(routes: Sequence[Route], default_region: str = "US") -> tuple[Route, ...]:
    """Routes with their dialed numbers in E.164, each number once."""
    if len(routes) > MAX_ROUTES:
        raise InvalidInput("routes", f"must hold at most {MAX_ROUTES} routes")
    found: list[Route] = []
    seen: set[str] = set()
    for n, route in enumerate(routes):
        at = f"routes[{n}]"
        number = to_e164(route.dialed_number, default_region, f"{at}.dialed_number")
        if number in seen:
            raise InvalidInput(f"{at}.dialed_number", "is given twice")
        seen.add(number)
        _queue_ids(at, route.call_queue_id, route.voicemail_queue_id)
        found.append(Route(number, route.call_queue_id, route.voicemail_queue_id))
    return tuple(found)


def check_flows(flows: Sequence[Flow]) -> tuple[Flow, ...]:
    if len(flows) > MAX_FLOWS:
        raise InvalidInput("flows", f"must hold at most {MAX_FLOWS} flows")
    seen: set[str] = set()
    for n, flow in enumerate(flows):
        at = f"flows[{n}]"
        check_api_name(flow.dev_name, f"{at}.dev_name")
        if flow.dev_name in seen:
            raise InvalidInput(f"{at}.dev_name", "is given twice")
        seen.add(flow.dev_name)
        _queue_ids(at, flow.call_queue_id, flow.voicemail_queue_id)
    return tuple(flows)


def queue_ids(center: CallCenter) -> set[str]:
    """Every queue its routing names."""
    items: list[Route | Flow] = [*center.routes, *center.flows]
    return {q for item in items for q in (item.call_queue_id, item.voicemail_queue_id) if q}
