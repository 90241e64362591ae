"""Connectors to outside contact centers (`/v1/connectors`), and the `Targets` the voicemail
sequence runs against: a connector's API over HTTP, or afterbeep's own in process.

A connector's RS256 private key (PKCS#8 or traditional PEM, RSA of 2048 bits or more) is kept in
the secret store; the API shows only its public key, to register on the far end's call center.
With no key given, a 2048-bit key pair is generated. The base URL's host is checked against the
network policy when saved (and again on every connection, by the HTTP adapter).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from afterbeep.domain import connectors as rules
from afterbeep.domain.clock import Clock
from afterbeep.domain.connectors import Connector
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.voicemail_sequence import Delivery
from afterbeep.services.contact_center import TelephonyApi
from afterbeep.services.netguard import HostGuard
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.telephony_api import LocalTelephonyApi, TelephonyApiService
from afterbeep.services.voicemail_sequence import (
    Observer,
    RecordingApi,
    Target,
    TargetUnavailable,
)

log = logging.getLogger("afterbeep.connectors")

MIN_KEY_BITS = 2048
KEY_PEM_MAX = 16 * 1024
_RESOURCE = "connector"


@dataclass(frozen=True, slots=True)
class ConnectorView:
    connector: Connector
    public_key_pem: str | None


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    if not isinstance(pem, str) or len(pem) > KEY_PEM_MAX:
        raise InvalidInput("private_key_pem", f"must be a PEM text of at most {KEY_PEM_MAX} characters")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("private_key_pem", "is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput("private_key_pem", "must be an RSA key (RS256)")
    if key.key_size < MIN_KEY_BITS:
        raise InvalidInput("private_key_pem", f"must be at least {MIN_KEY_BITS} bits")
    return key


def _new_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _check_fields(fields: Mapping[str, object]) -> None:
    for name in fields:
        if name not in rules.EDITABLE:
            raise InvalidInput(name, "is not a connector field that can be set")
    for name, value in fields.items():
        if value is None and name not in rules.NULLABLE:
            raise InvalidInput(name, "must not be null")


class ConnectorService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, guard: HostGuard | None = None) -> None:
        self._uow = uow
        self._clock = clock
        self._guard = guard

    async def create(
        self, account_id: str, fields: Mapping[str, object], private_key_pem: str | None
    ) -> ConnectorView:
        _check_fields(fields)
        for required in ("name", "base_url", "call_center_api_name", "org_id"):
            if required not in fields:
                raise InvalidInput(required, "is required")
        now = self._clock.now()
        connector_id = new_id("ccx")
        connector = rules.check_connector(
            Connector(
                id=connector_id,
                account_id=account_id,
                created_at=now,
                updated_at=now,
                key_ref=rules.key_ref(connector_id),
                **{"audience": None, "provider_name": None, "fallback_queue": None, **fields},  # type: ignore[arg-type]
            )
        )
        await self._check_host(connector)
        if private_key_pem is None:
            private_key_pem = await asyncio.to_thread(_new_key_pem)
        else:
            _private_key(private_key_pem)
        async with self._uow() as uow:
            assert connector.key_ref is not None
            await uow.secrets.put(account_id, connector.key_ref, private_key_pem)
            await uow.cc_connectors.add(connector)
        log.info("connector created", extra={"connector_id": connector.id, "account_id": account_id})
        return ConnectorView(connector, public_key_pem(private_key_pem))

    async def get(self, account_id: str, connector_id: str) -> ConnectorView:
        async with self._uow() as uow:
            connector = await self._connector(uow, account_id, connector_id)
            key = await self._key(uow, connector)
        return ConnectorView(connector, public_key_pem(key) if key else None)

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[ConnectorView]:
        async with self._uow() as uow:
            page = await uow.cc_connectors.list(account_id, cursor, limit)
            keys = [await self._key(uow, c) for c in page.items]
        views = [
            ConnectorView(c, public_key_pem(k) if k else None)
            for c, k in zip(page.items, keys, strict=True)
        ]
        return Page(views, page.next_cursor)

    async def update(
        self,
        account_id: str,
        connector_id: str,
        changes: Mapping[str, object],
        private_key_pem: str | None = None,
    ) -> ConnectorView:
        _check_fields(changes)
        if private_key_pem is not None:
            _private_key(private_key_pem)
        async with self._uow() as uow:
            current = await self._connector(uow, account_id, connector_id)
        updated = rules.check_connector(
            dataclasses.replace(current, updated_at=self._clock.now(), **changes)  # type: ignore[arg-type]
        )
        if updated.base_url != current.base_url:
            await self._check_host(updated)
        async with self._uow() as uow:
            await self._connector(uow, account_id, connector_id)
            ref = updated.key_ref or rules.key_ref(connector_id)
            updated = dataclasses.replace(updated, key_ref=ref)
            if private_key_pem is not None:
                await uow.secrets.put(account_id, ref, private_key_pem)
            await uow.cc_connectors.update(updated)
            key = await self._key(uow, updated)
        return ConnectorView(updated, public_key_pem(key) if key else None)

    async def delete(self, account_id: str, connector_id: str) -> None:
        """Refused (`Conflict`) while a mailbox sends its messages through it."""
        async with self._uow() as uow:
            connector = await self._connector(uow, account_id, connector_id)
            users = await uow.cc_connectors.mailboxes_using(account_id, connector_id)
            if users:
                raise Conflict(
                    f"connector {connector_id!r} is used by mailboxes {', '.join(sorted(users)[:5])}",
                    "connector-in-use",
                )
            if connector.key_ref:
                await uow.secrets.delete(account_id, connector.key_ref)
            await uow.cc_connectors.delete(account_id, connector_id)

    async def _check_host(self, connector: Connector) -> None:
        if self._guard is not None:
            await self._guard.check("base_url", rules.host_of(connector.base_url))

    async def _connector(self, uow: UnitOfWork, account_id: str, connector_id: str) -> Connector:
        if not is_id(connector_id, "ccx"):
            raise NotFound(_RESOURCE, connector_id[:40])
        found = await uow.cc_connectors.get(account_id, connector_id)
        if found is None:
            raise NotFound(_RESOURCE, connector_id)
        return found

    @staticmethod
    async def _key(uow: UnitOfWork, connector: Connector) -> str | None:
        if connector.key_ref is None:
            return None
        return await uow.secrets.get(connector.account_id, connector.key_ref)


# What builds a connector's API over HTTP (afterbeep.connectors.http), and what opens afterbeep's
# own Telephony API for a delivery (in process; None on a node without it).
HttpApiFactory = Callable[[Connector, str, Observer], TelephonyApi]
LocalTarget = Callable[[Delivery], Awaitable[Target]]


class SequenceTargets:
    """`Targets` of the voicemail sequence: the delivery's connector, else afterbeep's own API."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        http_api: HttpApiFactory,
        local: LocalTarget | None = None,
    ) -> None:
        self._uow = uow
        self._http_api = http_api
        self.local = local

    @asynccontextmanager
    async def open(self, delivery: Delivery, observer: Observer) -> AsyncIterator[Target]:
        if delivery.connector_id is not None:
            async with self._uow() as uow:
                connector = await uow.cc_connectors.get(delivery.account_id, delivery.connector_id)
                key = (
                    await uow.secrets.get(connector.account_id, connector.key_ref)
                    if connector is not None and connector.key_ref
                    else None
                )
            if connector is None:
                raise TargetUnavailable(f"connector {delivery.connector_id} no longer exists")
            if key is None:
                raise TargetUnavailable(f"connector {connector.id} has no private key")
            api = self._http_api(connector, key, observer)
            yield Target(api, connector.call_center_api_name, connector.fallback_queue)
            return
        if self.local is None:
            raise TargetUnavailable(
                "afterbeep's own Telephony API is not available on this node", retryable=True
            )
        target = await self.local(delivery)
        yield dataclasses.replace(target, api=RecordingApi(target.api, observer))


class LocalTargets:
    """afterbeep's own Telephony API in process (`LocalTelephonyApi`), as the mailbox's call
    center, or the account's only one when the mailbox names none."""

    def __init__(self, uow: UnitOfWorkFactory, service: TelephonyApiService) -> None:
        self._uow = uow
        self._service = service

    async def __call__(self, delivery: Delivery) -> Target:
        account_id = delivery.account_id
        async with self._uow() as uow:
            if delivery.call_center_id is not None:
                center = await uow.call_centers.get(account_id, delivery.call_center_id)
                if center is None:
                    raise TargetUnavailable(f"call center {delivery.call_center_id} no longer exists")
            else:
                page = await uow.call_centers.list(account_id, None, 2)
                if len(page.items) != 1:
                    raise TargetUnavailable(
                        "the mailbox names no call center (call_center_id) and the account has "
                        + ("none" if not page.items else "several")
                    )
                center = page.items[0]
        api = LocalTelephonyApi(self._service, account_id, center.id)
        return Target(api, center.api_name)
