"""/v1/account: the caller's own account and its defaults (timezone, language)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.domain.accounts import Account

router = APIRouter(tags=["account"])

_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"content": {"application/problem+json": {}}, "description": "invalid-input"}
}


class AccountOut(BaseModel):
    id: str
    name: str
    timezone: str = Field(description="IANA; used where a schedule or mailbox has none")
    language: str = Field(description="BCP 47, such as `en` or `en-US`")
    allow_device_outbound: bool = Field(
        description="whether its devices may dial numbers outside afterbeep"
    )

    device_outbound_setup_id: str | None = Field(
        default=None,
        description="the telephony setup (setup_...) its devices dial outside numbers through",
    )

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            name=account.name,
            timezone=account.timezone,
            language=account.language,
            allow_device_outbound=account.allow_device_outbound,
            device_outbound_setup_id=account.device_outbound_setup_id,
        )


@with_config(ConfigDict(extra="forbid"))
class AccountUpdate(TypedDict, total=False):
    """Only the fields given change."""

    timezone: Annotated[str, Field(max_length=64, description="IANA, e.g. `America/New_York`")]
    language: Annotated[str, Field(max_length=35, description="BCP 47, e.g. `en`, `es`, `en-US`")]
    allow_device_outbound: bool
    device_outbound_setup_id: Annotated[str | None, Field(max_length=40)]


@router.get("/account")
async def get_account(account: CurrentAccount) -> AccountOut:
    return AccountOut.of(account)


@router.patch("/account", responses=_INVALID)
async def update_account(body: AccountUpdate, svc: Svc, account: CurrentAccount) -> AccountOut:
    changed = await svc.accounts.update_settings(
        account.id, body.get("timezone"), body.get("language")
    )
    if "allow_device_outbound" in body:
        changed = await svc.accounts.allow_device_outbound(
            account.id, body["allow_device_outbound"]
        )
    if "device_outbound_setup_id" in body:
        changed = await svc.accounts.device_outbound_setup(
            account.id, body["device_outbound_setup_id"]
        )
    return AccountOut.of(changed)
