"""WebhookService: an account's webhook subscriptions and their delivery log.

Deliveries are queued by `EventOutbox.publish` (in the transaction of the change they report)
and sent by `afterbeep.notify.webhooks.WebhookDispatcher`.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.webhooks import (
    Delivery,
    Webhook,
    check_events,
    check_secret,
    check_url,
    new_secret,
)
from afterbeep.services.netguard import HostGuard
from afterbeep.services.ports import Page, UnitOfWorkFactory


class WebhookService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        allowed_hosts: frozenset[str] = frozenset(),
        guard: HostGuard | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._allowed_hosts = allowed_hosts
        self._guard = guard

    async def create(
        self, account_id: str, url: str, events: Iterable[str], secret: str | None = None
    ) -> Webhook:
        """The new subscription; its `secret` is shown to the caller only here."""
        url = check_url(url, self._allowed_hosts)
        if self._guard is not None:
            await self._guard.check("url", urlsplit(url).hostname or "")
        webhook = Webhook(
            id=new_id("wh"),
            account_id=account_id,
            url=url,
            events=check_events(events),
            secret=new_secret() if secret is None else check_secret(secret),
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            await uow.webhooks.add(webhook)
        return webhook

    async def get(self, account_id: str, webhook_id: str) -> Webhook:
        _check_id(webhook_id)
        async with self._uow() as uow:
            found = await uow.webhooks.get(account_id, webhook_id)
        if found is None:
            raise NotFound("webhook", webhook_id)
        return found

    async def list(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Webhook]:
        async with self._uow() as uow:
            return await uow.webhooks.list(account_id, cursor, limit)

    async def delete(self, account_id: str, webhook_id: str) -> None:
        _check_id(webhook_id)
        async with self._uow() as uow:
            if not await uow.webhooks.delete(account_id, webhook_id):
                raise NotFound("webhook", webhook_id)

    async def deliveries(
        self, account_id: str, webhook_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Delivery]:
        _check_id(webhook_id)
        async with self._uow() as uow:
            if await uow.webhooks.get(account_id, webhook_id) is None:
                raise NotFound("webhook", webhook_id)
            return await uow.webhooks.deliveries(account_id, webhook_id, cursor, limit)


def _check_id(webhook_id: str) -> None:
    # Not a webhook id at all: it cannot exist, and must not reach a query.
    if not is_id(webhook_id, "wh"):
        raise NotFound("webhook", webhook_id[:40])
