"""SQL repositories of the Telephony API: call centers, voice calls, transcript entries, JWT ids."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.call_centers import CallCenter, Flow, Route
from afterbeep.domain.voice_calls import (
    CallOrigin,
    InitiationMethod,
    Participant,
    SenderType,
    TranscriptMessage,
    VoiceCall,
)
from afterbeep.services.ports import Page

_CC = t.call_centers
_VC = t.voice_calls
_M = t.voice_call_messages
_J = t.telephony_jtis


def _center(row: Any) -> CallCenter:
    return CallCenter(
        id=row.id,
        account_id=row.account_id,
        api_name=row.api_name,
        org_id=row.org_id,
        public_key_pem=row.public_key_pem,
        created_at=row.created_at,
        updated_at=row.updated_at,
        routes=tuple(
            Route(r["dialed_number"], r.get("call_queue_id"), r.get("voicemail_queue_id"))
            for r in row.routes
        ),
        flows=tuple(
            Flow(f["dev_name"], f.get("call_queue_id"), f.get("voicemail_queue_id"))
            for f in row.flows
        ),
    )


def _center_values(center: CallCenter) -> dict[str, Any]:
    return {
        "api_name": center.api_name,
        "org_id": center.org_id,
        "public_key_pem": center.public_key_pem,
        "routes": [
            {
                "dialed_number": r.dialed_number,
                "call_queue_id": r.call_queue_id,
                "voicemail_queue_id": r.voicemail_queue_id,
            }
            for r in center.routes
        ],
        "flows": [
            {
                "dev_name": f.dev_name,
                "call_queue_id": f.call_queue_id,
                "voicemail_queue_id": f.voicemail_queue_id,
            }
            for f in center.flows
        ],
        "updated_at": center.updated_at,
    }


class SqlCallCenterRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _name_taken(self, center: CallCenter) -> bool:
        query = select(_CC.c.id).where(
            _CC.c.account_id == center.account_id,
            _CC.c.api_name == center.api_name,
            _CC.c.id != center.id,
        )
        return (await self._conn.execute(query)).first() is not None

    async def add(self, center: CallCenter) -> bool:
        if await self._name_taken(center):
            return False
        values = {
            **_center_values(center),
            "id": center.id,
            "account_id": center.account_id,
            "created_at": center.created_at,
        }
        try:
            await self._conn.execute(insert(_CC).values(**values))
        except IntegrityError:
            return False
        return True

    async def get(self, account_id: str, center_id: str) -> CallCenter | None:
        query = select(_CC).where(_CC.c.id == center_id, _CC.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _center(row) if row else None

    async def by_api_name(self, account_id: str, api_name: str) -> CallCenter | None:
        query = select(_CC).where(_CC.c.account_id == account_id, _CC.c.api_name == api_name)
        row = (await self._conn.execute(query)).first()
        return _center(row) if row else None

    async def by_issuer(self, org_id: str, api_name: str) -> builtins.list[CallCenter]:
        query = (
            select(_CC)
            .where(_CC.c.org_id == org_id, _CC.c.api_name == api_name)
            .order_by(_CC.c.id)
            .limit(20)
        )
        return [_center(row) for row in (await self._conn.execute(query)).all()]

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[CallCenter]:
        query = page_query(
            select(_CC).where(_CC.c.account_id == account_id), _CC.c.id, cursor, limit
        )
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_center(r) for r in rows], next_cursor)

    async def update(self, center: CallCenter) -> bool:
        if await self._name_taken(center):
            return False
        await self._conn.execute(
            update(_CC)
            .where(_CC.c.id == center.id, _CC.c.account_id == center.account_id)
            .values(**_center_values(center))
        )
        return True

    async def delete(self, account_id: str, center_id: str) -> bool:
        await self._conn.execute(delete(_J).where(_J.c.call_center_id == center_id))
        result = await self._conn.execute(
            delete(_CC).where(_CC.c.id == center_id, _CC.c.account_id == account_id)
        )
        return bool(result.rowcount)

    async def has_voice_calls(self, center_id: str) -> bool:
        query = select(_VC.c.id).where(_VC.c.call_center_id == center_id).limit(1)
        return (await self._conn.execute(query)).first() is not None

    async def queue_by_name(self, account_id: str, name: str) -> str | None:
        query = (
            select(t.queues.c.id)
            .where(t.queues.c.account_id == account_id, t.queues.c.name == name)
            .order_by(t.queues.c.id)
            .limit(1)
        )
        found = (await self._conn.execute(query)).scalar()
        return str(found) if found is not None else None


_CALL_FIELDS = (
    "to_number",
    "from_number",
    "parent_voice_call_id",
    "queue",
    "agent",
    "call_attributes",
    "start_time",
    "end_time",
    "is_active_call",
    "recording_location",
    "total_recording_duration",
    "disconnect_reason",
    "disconnect_is_error",
    "enqueue_time",
    "accept_time",
    "total_hold_duration",
    "longest_hold_duration",
    "number_of_holds",
    "agent_interaction_duration",
    "updated_at",
)
# Set by this service's own steps (routing, callbacks), each with a statement of its own, so a
# partner's update read before them never writes them back.
_OWN_FIELDS = ("callback_number", "callback_voice_call_id", "routed_queue_id", "work_item_id")


def _call(row: Any) -> VoiceCall:
    return VoiceCall(
        id=row.id,
        account_id=row.account_id,
        call_center_id=row.call_center_id,
        vendor_call_key=row.vendor_call_key,
        initiation_method=InitiationMethod(row.initiation_method),
        call_origin=CallOrigin(row.call_origin) if row.call_origin else None,
        participants=tuple(
            Participant(p["participant_key"], p.get("type", "END_USER")) for p in row.participants
        ),
        created_at=row.created_at,
        **{name: getattr(row, name) for name in (*_CALL_FIELDS, *_OWN_FIELDS)},
    )


def _call_values(call: VoiceCall) -> dict[str, Any]:
    return {
        **{name: getattr(call, name) for name in _CALL_FIELDS},
        "initiation_method": call.initiation_method.value,
        "call_origin": call.call_origin.value if call.call_origin else None,
        "participants": [
            {"participant_key": p.participant_key, "type": p.type} for p in call.participants
        ],
    }


def _message(row: Any) -> TranscriptMessage:
    return TranscriptMessage(
        voice_call_id=row.voice_call_id,
        message_id=row.message_id,
        participant_id=row.participant_id,
        sender_type=SenderType(row.sender_type),
        start_ms=int(row.start_ms),
        end_ms=int(row.end_ms),
        content=row.content,
    )


class SqlVoiceCallRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, call: VoiceCall) -> bool:
        taken = select(_VC.c.id).where(
            _VC.c.call_center_id == call.call_center_id,
            _VC.c.vendor_call_key == call.vendor_call_key,
        )
        if (await self._conn.execute(taken)).first() is not None:
            return False
        values = {
            **_call_values(call),
            **{name: getattr(call, name) for name in _OWN_FIELDS},
            "id": call.id,
            "account_id": call.account_id,
            "call_center_id": call.call_center_id,
            "vendor_call_key": call.vendor_call_key,
            "created_at": call.created_at,
        }
        try:
            await self._conn.execute(insert(_VC).values(**values))
        except IntegrityError:
            return False  # a concurrent create of the same vendorCallKey won
        return True

    async def get(self, account_id: str, voice_call_id: str) -> VoiceCall | None:
        query = select(_VC).where(_VC.c.id == voice_call_id, _VC.c.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _call(row) if row else None

    async def by_key(
        self, account_id: str, vendor_call_key: str, call_center_id: str | None = None
    ) -> VoiceCall | None:
        query = select(_VC).where(
            _VC.c.account_id == account_id, _VC.c.vendor_call_key == vendor_call_key
        )
        if call_center_id is not None:
            query = query.where(_VC.c.call_center_id == call_center_id)
        row = (await self._conn.execute(query.order_by(_VC.c.id).limit(1))).first()
        return _call(row) if row else None

    async def update(self, call: VoiceCall) -> None:
        await self._conn.execute(
            update(_VC)
            .where(_VC.c.id == call.id, _VC.c.account_id == call.account_id)
            .values(**_call_values(call))
        )

    async def _set(
        self, account_id: str, voice_call_id: str, now: datetime, *conditions: Any, **values: Any
    ) -> bool:
        result = await self._conn.execute(
            update(_VC)
            .where(_VC.c.id == voice_call_id, _VC.c.account_id == account_id, *conditions)
            .values(**values, updated_at=now)
        )
        return bool(result.rowcount)

    async def set_routed_queue(
        self, account_id: str, voice_call_id: str, queue_id: str, now: datetime
    ) -> bool:
        return await self._set(
            account_id,
            voice_call_id,
            now,
            _VC.c.routed_queue_id.is_(None),
            routed_queue_id=queue_id,
        )

    async def set_work_item(
        self, account_id: str, voice_call_id: str, work_item_id: str, now: datetime
    ) -> None:
        await self._set(account_id, voice_call_id, now, work_item_id=work_item_id)

    async def set_callback(
        self, account_id: str, voice_call_id: str, number: str, callback_id: str, now: datetime
    ) -> bool:
        return await self._set(
            account_id,
            voice_call_id,
            now,
            _VC.c.callback_voice_call_id.is_(None),
            callback_number=number,
            callback_voice_call_id=callback_id,
        )

    async def messages(self, voice_call_id: str) -> builtins.list[TranscriptMessage]:
        query = (
            select(_M)
            .where(_M.c.voice_call_id == voice_call_id)
            .order_by(_M.c.start_ms, _M.c.end_ms, _M.c.message_id)
        )
        return [_message(row) for row in (await self._conn.execute(query)).all()]

    async def existing_messages(
        self, voice_call_id: str, message_ids: Sequence[str]
    ) -> dict[str, TranscriptMessage]:
        if not message_ids:
            return {}
        query = select(_M).where(
            _M.c.voice_call_id == voice_call_id, _M.c.message_id.in_(list(message_ids))
        )
        return {row.message_id: _message(row) for row in (await self._conn.execute(query)).all()}

    async def add_messages(self, messages: Sequence[TranscriptMessage], now: datetime) -> None:
        if not messages:
            return
        await self._conn.execute(
            insert(_M),
            [
                {
                    "voice_call_id": m.voice_call_id,
                    "message_id": m.message_id,
                    "participant_id": m.participant_id,
                    "sender_type": m.sender_type.value,
                    "start_ms": m.start_ms,
                    "end_ms": m.end_ms,
                    "content": m.content,
                    "created_at": now,
                }
                for m in messages
            ],
        )


class SqlTelephonyJtiRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def remember(
        self, call_center_id: str, jti: str, expires_at: datetime, now: datetime
    ) -> bool:
        await self._conn.execute(delete(_J).where(_J.c.expires_at < now))
        seen = select(_J.c.jti).where(_J.c.call_center_id == call_center_id, _J.c.jti == jti)
        if (await self._conn.execute(seen)).first() is not None:
            return False
        try:
            await self._conn.execute(
                insert(_J).values(call_center_id=call_center_id, jti=jti, expires_at=expires_at)
            )
        except IntegrityError:
            return False  # the same token presented twice at once: one of them wins
        return True
