"""Keyset pagination over prefixed-ULID primary keys, newest first."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Select

from afterbeep.domain.errors import InvalidInput

MAX_LIMIT = 200
_ID = re.compile(r"[a-z]{1,8}_[0-9a-z]{26}")


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("cursor", "is not a cursor from this API") from exc
    if not _ID.fullmatch(value):
        raise InvalidInput("cursor", "is not a cursor from this API")
    return value


def page_query(query: Select[Any], id_column: Column[str], cursor: str | None, limit: int) -> Select[Any]:
    if cursor:
        query = query.where(id_column < decode_cursor(cursor))
    return query.order_by(id_column.desc()).limit(limit + 1)


def split_page(rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
    """The first `limit` rows, and a cursor when one more row was found."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return items, encode_cursor(items[-1].id) if more and items else None
