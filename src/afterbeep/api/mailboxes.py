"""/v1/mailboxes routes: mailbox settings, the PIN, and a mailbox's messages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.messages import MessageOut, SearchQuery, message_list
from afterbeep.api.query_params import MessagesAfter, MessagesBefore
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain import mailboxes as rules
from afterbeep.domain.clock import iso
from afterbeep.domain.messages import Folder
from afterbeep.services.mailboxes import MailboxView
from afterbeep.services.ports.transcripts import MessageFilter

router = APIRouter(tags=["mailboxes"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}
_INVALID: dict[int | str, dict[str, Any]] = {422: _PROBLEM}

Name = Annotated[str, Field(min_length=1, max_length=rules.NAME_MAX)]
MediaId = Annotated[str, Field(min_length=1, max_length=40)]
Email = Annotated[str, Field(max_length=rules.EMAIL_MAX, description="checked for syntax")]
Language = Annotated[
    str, Field(min_length=2, max_length=rules.LANGUAGE_MAX, description="BCP 47 tag")
]
TimeZone = Annotated[str, Field(min_length=1, max_length=64, description="IANA time zone")]
QuotaMb = Annotated[int, Field(ge=rules.QUOTA_MB[0], le=rules.QUOTA_MB[1])]
MaxSeconds = Annotated[int, Field(ge=rules.MAX_MESSAGE_SECONDS[0], le=rules.MAX_MESSAGE_SECONDS[1])]
MinSeconds = Annotated[int, Field(ge=rules.MIN_MESSAGE_SECONDS[0], le=rules.MIN_MESSAGE_SECONDS[1])]
SilenceSeconds = Annotated[int, Field(ge=rules.SILENCE_SECONDS[0], le=rules.SILENCE_SECONDS[1])]
MemberId = Annotated[
    str, Field(min_length=1, max_length=40, description="a member of role `member` sees it in the inbox")
]
TeamRef = Annotated[str, Field(min_length=1, max_length=40)]
MaxMessages = Annotated[int, Field(ge=rules.MAX_MESSAGES[0], le=rules.MAX_MESSAGES[1])]


class MailboxCreate(StrictModel):
    """A new mailbox; settings left out take their defaults."""

    name: Name
    greeting_media_id: MediaId | None = None
    skip_instructions: bool = False
    quota_mb: QuotaMb = 200
    notify_email: Email | None = None
    language: Language = "en"
    timezone: TimeZone = "UTC"
    max_message_seconds: MaxSeconds = 180
    min_message_seconds: MinSeconds = 2
    silence_seconds: SilenceSeconds = 8
    max_messages: MaxMessages = 100
    attach_audio: bool = True
    owner_member_id: MemberId | None = None
    busy_greeting_media_id: MediaId | None = None
    temp_greeting_media_id: MediaId | None = None
    name_media_id: MediaId | None = None
    skip_pin_from_own_device: bool = False
    queue_id: TeamRef | None = None
    call_center_id: TeamRef | None = None
    connector_id: TeamRef | None = None


@with_config(ConfigDict(extra="forbid"))
class MailboxUpdate(TypedDict, total=False):
    """Only the settings given change. The greetings, `notify_email` and `owner_member_id`
    may be null."""

    name: Name
    greeting_media_id: MediaId | None
    skip_instructions: bool
    quota_mb: QuotaMb
    notify_email: Email | None
    language: Language
    timezone: TimeZone
    max_message_seconds: MaxSeconds
    min_message_seconds: MinSeconds
    silence_seconds: SilenceSeconds
    max_messages: MaxMessages
    attach_audio: bool
    owner_member_id: MemberId | None
    busy_greeting_media_id: MediaId | None
    temp_greeting_media_id: MediaId | None
    name_media_id: MediaId | None
    skip_pin_from_own_device: bool
    queue_id: TeamRef | None
    call_center_id: TeamRef | None
    connector_id: TeamRef | None


class PinIn(StrictModel):
    # The pattern is documented, not enforced here: `check_pin` answers with `weak-pin`.
    pin: str = Field(
        max_length=64,
        description="4 to 10 digits, not trivial (1111, 1234, 9876)",
        json_schema_extra={"pattern": "^[0-9]{4,10}$"},
    )


class UsageOut(BaseModel):
    messages: int
    bytes: int
    full: bool = Field(
        description="max_messages or quota_mb reached: callers cannot leave a message"
    )


class MailboxOut(BaseModel):
    id: str
    account_id: str
    name: str
    greeting_media_id: str | None
    skip_instructions: bool
    quota_mb: int
    notify_email: str | None
    pin_secret_ref: str | None
    language: str
    timezone: str
    max_message_seconds: int
    min_message_seconds: int
    silence_seconds: int
    max_messages: int
    attach_audio: bool
    owner_member_id: str | None = Field(description="the member (mem_...) whose inbox shows it")
    busy_greeting_media_id: str | None = Field(
        description="played to callers sent here busy (once a ring can end busy into voicemail)"
    )
    temp_greeting_media_id: str | None = Field(
        description="while set, played instead of the unavailable greeting (`greeting_media_id`)"
    )
    name_media_id: str | None = Field(
        default=None, description="the owner's recorded name, said by the system greeting"
    )
    skip_pin_from_own_device: bool = Field(
        default=False, description="`*97` from the owner's own phone opens the menu without the PIN"
    )
    queue_id: str | None = Field(
        default=None,
        description="a team's mailbox: each message becomes a voice call routed to this queue",
    )
    call_center_id: str | None = Field(
        default=None, description="the call center (cc_...) of afterbeep's Telephony API it uses"
    )
    connector_id: str | None = Field(
        default=None,
        description="an outside contact center (ccx_...) that receives its messages instead",
    )
    created_at: str
    updated_at: str
    usage: UsageOut

    @classmethod
    def of(cls, view: MailboxView) -> MailboxOut:
        m = view.mailbox
        return cls(
            id=m.id,
            account_id=m.account_id,
            name=m.name,
            greeting_media_id=m.greeting_media_id,
            skip_instructions=m.skip_instructions,
            quota_mb=m.quota_mb,
            notify_email=m.notify_email,
            pin_secret_ref=m.pin_secret_ref,
            language=m.language,
            timezone=m.timezone,
            max_message_seconds=m.max_message_seconds,
            min_message_seconds=m.min_message_seconds,
            silence_seconds=m.silence_seconds,
            max_messages=m.max_messages,
            attach_audio=m.attach_audio,
            owner_member_id=m.owner_member_id,
            busy_greeting_media_id=m.busy_greeting_media_id,
            temp_greeting_media_id=m.temp_greeting_media_id,
            name_media_id=m.name_media_id,
            skip_pin_from_own_device=m.skip_pin_from_own_device,
            queue_id=m.queue_id,
            call_center_id=m.call_center_id,
            connector_id=m.connector_id,
            created_at=iso(m.created_at),
            updated_at=iso(m.updated_at),
            usage=UsageOut(messages=view.usage.messages, bytes=view.usage.bytes, full=view.full),
        )


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]


@router.post("/mailboxes", status_code=201, responses=_INVALID)
async def create_mailbox(
    body: MailboxCreate, svc: Svc, account: CurrentAccount, response: Response
) -> MailboxOut:
    view = await svc.mailboxes.create(account.id, body.model_dump(exclude_unset=True))
    response.headers["Location"] = f"/v1/mailboxes/{view.mailbox.id}"
    return MailboxOut.of(view)


@router.get("/mailboxes", responses=_INVALID)
async def list_mailboxes(
    svc: Svc, account: CurrentAccount, limit: Limit = 50, cursor: Cursor = None
) -> ListResponse[MailboxOut]:
    page = await svc.mailboxes.list(account.id, cursor, limit)
    return ListResponse[MailboxOut](
        items=[MailboxOut.of(view) for view in page.items], next_cursor=page.next_cursor
    )


@router.get("/mailboxes/{mailbox_id}", responses=_NOT_FOUND)
async def get_mailbox(mailbox_id: str, svc: Svc, account: CurrentAccount) -> MailboxOut:
    return MailboxOut.of(await svc.mailboxes.get(account.id, mailbox_id))


@router.patch("/mailboxes/{mailbox_id}", responses={**_NOT_FOUND, **_INVALID})
async def update_mailbox(
    mailbox_id: str, body: MailboxUpdate, svc: Svc, account: CurrentAccount
) -> MailboxOut:
    return MailboxOut.of(await svc.mailboxes.update(account.id, mailbox_id, body))


@router.delete(
    "/mailboxes/{mailbox_id}",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 409: {**_PROBLEM, "description": "a number routes calls to it"}},
)
async def delete_mailbox(mailbox_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """Deletes the mailbox with its messages, their audio and its PIN."""
    await svc.mailboxes.delete(account.id, mailbox_id)
    return Response(status_code=204)


@router.put(
    "/mailboxes/{mailbox_id}/pin",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 422: {**_PROBLEM, "description": "weak-pin or validation-failed"}},
)
async def set_pin(mailbox_id: str, body: PinIn, svc: Svc, account: CurrentAccount) -> Response:
    """Sets the PIN used to reach the mailbox by phone. Only its Argon2 hash is kept."""
    await svc.mailboxes.set_pin(account.id, mailbox_id, body.pin)
    return Response(status_code=204)


@router.get("/mailboxes/{mailbox_id}/messages", responses={**_NOT_FOUND, **_INVALID})
async def list_messages(
    mailbox_id: str,
    svc: Svc,
    account: CurrentAccount,
    folder: Folder | None = None,
    created_after: MessagesAfter = None,
    created_before: MessagesBefore = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    q: SearchQuery = None,
) -> ListResponse[MessageOut]:
    """The mailbox's messages, newest first; with `q`, those whose transcript holds every word
    of it, best match first."""
    if q is not None:
        where = MessageFilter(mailbox_id, folder, created_after, created_before)
        found = await svc.transcripts.search_messages(
            account.id, q, where, cursor=cursor, limit=limit
        )
        return message_list(found)
    page = await svc.messages.list(
        account.id,
        mailbox_id,
        folder=folder,
        created_after=created_after,
        created_before=created_before,
        cursor=cursor,
        limit=limit,
    )
    return message_list(page)
