"""Devices' calls out, the pure parts: which caller id they carry and what the phone is told
when the far end does not answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from afterbeep.domain.ringless import SetupNumber, TelephonySetup, Transport
from afterbeep.services.device_outbound import caller_id_of
from afterbeep.telephony.call import DialFailed
from afterbeep.telephony.outside import answer_for

_AT = datetime(2026, 12, 7, tzinfo=UTC)


def _setup(*numbers: SetupNumber) -> TelephonySetup:
    return TelephonySetup(
        id="setup_1", account_id="acc_1", name="trunk", trunk_host="127.0.0.1", trunk_port=5060,
        transport=Transport.UDP, username=None, password_ref=None, outbound_proxy=None,
        from_domain=None, max_calls_per_second=1.0, max_concurrent_calls=1, numbers=numbers,
        deposit_uri="", deposit_headers={}, created_at=_AT, updated_at=_AT,
    )  # fmt: skip


def test_the_users_caller_id_else_the_setups_verified_number_else_its_first() -> None:
    unverified, verified = SetupNumber("+12125550100", False), SetupNumber("+12125550101", True)
    assert caller_id_of(_setup(unverified, verified), "+12125550143") == "+12125550143"
    assert caller_id_of(_setup(unverified, verified), None) == "+12125550101"
    assert caller_id_of(_setup(unverified), None) == "+12125550100"
    assert caller_id_of(_setup(), None) is None


@pytest.mark.parametrize(
    ("far_end", "phone"),
    [
        (486, 486), (600, 486), (603, 603), (480, 480), (408, 480), (487, 480),
        (404, 404), (484, 484), (401, 503), (407, 503), (500, 503), (503, 503),
    ],
)  # fmt: skip
def test_the_far_ends_failure_is_told_to_the_phone(far_end: int, phone: int) -> None:
    assert answer_for(DialFailed(far_end, "x"))[0] == phone
