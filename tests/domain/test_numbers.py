"""A number's destination rules: which destination each schedule state takes, and which
kind/id pairs are valid."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.numbers import (
    Destination,
    DestKind,
    Number,
    check_number,
    destination_for,
)
from afterbeep.domain.schedules import ScheduleState

NOW = datetime(2026, 12, 7, tzinfo=UTC)
MAIN = Destination(DestKind.FLOW, "flow_main")
CLOSED = Destination(DestKind.VOICEMAIL, "vm_closed")
HOLIDAY = Destination(DestKind.HANGUP, None)


def number(**fields: object) -> Number:
    base = Number(
        id="num_1",
        account_id="acc_1",
        e164="+12025550123",
        dest_kind=MAIN.kind,
        dest_id=MAIN.id,
        schedule_id="sch_1",
        closed_dest_kind=None,
        closed_dest_id=None,
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


FULL = {
    "closed_dest_kind": CLOSED.kind,
    "closed_dest_id": CLOSED.id,
    "holiday_dest_kind": HOLIDAY.kind,
    "holiday_dest_id": HOLIDAY.id,
}
CLOSED_ONLY = {"closed_dest_kind": CLOSED.kind, "closed_dest_id": CLOSED.id}


@pytest.mark.parametrize(
    ("fields", "state", "expected"),
    [
        (FULL, ScheduleState.IN_HOURS, MAIN),
        (FULL, ScheduleState.OUT_OF_HOURS, CLOSED),
        (FULL, ScheduleState.HOLIDAY, HOLIDAY),
        (CLOSED_ONLY, ScheduleState.HOLIDAY, CLOSED),
        (CLOSED_ONLY, ScheduleState.OUT_OF_HOURS, CLOSED),
        ({}, ScheduleState.OUT_OF_HOURS, MAIN),
        ({}, ScheduleState.HOLIDAY, MAIN),
        (
            {"holiday_dest_kind": HOLIDAY.kind, "holiday_dest_id": None},
            ScheduleState.OUT_OF_HOURS,
            MAIN,
        ),
    ],
)
def test_destination_for_each_state(
    fields: dict[str, object], state: ScheduleState, expected: Destination
) -> None:
    assert destination_for(number(**fields), state) == expected


def test_destinations_lists_the_fields_set() -> None:
    assert number().destinations() == [("dest_id", MAIN)]
    assert number(**FULL).destinations() == [
        ("dest_id", MAIN),
        ("closed_dest_id", CLOSED),
        ("holiday_dest_id", HOLIDAY),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        FULL,
        {"dest_kind": DestKind.HANGUP, "dest_id": None},
        {"dest_kind": DestKind.VOICEMAIL, "dest_id": "vm_1"},
    ],
)
def test_valid_numbers(fields: dict[str, object]) -> None:
    check_number(number(**fields))


@pytest.mark.parametrize(
    ("fields", "field", "error_id"),
    [
        ({"dest_kind": DestKind.HANGUP}, "dest_id", "invalid-input"),
        ({"dest_id": None}, "dest_id", "invalid-input"),
        ({"dest_kind": DestKind.USER, "dest_id": None}, "dest_id", "invalid-input"),
        ({"dest_kind": DestKind.QUEUE, "dest_id": None}, "dest_id", "invalid-input"),
        ({"dest_kind": DestKind.RING_GROUP, "dest_id": None}, "dest_id", "invalid-input"),
        ({"closed_dest_id": "vm_1"}, "closed_dest_kind", "invalid-input"),
        ({"closed_dest_kind": DestKind.VOICEMAIL}, "closed_dest_id", "invalid-input"),
        (
            {"holiday_dest_kind": DestKind.HANGUP, "holiday_dest_id": "vm_1"},
            "holiday_dest_id",
            "invalid-input",
        ),
        ({"holiday_dest_kind": DestKind.USER}, "holiday_dest_id", "invalid-input"),
    ],
)
def test_invalid_numbers_name_the_field(
    fields: dict[str, object], field: str, error_id: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_number(number(**fields))
    assert (raised.value.field, raised.value.error_id) == (field, error_id)
